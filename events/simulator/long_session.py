"""One very long editing session on one big file, for replay benchmarks."""

from __future__ import annotations

import pathlib
import random

from . import churn
from .clock import Clock
from .content import decorate
from .corpus import load_corpus
from .diagnostics import DiagnosticLog, Linter
from .editor import FileEditor
from .recorder import Recorder
from .typist import Typist
from .work import FileWork, Pending

MAX_FILE_CHARS = 80_000
CHECKS = 60  # lint the file this many times over the session, whatever its length
FINAL_STRETCH = 300  # packets at the end spent on harmless notes
_NOTES = (
    "TODO: clean this up later",
    "FIXME: handle the empty case",
    "note: 速度 is fine now",
    "remember to push 🚀",
    "ideas: cache results, add tests",
    "ça marche, enfin",
)
PACE = 1.05  # deliver new code while the file is less grown than the session is old, times this


def long_session(
    edits: int,
    seed: int,
    corpus: pathlib.Path | None = None,
    repl_id: str = "repl-999999-10a9e5",
    linter: Linter | None = None,
) -> list[dict]:
    """Events of one repl whose main.py receives exactly `edits` OT packets.

    The file grows toward a big module (about 60 KB for 250,000 edits) typed in bursts, with
    edits all over it: mistakes and their fixes, rewritten lines, debug prints, undo.
    """
    if edits < 1:
        raise ValueError(f"edits must be >= 1, got {edits}")
    rng = random.Random(f"otlake-long/{seed}")
    clock = Clock(rng.randrange(0, 86_400_000_000))
    rec = Recorder(repl_id, rng.randint(10_000, 40_000_000), clock, rng)
    rec.emit("repl", language="python3", is_private=False, owner="benchmark", title="BigSession")
    rec.emit("file", op="create", path="main.py")
    ed = FileEditor("main.py", rec, rng)
    work = FileWork(ed, _big_module(rng, corpus, min(MAX_FILE_CHARS, 2_000 + edits // 4)), rng)
    diagnostics = DiagnosticLog(max_per_check=5, linter=linter)
    check_every = max(1, edits // CHECKS)
    next_check = [check_every]

    def on_pause(_: FileEditor) -> None:
        if ed.packets >= next_check[0]:
            next_check[0] += check_every
            diagnostics.request(rec, ed.path, ed.buf.text(), 0, rng.randrange(40_000, 900_000))

    typist = Typist(rng, clock, on_pause=on_pause, budget=lambda: ed.packets < edits)
    _play(work, typist, rng, edits)
    clock.wait_s(5)
    rec.emit("snapshot", files={ed.path: ed.buf.text()})
    diagnostics.flush()
    return rec.numbered()


def _play(work: FileWork, typist: Typist, rng: random.Random, edits: int) -> None:
    plan, ed = work.plan, work.ed
    total = len(plan.text)
    grown = 0
    waiting = plan.pending()
    pending: list[Pending] = []
    debug: list[churn.DebugLine] = []
    while ed.packets < edits:
        if edits - ed.packets <= min(FINAL_STRETCH, edits // 20):
            # the session may end mid-keystroke: end it in notes at the bottom, which cannot break
            ed.goto(ed.buf.line_count - 1, 0, log=True)
            while ed.packets < edits:
                typist.type(ed, "# " + rng.choice(_NOTES) + "\n")
            return
        urgent = [p for p in pending if p.mistake.breaks_syntax]
        if urgent and rng.random() < 0.3:
            pending.remove(urgent[0])
            if rng.random() < 0.95:
                work.fix(urgent[0], typist)
            continue
        if waiting and grown < total * min(1.0, PACE * ed.packets / edits) + 1:
            block = waiting.pop(1 if len(waiting) > 1 and rng.random() < 0.08 else 0)
            lines = len(plan.blocks[block])
            how = rng.random()
            typed = lines if how < 0.85 else (0 if how < 0.97 else rng.randint(0, lines))
            rest = "ghost" if rng.random() < 0.7 else "paste"
            if typed == lines and rng.random() < 0.25:
                typed = rng.randint(0, lines - 1)  # a completion writes the end of the block
            pending += work.deliver(block, typist, typed, rest, mistake_rate=0.08)
            grown += len(plan.block_text(block))
            continue
        action = rng.random()
        if action < 0.45:
            churn.rewrite_lines(work, typist)
        elif action < 0.70:
            churn.retype_word(work, typist)
        elif action < 0.80:
            added = churn.add_debug_print(work, typist)
            if added is not None:
                debug.append(added)
        elif action < 0.88 and debug:
            churn.remove_debug_print(debug.pop(rng.randrange(len(debug))), typist)
        elif action < 0.96 and pending:
            mistake = pending.pop(rng.randrange(len(pending)))
            if rng.random() < 0.85:
                work.fix(mistake, typist)
        elif ed.can_undo() and edits - ed.packets > 2:
            ed.undo(redo_chance=0.6)
        if rng.random() < 0.002:
            typist.clock.wait_s(rng.uniform(1800, 20 * 3600))  # gone for the night


def _big_module(rng: random.Random, corpus: pathlib.Path | None, size: int) -> str:
    # several corpus modules one after another, as one file that grew over weeks
    source = load_corpus(corpus)
    parts, used, length = [], set(), 0
    while length < size:
        stem, original = source.pick(rng, used)
        used.add(stem)
        # a __future__ import is only legal at the top of a file
        text = "\n".join(
            line for line in original.split("\n") if not line.startswith("from __future__ import")
        )
        try:
            text = decorate(text, rng)
        except SyntaxError:
            text = original
        parts.append(text.rstrip("\n") + "\n")
        length += len(parts[-1]) + 2
    return "\n\n".join(parts)
