"""Numbered line diffs after OctoPack and Replit's code-repair model: render, parse, extract, apply.

Lines. A text's lines are `text.split("\\n")`, numbered from 1. Only "\\n"
ends a line, so a "\\r" (of a "\\r\\n" ending, or a lone one) stays part of its
line's text, and a text is always `"\\n".join` of its lines. A final newline
therefore leaves a last, empty line: "a\\nb\\n" has three lines ("a", "b", ""),
"a\\nb" has two and "" has one, empty. This is the numbering of the editor and
of the language server (the cursor after a final newline is on that last
line), and it makes `apply(old, render(old, new)) == new` exact for every pair
of strings: adding or dropping a final newline is an ordinary op (`+3 `, `-3 `).
A diff that removes every line leaves "", the file of one empty line.

Diff text. One op per line: `-N text` removes line N of the original, whose
text must be `text`; `+N text` adds `text` as line N of the new file. Exactly
one space separates number and text; the text may be empty (`-4 ` or `-4`) or
start with spaces. Numbers are 1-based, without leading zeros. A diff is split
on "\\n" only, so an op's text may end with "\\r". Empty lines are ignored.

Applying. Ops are read in file order against a cursor in the original: the
lines between ops are kept. So `-` numbers strictly increase, `+` numbers
strictly increase, and every op must fit the lines before it (a `+N` must
land exactly at line N of the new file). Anything else is an error, never a
guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher

from synth.errors import DiffError

_OP = re.compile(r"([+-])(\d+)(?: (.*))?", re.DOTALL)
_NUMBER = re.compile(r"[1-9]\d*")

# extract(): the first <diff> block; a missing </diff> runs to the end, because
# LM servers drop the stop sequence ("</diff>") from the text they return.
_DIFF_BLOCK = re.compile(r"<diff>((?:(?!<diff>).)*?)(?:</diff>|\Z)", re.DOTALL)
# a whole fenced block and its info string; blocks are read in order so that a
# closing fence is never taken for an opening one
_FENCE_BLOCK = re.compile(r"^[ \t]*```([^\n`]*)\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
_BARE_LINE = r"[+-]\d+(?:[ \r][^\n]*)?$"
_BARE_BLOCK = re.compile(rf"^{_BARE_LINE}(?:\n{_BARE_LINE})*", re.MULTILINE)
_LEADING_BLANK = re.compile(r"\A(?:[ \t\r]*\n)+")
_TRAILING_BLANK = re.compile(r"(?:\n[ \t\r]*)+\Z")


@dataclass(frozen=True)
class LineOp:
    """One diff line: '-' removes line `number` of the original, '+' adds line `number` of the new file."""

    sign: str
    number: int
    text: str

    def to_text(self) -> str:
        """The op as a diff line, `-N text`."""
        return f"{self.sign}{self.number} {self.text}"


@dataclass(frozen=True)
class LineDiff:
    """A parsed line diff: its ops in file order."""

    ops: tuple[LineOp, ...] = ()

    def to_text(self) -> str:
        """The diff text, one op a line, no trailing newline."""
        return "\n".join(op.to_text() for op in self.ops)


def split_lines(text: str) -> list[str]:
    """The lines of a text under this module's rule (split on "\\n" only)."""
    return text.split("\n")


def numbered_line(number: int, text: str) -> str:
    """One line as the prompt shows it: '3 screen = turtle.screen', or '2' when empty."""
    return f"{number} {text}" if text else str(number)


def numbered(code: str) -> str:
    """The code with 1-based line numbers, as the prompt shows it."""
    return "\n".join(numbered_line(n, line) for n, line in enumerate(split_lines(code), 1))


def opcodes(a: list[str], b: list[str]) -> list[tuple[str, int, int, int, int]]:
    """difflib's opcodes for two lists of lines, the common first and last lines matched first.

    Edits are local, and difflib's matcher is slow on long files with many
    repeated lines (blank ones): only the middle that differs goes through it.
    autojunk is off: it would treat frequent lines as junk in long files.
    """
    head = 0
    limit = min(len(a), len(b))
    while head < limit and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < limit - head and a[len(a) - 1 - tail] == b[len(b) - 1 - tail]:
        tail += 1
    out = [("equal", 0, head, 0, head)] if head else []
    middle = SequenceMatcher(None, a[head:len(a) - tail], b[head:len(b) - tail], autojunk=False).get_opcodes()
    out += [(tag, i1 + head, i2 + head, j1 + head, j2 + head) for tag, i1, i2, j1, j2 in middle
            if i2 > i1 or j2 > j1]
    if tail:
        out.append(("equal", len(a) - tail, len(a), len(b) - tail, len(b)))
    return out


def line_diff(old: str, new: str) -> LineDiff:
    """The line diff that turns old into new (difflib's opcodes: minimal-ish and deterministic)."""
    a, b = split_lines(old), split_lines(new)
    ops: list[LineOp] = []
    for tag, i1, i2, j1, j2 in opcodes(a, b):
        if tag in ("delete", "replace"):
            ops.extend(LineOp("-", i + 1, a[i]) for i in range(i1, i2))
        if tag in ("insert", "replace"):
            ops.extend(LineOp("+", j + 1, b[j]) for j in range(j1, j2))
    return LineDiff(tuple(ops))


def render(old: str, new: str) -> str:
    """The diff text that turns old into new; '' when they are equal."""
    return line_diff(old, new).to_text()


def parse(text: str) -> LineDiff:
    """Parse diff text strictly: every non-empty line is `-N text` or `+N text`."""
    ops = []
    for at, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        match = _OP.fullmatch(line)
        if match is None:
            raise DiffError("malformed", f"diff line {at}: {_show(line)} is not `-N text` or `+N text`")
        sign, number, rest = match.groups()
        if not _NUMBER.fullmatch(number):
            raise DiffError("malformed", f"diff line {at}: {_show(line)}: line numbers start at 1, "
                                         "without leading zeros")
        ops.append(LineOp(sign, int(number), rest or ""))
    return LineDiff(tuple(ops))


def extract(lm_output: str) -> str | None:
    """The diff block of an LM answer, without its blank edge lines; None when there is none.

    Looks for, in this order: the first `<diff>` block, the first ``` or ```diff
    fence, the first run of lines that start like `-N`/`+N`. The lines are not
    checked here; `parse` does that.
    """
    match = _DIFF_BLOCK.search(lm_output)
    if match is not None:
        inner = _strip_blank_lines(match.group(1))
        fenced = _first_diff_fence(inner) if inner.startswith("```") else None
        return inner if fenced is None else fenced  # a fence inside the <diff> block
    fenced = _first_diff_fence(lm_output)
    if fenced is not None:
        return fenced
    match = _BARE_BLOCK.search(lm_output)
    return None if match is None else match.group(0)


def apply(old: str, diff: str | LineDiff) -> str:
    """Apply a diff to old strictly; DiffError says which op does not fit and why."""
    ops = parse(diff).ops if isinstance(diff, str) else diff.ops
    lines = split_lines(old)
    out: list[str] = []
    pos = 0  # original lines before `pos` are consumed: kept in `out` or removed
    last_removed = 0
    for k, op in enumerate(ops, 1):
        where = f"op {k} {_show(op.to_text())}"
        n = op.number
        if op.sign not in ("-", "+"):
            raise DiffError("malformed", f"{where}: the sign is not '-' or '+'")
        if n < 1:
            raise DiffError("out_of_range", f"{where}: lines are numbered from 1")
        if op.sign == "-":
            if n <= last_removed:
                raise DiffError("bad_numbers", f"{where} comes after the removal of line {last_removed}; "
                                               "removals must go down the file")
            if n <= pos:
                raise DiffError("bad_numbers", f"{where}: an earlier addition already kept original "
                                               f"lines up to {pos}, so line {n} cannot be removed here")
            if n > len(lines):
                raise DiffError("out_of_range", f"{where}: the original has only {len(lines)} lines")
            if lines[n - 1] != op.text:
                raise DiffError("text_mismatch", f"{where}: line {n} of the original is "
                                                 f"{_show(lines[n - 1])}, the diff says {_show(op.text)}")
            out.extend(lines[pos : n - 1])
            pos = last_removed = n
        else:
            keep = n - 1 - len(out)  # original lines kept before this one
            if keep < 0:
                raise DiffError("bad_numbers", f"{where}: the lines before it already make {len(out)} "
                                               f"lines of the new file, so it would be line {len(out) + 1}")
            if pos + keep > len(lines):
                most = len(out) + len(lines) - pos
                raise DiffError("bad_numbers", f"{where}: at most {most} lines of the new file can come "
                                               f"before it, so it cannot be line {n}")
            out.extend(lines[pos : pos + keep])
            pos += keep
            out.append(op.text)
    out.extend(lines[pos:])
    return "\n".join(out)


def _first_diff_fence(text: str) -> str | None:
    """The inside of the first ``` or ```diff fenced block (not ```python), without blank edges."""
    for match in _FENCE_BLOCK.finditer(text):
        if match.group(1).strip() in ("", "diff"):
            return _strip_blank_lines(match.group(2))
    return None


def _strip_blank_lines(text: str) -> str:
    """Text without its leading and trailing blank lines; the diff lines themselves are untouched."""
    if not text.strip():
        return ""
    return _TRAILING_BLANK.sub("", _LEADING_BLANK.sub("", text))


def _show(text: str, limit: int = 80) -> str:
    """A text quoted for an error message (repr shows '\\r' and trailing spaces), cut at `limit`."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"
