"""Which example shows a repair best: the rule behind the demo's example and the dataset card's.

A diagnostic logged while the user was still typing can have an accepted
"fix" that only finishes the line (`imp` -> `import codecs`), or that swaps the
half-written last line for what the user typed next: true to the log, but it
shows typing, not a repair. To show one example, a diff is ranked:

0. it replaces lines (removes at least one, adds at least one);
1. it only adds, or only removes, lines (`+8 import sys`);

and it is never shown when a line it removes or adds is not whole tokens (an
unterminated string, an unclosed bracket: Python's tokenizer refuses it), when
an added line only types on from a removed one (the removed text is a prefix
of it), or when it removes the last line of a file that does not end in a
newline (the line the user was typing). Within a rank: the error line among the removed lines first (the fix
is where the diagnostic points), then fewer ops, then a shorter diff, then the
caller's order. This chooses what to show; it filters no training data.
"""

from __future__ import annotations

import io
import tokenize
from collections.abc import Iterable
from typing import TypeVar

from synth.errors import DiffError
from synth.linediff import numbered_line, parse, split_lines
from synth.schema import Prompt, one_line

K = TypeVar("K")


def whole_tokens(line: str) -> bool:
    """True when Python's tokenizer reads the line (indentation aside) to its end without an error."""
    text = line.strip()
    if not text:
        return True
    try:
        return all(t.type != tokenize.ERRORTOKEN for t in tokenize.generate_tokens(io.StringIO(text + "\n").readline))
    except (tokenize.TokenError, SyntaxError):  # an unclosed bracket or string; 3.12 raises for more
        return False


def types_on(removed: str, added: str) -> bool:
    """True when `added` is `removed` typed further (`imp` -> `import os`), not a change of it."""
    r, a = removed.strip(), added.strip()
    return bool(r) and a != r and a.startswith(r)


def rank(code: str, diff: str, error_line: int) -> tuple[int, int, int, int] | None:
    """The diff's sort key as a showcase (lower is better), or None when it must not be shown.

    `code` is the file before the diff; `error_line` the 1-based line the diagnostic is on.
    """
    try:
        ops = parse(diff).ops
    except DiffError:
        return None
    removed = [op for op in ops if op.sign == "-"]
    added = [op for op in ops if op.sign == "+"]
    if not ops or not all(whole_tokens(op.text) for op in ops):
        return None
    if any(types_on(r.text, a.text) for r in removed for a in added):
        return None
    # a file that does not end in a newline is being typed at its end: its last line is unfinished
    last = len(split_lines(code))
    if not code.endswith("\n") and any(op.number == last for op in removed):
        return None
    tier = 0 if removed and added else 1
    at_error = any(op.number == error_line for op in removed)
    return tier, 0 if at_error else 1, len(ops), len(diff)


def pick(candidates: Iterable[tuple[K, str, str, int]]) -> K | None:
    """The key of the best (key, code, diff, error line) candidate by `rank`; the first of equals; None if none."""
    best: tuple[tuple[int, int, int, int], int, K] | None = None
    for order, (key, code, diff, error_line) in enumerate(candidates):
        score = rank(code, diff, error_line)
        if score is not None and (best is None or (score, order) < best[:2]):
            best = (score, order, key)
    return None if best is None else best[2]


def excerpt(prompt: Prompt, diff: str, context: int = 3) -> str:
    """The prompt as rendered, with code lines more than `context` lines from the diff and the error elided.

    An elided run of lines shows as one `...` line, so the excerpt is for reading, not for training.
    """
    lines = split_lines(prompt.code)
    near = {prompt.line}
    shift = 0  # lines added minus removed before an op: a `+N` line goes after line N - shift - 1 of the original
    for op in parse(diff).ops:
        near.add(op.number if op.sign == "-" else op.number - shift - 1)
        shift += 1 if op.sign == "+" else -1
    keep = {n for c in near for n in range(c - context, c + context + 1) if 1 <= n <= len(lines)}
    body, elided = [], False
    for n, text in enumerate(lines, 1):
        if n in keep:
            body.append(numbered_line(n, text))
            elided = False
        elif not elided:
            body.append("...")
            elided = True
    return "\n".join(["<code>", f"#{prompt.path}", *body, "</code>",
                      "<lsp_error>", f"{prompt.rule} {one_line(prompt.message)}", "</lsp_error>",
                      "<error_line>", numbered_line(prompt.line, prompt.line_text), "</error_line>"])
