"""The sentinel prompt and response of DESIGN.md, rendered and parsed back strictly.

A prompt (the sentinels are plain text lines):

    <code>
    #{path}
    {the code, numbered as linediff.numbered shows it}
    </code>
    <lsp_error>
    {rule} {message}
    </lsp_error>
    <error_line>
    {the error line, numbered}
    </error_line>

A response is `<diff>`, the diff text, `</diff>`, one a line (`<diff>\\n</diff>`
for an empty diff). Neither form ends with a newline; the parsers accept one
trailing "\\n" (a file on disk) and nothing else that the renderers would not
write, so `render_prompt(parse_prompt(t)) == t` for every prompt t they accept.

Code lines follow linediff's rule: split on "\\n" only ("\\r" stays in its
line), and a final newline shows as a last, empty numbered line.

Messages are one line: `render_prompt` writes `one_line(message)`, where line
breaks and the spaces around them become one space and the ends are trimmed,
so pyright's 'Cannot access attribute "x"\\n  Attribute "x" is unknown' reads
'Cannot access attribute "x" Attribute "x" is unknown'. Hence
`parse_prompt(render_prompt(p)) == p` exactly when
`p.message == one_line(p.message)`; otherwise only the message differs, by
that rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from synth.errors import DiffError, SchemaError
from synth.linediff import numbered, numbered_line, parse, split_lines

RULE = re.compile(r"[A-Za-z][\w.-]*\[[^\s\[\]]+\]")  # 'pyright[reportX]', 'ruff[F821]'
_NUMBERED = re.compile(r"(\d+)(?: (.+))?", re.DOTALL)  # a line as linediff.numbered_line writes it
_ERROR = re.compile(r"(\S+) (.+)", re.DOTALL)
_TAIL = ("<lsp_error>", None, "</lsp_error>", "<error_line>", None, "</error_line>")


@dataclass(frozen=True)
class Prompt:
    """What the model is shown: one file, one diagnostic, and the line the diagnostic is on."""

    path: str  # relative to the repl root, e.g. 'main.py'
    code: str
    rule: str  # the diagnostic's code, 'pyright[reportAttributeAccessIssue]'
    message: str
    line: int  # 1-based line of the code the diagnostic starts on

    def __post_init__(self) -> None:
        if not self.path or self.path.splitlines() != [self.path]:
            raise SchemaError(f"path {self.path!r}: a prompt's path is one non-empty line")
        if not RULE.fullmatch(self.rule):
            raise SchemaError(f"rule {self.rule!r} is not of the form tool[rule], e.g. ruff[F821]")
        if not one_line(self.message):
            raise SchemaError(f"message {self.message!r} is empty")
        count = len(split_lines(self.code))
        if not 1 <= self.line <= count:
            raise SchemaError(f"error line {self.line} of {self.path!r} is outside its {count} lines")

    @property
    def line_text(self) -> str:
        """The text of the error line."""
        return split_lines(self.code)[self.line - 1]


def one_line(message: str) -> str:
    """The message as a prompt writes it: each line break, with the spaces around it, is one space."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def render_prompt(p: Prompt) -> str:
    """The prompt text, exactly as DESIGN.md shows it; no trailing newline."""
    return "\n".join([
        "<code>", f"#{p.path}", numbered(p.code), "</code>",
        "<lsp_error>", f"{p.rule} {one_line(p.message)}", "</lsp_error>",
        "<error_line>", numbered_line(p.line, p.line_text), "</error_line>",
    ])


def render_response(diff: str) -> str:
    """The response text around a diff, which must parse; no trailing newline."""
    _check_diff(diff)
    return f"<diff>\n{diff}\n</diff>" if diff else "<diff>\n</diff>"


def parse_prompt(text: str) -> Prompt:
    """Parse a prompt strictly; SchemaError names the line (1-based) that is wrong."""
    lines = _lines(text)
    _expect(lines, 0, "<code>")
    if len(lines) < 2 or not lines[1].startswith("#"):
        raise SchemaError(f"prompt line 2: expected '#path', found {_found(lines, 1)}")
    path = lines[1][1:]
    try:
        end = lines.index("</code>", 2)  # a code line starts with its number, never '</code>'
    except ValueError:
        raise SchemaError("prompt: no '</code>' line closes the code") from None
    if end == 2:
        raise SchemaError("prompt line 3: the code has no numbered line (empty code shows '1')")
    code = "\n".join(_unnumber(lines[i], i - 1, i + 1) for i in range(2, end))
    tail = lines[end + 1 :]
    if len(tail) != len(_TAIL):
        raise SchemaError(f"prompt: expected {len(_TAIL)} lines after '</code>' "
                          f"(lsp_error and error_line blocks), found {len(tail)}")
    for offset, literal in enumerate(_TAIL):
        if literal is not None:
            _expect(lines, end + 1 + offset, literal)
    error, error_line = tail[1], tail[4]
    match = _ERROR.fullmatch(error)
    if match is None or match.group(2) != one_line(match.group(2)):
        raise SchemaError(f"prompt line {end + 3}: expected 'tool[rule] message' on one line, "
                          f"without edge spaces, found {error!r}")
    rule, message = match.groups()
    number = _NUMBERED.fullmatch(error_line)
    line = int(number.group(1)) if number else 0
    code_lines = split_lines(code)
    if not 1 <= line <= len(code_lines):
        raise SchemaError(f"prompt line {end + 6}: error_line {error_line!r} does not start with "
                          f"a line number of the code (1 to {len(code_lines)})")
    expected = numbered_line(line, code_lines[line - 1])
    if error_line != expected:
        raise SchemaError(f"prompt line {end + 6}: error_line {error_line!r} is not line {line} "
                          f"of the code, {expected!r}")
    return Prompt(path, code, rule, message, line)


def parse_response(text: str) -> str:
    """The diff text of a response in the strict `<diff>` form; the diff must parse."""
    body = _lines(text)
    if body[:1] != ["<diff>"] or len(body) < 2 or body[-1] != "</diff>":
        raise SchemaError(f"response: expected a '<diff>' line, the diff and a '</diff>' line, "
                          f"found {text[:80]!r}")
    diff = "\n".join(body[1:-1])
    _check_diff(diff)
    return diff


def _lines(text: str) -> list[str]:
    """The lines of a prompt or response, allowing one trailing newline."""
    return split_lines(text.removesuffix("\n"))


def _unnumber(line: str, expected: int, at: int) -> str:
    """The text of numbered code line `expected`, which is prompt line `at` (1-based)."""
    match = _NUMBERED.fullmatch(line)
    if match is None or match.group(1) != str(expected):
        raise SchemaError(f"prompt line {at}: expected code line {expected} as "
                          f"'{expected} text' or '{expected}', found {line!r}")
    return match.group(2) or ""


def _expect(lines: list[str], index: int, literal: str) -> None:
    """Line `index` (0-based) must be the sentinel `literal`."""
    if index >= len(lines) or lines[index] != literal:
        raise SchemaError(f"prompt line {index + 1}: expected {literal!r}, found {_found(lines, index)}")


def _found(lines: list[str], index: int) -> str:
    """Line `index` quoted for an error message, or 'the end'."""
    return repr(lines[index][:80]) if index < len(lines) else "the end"


def _check_diff(diff: str) -> None:
    """A response's diff must parse: SchemaError, chained to the DiffError, when it does not."""
    try:
        parse(diff)
    except DiffError as e:
        raise SchemaError(f"response diff: {e}") from e
