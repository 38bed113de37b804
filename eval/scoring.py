"""Scoring one sampled answer: the static metrics here (pure), the LSP and test verdicts from their checkers' results.

`score_static` extracts and applies the diff and compares ASTs; it needs
nothing but text. `target_gone` reads the meta-LSP's diagnostics of the
fixed file; `functional` reads the test harness's outcome. The runner
(eval.run) feeds the checkers in batches and joins the three.
"""

from __future__ import annotations

from dataclasses import dataclass

from lsp_runner.diagnostic import Diagnostic
from synth.attribution import line_map, target_still_reported
from synth.errors import DiffError
from synth.linediff import apply, extract, parse

from .metrics import ast_exact, ast_or_string


@dataclass
class Scored:
    """One sample's verdicts; None where a metric does not apply or was not reached."""

    diff: str | None = None
    fixed: str | None = None
    extracted: bool = False
    applies: bool = False
    apply_error: str = ""
    changes: bool = False
    target_gone: bool = False
    target_detail: str = ""
    functional: bool | None = None
    test_detail: str = ""
    ast_exact: bool = False
    ast_or_string: bool = False


def score_static(code: str, reference: str, answer: str | None) -> Scored:
    """Extract, parse and apply the answer's diff to the buggy code; compare the result with the reference."""
    s = Scored()
    if answer is None:
        return s
    diff = extract(answer)
    if diff is None:
        s.apply_error = "no diff block in the answer"
        return s
    s.diff, s.extracted = diff, True
    try:
        s.fixed = apply(code, parse(diff))
    except DiffError as e:
        s.apply_error = f"{e.kind}: {e.detail}"[:300]
        return s
    s.applies = True
    s.changes = s.fixed != code
    s.ast_exact = ast_exact(s.fixed, reference)
    s.ast_or_string = ast_or_string(s.fixed, reference)
    return s


def target_verdict(target: Diagnostic, code: str, fixed: str, after: list[Diagnostic] | None,
                   failure: str = "") -> tuple[bool, str]:
    """Whether the target is gone from the fixed file's diagnostics (`after`; None when unchecked)."""
    if fixed == code:
        return False, "the diff changes nothing"
    if after is None:
        return False, f"lsp_failed: {failure}"[:300]
    still = target_still_reported(target, after, line_map(code, fixed))
    return (still is None), (f"still reported on line {still.start_line + 1}" if still else "")
