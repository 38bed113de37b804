"""Bugs planted by an LM through DSPy: the model is asked for a one-line diff that plants a bug of a subtype.

The answer goes through the same strictness as everything else: the diff
must parse and apply, replace exactly one line with one line, and leave the
code unparseable for a syntax subtype and parseable for a reference one;
`keep_flagged` (eval.inject_check) then keeps only what the meta-LSP flags
on that line. Deterministic for a model at temperature 0 with DSPy's cache.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lsp_runner.syntax import python_parses
from synth.errors import DiffError
from synth.linediff import apply, extract, numbered, parse, split_lines
from synth.lm import LmSettings, build_lm, call_lm, load_dspy, run_bounded

from .inject import CATEGORY, Injection

KINDS = {
    "illegal_comment": "a line of code turned into a comment with another language's marker (// or /* */)",
    "illegal_indentation": "one line indented wrongly (too deep, not deep enough, or an odd number of spaces)",
    "missing_colons": "the ':' at the end of a def, if, elif, else, for, while or class line left out",
    "misused_equals": "'==' in a condition written as '='",
    "unclosed_parentheses": "a closing ')' or ']' left out",
    "unclosed_string": "a string literal's closing quote left out",
    "faulty_indexing": "an index off by one (i becomes i + 1, or -1 becomes len(x))",
    "illegal_keywords": "a Python name written as in another language (true, null, length(, this.)",
    "undefined_methods": "a call to a method that does not exist (misspelt, or another language's name)",
    "undefined_objects": "a use of a variable renamed to a name defined nowhere",
}

INSTRUCTIONS = """Plant exactly one bug of the given kind into correct Python code, for a repair benchmark.

The code comes as numbered lines. Answer with a numbered line diff that replaces exactly one line:
`-N old text` (line N exactly as shown, without the number) then `+N new text`. Keep the indentation
unless the bug is about indentation. Output only the two diff lines."""


@dataclass(frozen=True)
class LmInjection:
    """An LM's attempt: the injection when it is usable, else why not."""

    injection: Injection | None
    reason: str  # '' when usable
    raw: str


def lm_inject(codes: Sequence[tuple[str, str, str]], settings: LmSettings) -> list[LmInjection]:
    """For (id, code, subtype) triples, ask the LM for one planted bug each; in input order, never raises."""
    if not codes:
        return []
    dspy = load_dspy(settings)
    lm = build_lm(settings)
    program = dspy.Predict(_signature())
    adapter = dspy.ChatAdapter()

    def one(job: tuple[str, str, str]) -> LmInjection:
        _id, code, subtype = job
        call = call_lm(lm, adapter, lambda: program(code=numbered(code), bug_kind=f"{subtype}: {KINDS[subtype]}"),
                       settings)
        text = call.value.diff if call.value is not None else call.raw
        if call.error not in (None, "unparseable"):
            return LmInjection(None, f"lm_failed: {call.error}", call.raw)
        return check_injection(code, subtype, text or "")

    return run_bounded(codes, one, settings.concurrency)


def check_injection(code: str, subtype: str, answer: str) -> LmInjection:
    """The injection an answer describes, if it is one line replaced by one line with the subtype's parse rule."""
    diff = extract(answer) or answer
    try:
        ops = parse(diff).ops
        buggy = apply(code, parse(diff))
    except DiffError as e:
        return LmInjection(None, f"bad_diff: {e.kind}", answer)
    if len(ops) != 2 or [o.sign for o in ops] != ["-", "+"] or ops[0].number != ops[1].number:
        return LmInjection(None, "not_one_line", answer)
    if buggy == code:
        return LmInjection(None, "no_change", answer)
    parses = python_parses(buggy)
    if parses == (CATEGORY[subtype] == "syntax"):
        return LmInjection(None, "still_parses" if parses else "does_not_parse", answer)
    line = ops[0].number
    original = split_lines(code)[line - 1]
    return LmInjection(Injection(subtype, buggy, line, f"LM-planted {subtype.replace('_', ' ')} on line {line}.",
                                 original), "", answer)


@functools.cache
def _signature() -> Any:
    dspy = load_dspy()

    class InjectSignature(dspy.Signature):
        __doc__ = INSTRUCTIONS

        code: str = dspy.InputField(desc="the correct code, numbered lines")
        bug_kind: str = dspy.InputField(desc="the kind of bug to plant")
        diff: str = dspy.OutputField(desc="'-N old' then '+N new': one line replaced")

    return InjectSignature
