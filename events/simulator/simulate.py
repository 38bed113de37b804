"""Demo session logs for many repls: each repl simulated, then linted in one batch, then interleaved."""

from __future__ import annotations

import pathlib
from collections.abc import Callable

from .corpus import load_corpus
from .diagnostics import DiagnosticLog, Linter
from .scenario import ReplScenario

# progress(step, done, total): ("typing", repls typed, repls) after each repl, then ("checking", 0, file
# states) before the linter runs and ("checking", states, states) after it (with the meta-LSP, most of the time)
Progress = Callable[[str, int, int], None]


def simulate(repls: int, seed: int, corpus: pathlib.Path | None = None, linter: Linter | None = None,
             progress: Progress | None = None) -> list[dict]:
    """Events of `repls` simulated repls, ordered by time as a real log would be.

    `corpus` is a folder of .py files for users to write; by default small modules of the
    standard library. `linter` gives the diagnostics users saw (default: ruff alone; the CLI
    passes the meta-LSP). The same `seed` and linter give the same events.
    """
    if repls < 0:
        raise ValueError(f"repls must be >= 0, got {repls}")
    report = progress or (lambda step, done, total: None)
    source = load_corpus(corpus)
    diagnostics = DiagnosticLog(linter=linter)
    scenarios = [ReplScenario(index, seed, source, diagnostics) for index in range(repls)]
    for done, scenario in enumerate(scenarios, 1):
        scenario.play()
        report("typing", done, repls)
    states = len(diagnostics.checks)
    report("checking", 0, states)
    diagnostics.flush()  # one batch for every repl's file states
    report("checking", states, states)
    events = [event for scenario in scenarios for event in scenario.rec.numbered()]
    events.sort(key=lambda e: (e["ts"], e["repl_id"], e["seq"]))
    return events
