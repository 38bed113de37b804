"""User-fix mining: the user's own later edit that made a diagnostic go away, as a candidate diff.

From the pair's instant the file is replayed forward. Only states where the
user stopped typing are looked at (the last version before a pause, and the
file's last version): mid-word states are full of transient errors. Each
such state gives a candidate: the pair's code with only that state's changes
near the error line (`windowed_fix`; edits elsewhere are other work, and
code typed on at the end of the file is not a fix). The stage checks the
distinct candidates that add no syntax error, in order, with the language
servers; the first on which the diagnostic no longer reproduces is the
user's fix. A file may have other errors the user fixed elsewhere or later:
a candidate keeps them (it need not parse, only add no syntax error), so
each error gets the diff of its own fix.
"""

from __future__ import annotations

import re

from lsp_runner.syntax import syntax_errors

from .attribution import NAME_RULES, bound_names, new_syntax_errors, quoted_names
from .linediff import opcodes, render, split_lines

PAUSE_US = 2_000_000  # a gap this long between two packets ends a burst of typing
WINDOW = 5            # lines on each side of the error line that a user fix may touch
MAX_STATES = 24       # later states looked at per pair, at most
_IMPORT = re.compile(r"\s*(import|from)\s+[\w.]+")
SYNTAX_CODES = ("ruff[E999]", "pyright[error]")  # a parser's complaint, not a rule's


def pause_points(times_us: list[int], pause_us: int = PAUSE_US, limit: int = MAX_STATES) -> list[int]:
    """Indices of the versions that end a burst (the next packet comes `pause_us` later, or never)."""
    out = [i for i in range(len(times_us)) if i + 1 == len(times_us) or times_us[i + 1] - times_us[i] >= pause_us]
    if len(out) > limit:  # keep the earliest (a fix usually follows soon) and the last
        out = out[: limit - 1] + out[-1:]
    return out


FAR_BINDING_LINES = 6  # a change away from the error that defines its missing name: this many lines at most


def _hunks(a: list[str], b: list[str], error_line: int, window: int,
           names: frozenset[str] = frozenset(), roots: tuple[int, ...] = ()) -> list[tuple[int, int, list[str]]]:
    """The changes that could be the fix: (first old line, end, new lines), nearest the error line first."""
    spans = [(c - window, c + window) for c in (error_line, *roots)]
    end = len(a) - 1 if a and a[-1] == "" else len(a)  # a final newline leaves an empty last line
    out = []
    for tag, i1, i2, j1, j2 in line_opcodes(a, b):
        if tag == "equal":
            continue
        # an insertion (i1 == i2) touches the line it goes before
        near = any(i1 <= hi and max(i2 - 1, i1) >= lo for lo, hi in spans)
        appended = tag == "insert" and i1 >= end
        imports = tag == "insert" and all(_IMPORT.match(line) for line in b[j1:j2])
        binds = bool(names) and j2 - j1 <= FAR_BINDING_LINES and any(
            bound_names(line) & names for line in b[j1:j2])
        if tag == "replace" and i2 >= end:
            # the last lines rewritten and more typed after them: the rewrite is the fix, the rest typing on
            j2 = min(j2, j1 + (i2 - i1))
        if ((near or binds) and not appended) or imports:
            out.append((i1, i2, b[j1:j2]))
    out.sort(key=lambda h: (0 if h[0] <= error_line < max(h[1], h[0] + 1) else min(abs(h[0] - error_line),
                                                                                    abs(h[1] - 1 - error_line)), h[0]))
    return out


def line_opcodes(a: list[str], b: list[str]):
    """difflib's opcodes, with a rewrite of n lines into n lines split into one change per line.

    Two fixes on neighbouring lines are then two changes, so each error's
    candidate can take only its own.
    """
    for tag, i1, i2, j1, j2 in opcodes(a, b):
        if tag == "replace" and i2 - i1 == j2 - j1 > 1:
            for k in range(i2 - i1):
                yield "replace", i1 + k, i1 + k + 1, j1 + k, j1 + k + 1
        else:
            yield tag, i1, i2, j1, j2


def _with(a: list[str], hunks: list[tuple[int, int, list[str]]]) -> str:
    out, at = [], 0
    for i1, i2, lines in sorted(hunks, key=lambda h: h[0]):
        out += a[at:i1] + lines
        at = i2
    return "\n".join(out + a[at:])


def adds_no_syntax_error(old: str, candidate: str) -> bool:
    """Whether every syntax error of the candidate is one the old file had, where the candidate left it."""
    return not new_syntax_errors(old, candidate)


def windowed_candidates(old: str, later: str, error_line: int, window: int = WINDOW,
                        syntax_target: bool = False, most: int = 3,
                        names: frozenset[str] = frozenset()) -> list[str]:
    """The candidates `later` gives for an error on error_line (0-based), most likely first.

    A change qualifies when it touches lines error_line ± window, except code
    appended at the end of the file (the user typing on, not fixing: a rewrite
    of the last lines keeps only as many lines as it replaced), or when it only
    adds import lines (the fix of a missing import, wherever it goes), or when
    it binds one of `names` (the names an undefined-name target says do not
    resolve) in at most FAR_BINDING_LINES lines (a definition made elsewhere).
    For a syntax error target, changes near the file's earlier syntax errors
    qualify too: an unclosed bracket makes the parser complain lines later,
    and its fix is where it opened. A candidate is the old file with the k nearest qualifying changes, for the
    smallest k that adds no syntax error (and, for a syntax error target,
    removes one), then the next such k (a fix of two lines), up to `most`;
    when no k does, the old file with all of them.
    """
    a, hunks = _qualifying(old, later, error_line, window, syntax_target, names)
    if not hunks:
        return []
    before = len(syntax_errors(old)) if syntax_target else 0
    out = []
    for k in range(1, len(hunks) + 1):
        candidate = _with(a, hunks[:k])
        if adds_no_syntax_error(old, candidate) and (not syntax_target or len(syntax_errors(candidate)) < before):
            out.append(candidate)
            if len(out) == most:
                break
    return out or [_with(a, hunks)]


def _qualifying(old: str, later: str, error_line: int, window: int, syntax_target: bool,
                names: frozenset[str]) -> tuple[list[str], list[tuple[int, int, list[str]]]]:
    a = split_lines(old)
    roots = tuple(sorted({e.line for e in syntax_errors(old) if e.line < error_line})) if syntax_target else ()
    return a, _hunks(a, split_lines(later), error_line, window, names, roots)


def candidate_prefixes(old: str, later: str, error_line: int, window: int = WINDOW, syntax_target: bool = False,
                       names: frozenset[str] = frozenset(), most: int = 8) -> list[str]:
    """The texts windowed_candidates will look at first (for lsp_runner.syntax.prefetch_syntax_errors)."""
    a, hunks = _qualifying(old, later, error_line, window, syntax_target, names)
    return [_with(a, hunks[:k]) for k in range(1, min(len(hunks), most) + 1)]


def windowed_fix(old: str, later: str, error_line: int, window: int = WINDOW,
                 syntax_target: bool = False) -> str | None:
    """The most likely candidate `later` gives (`windowed_candidates`), or None if none."""
    found = windowed_candidates(old, later, error_line, window, syntax_target, most=1)
    return found[0] if found else None


def unresolved_names(code: str, message: str) -> frozenset[str]:
    """The names a name-resolution diagnostic says do not resolve (`"x" is not defined` -> x)."""
    if code not in NAME_RULES:
        return frozenset()
    return frozenset(n for n in quoted_names(message) if n.isidentifier())


def is_syntax_target(code: str) -> bool:
    """Whether the diagnostic is a parser's (a syntax error), not a rule's."""
    return code in SYNTAX_CODES


def user_diff(old: str, later: str, error_line: int, window: int = WINDOW) -> str | None:
    """The numbered line diff of the windowed fix, or None when the change is outside the window."""
    fixed = windowed_fix(old, later, error_line, window)
    return None if fixed is None or fixed == old else render(old, fixed)
