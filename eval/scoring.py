"""Scoring one sampled answer: the static metrics here (pure), the LSP and test verdicts from their checkers' results.

`score_static` extracts and applies the diff and compares it with the buggy
code and the reference; it needs nothing but text (and the target's lines).
`target_gone` reads the meta-LSP's diagnostics of the fixed file;
`functional` reads the test harness's outcome. The runner (eval.run) feeds
the checkers in batches and joins the three. A checker that failed leaves
its metric None with the reason (eval.metrics: "not scored").
"""

from __future__ import annotations

from dataclasses import dataclass

from lsp_runner.diagnostic import Diagnostic
from synth.attribution import line_map, target_still_reported
from synth.errors import DiffError
from synth.linediff import apply, extract, parse

from .metrics import ast_exact, ast_or_string, deletes_only, target_as_reference


@dataclass
class Scored:
    """One sample's verdicts; None where a metric does not apply or its checker failed."""

    target_as_reference: bool | None = None
    deletes_only: bool | None = None
    diff: str | None = None
    fixed: str | None = None
    extracted: bool = False
    applies: bool = False
    apply_error: str = ""
    changes: bool = False
    target_gone: bool | None = False
    target_detail: str = ""
    functional: bool | None = None
    test_detail: str = ""
    ast_exact: bool = False
    ast_or_string: bool = False


def score_static(code: str, reference: str, answer: str | None, target: Diagnostic | None = None) -> Scored:
    """Extract, parse and apply the answer's diff to the buggy code; compare the result with the buggy code and
    the reference (`target`: the item's target diagnostic, for `target_as_reference`)."""
    s = Scored()
    if answer is not None:
        s.diff = extract(answer)
        s.extracted = s.diff is not None
        if s.diff is None:
            s.apply_error = "no diff block in the answer"
        else:
            try:
                s.fixed = apply(code, parse(s.diff))
                s.applies = True
            except DiffError as e:
                s.apply_error = f"{e.kind}: {e.detail}"[:300]
    lines = (target.start_line, target.end_line) if target is not None else (None, None)
    s.target_as_reference = target_as_reference(code, s.fixed, reference, *lines)
    if s.fixed is not None:
        s.changes = s.fixed != code
        s.deletes_only = deletes_only(code, s.fixed)
        s.ast_exact = ast_exact(s.fixed, reference)
        s.ast_or_string = ast_or_string(s.fixed, reference)
    return s


def target_verdict(target: Diagnostic, code: str, fixed: str, after: list[Diagnostic] | None,
                   failure: str = "") -> tuple[bool | None, str]:
    """Whether the target is gone from the fixed file's diagnostics (`after`).

    `after` is None when the meta-LSP check failed (`failure` says why): the verdict is then None, not
    scored, with an "lsp_failed: " detail, so the failure is counted apart from the model's misses.
    """
    if fixed == code:
        return False, "the diff changes nothing"
    if after is None:
        return None, f"lsp_failed: {failure or 'no result'}"[:300]
    still = target_still_reported(target, after, line_map(code, fixed))
    return (still is None), (f"still reported on line {still.start_line + 1}" if still else "")
