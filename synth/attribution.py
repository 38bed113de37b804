"""What a diff did to a file's diagnostics: where the target went, which errors it brought in.

The rules (README, "How a diff is verified") and why:

Lines are mapped through the diff (difflib on the two files' lines): a line
is unchanged (it maps to one original line) or changed (the new side of a
hunk). Diagnostics are compared by rule code and normalized message.

Target. The target is still reported when a diagnostic of its rule and
message sits where the target's line went: the mapped line, or the new
lines of the hunk that rewrote it. A same-message diagnostic elsewhere is
another error (two `"x" is not defined` on two lines are two errors).

Syntax. A candidate may keep the original's other syntax errors; it must not
add one: every syntax error of the fixed file must be one of the original's
(same message) on an unchanged line mapped to it.

Introduced errors. Two effects make errors appear that were there all
along. Masking: while a file has a syntax error, ruff reports nothing but
syntax errors, and pyright's checks from there on are unreliable (from the
top-level block it sits in, the `def`, `class` or statement, to the end of
the file: an unclosed bracket or string swallows everything after it); once
the diff removes that syntax error, their errors appear. And a diff that defines
a missing name lets pyright check the code that uses it. Neither is an error
the diff brought in. An error-severity diagnostic of the fixed file is
introduced when:
1. it is on a changed line, the original lines that hunk replaced had no
   error of its rule and message, it is not an unresolved import of a module
   those lines already imported (the checker's environment lacks it; the
   diff did not misspell it), and either the code it flags was written by
   the diff (a token of its range that the replaced lines do not have:
   `os.pth` -> `os.path + 1`, a misspelt name), or neither did the diff
   remove a syntax error there nor was the target an unresolved name on
   those lines (either hid the checks of that line: `x.copress(s)` fixed to
   `x.compress(s)` lets pyright check `s` for the first time); or
2. it is on an unchanged line, its rule and message were not on the mapped
   original line, and
   a. the line uses a name the diff unbinds (bound on a removed line, bound
      on no added line: a rename or a deleted definition breaks its users),
      or one it rebinds (a changed `def` breaks its callers; not a binding
      on a line that was itself a syntax error or in the block of one the
      diff removed); or
   b. its rule and message are more frequent than in the original without
      the target (an error that only moved is not new), and it is not
      masked (a ruff rule while the original had a syntax error; a line
      from the block of a syntax error the diff removed on) nor revealed (the line
      uses a name the diff newly binds, or a name bound from one:
      `class C(codecs.Codec)` once `codecs` is imported).
The name rules read names off the lines' text (def, class, import,
assignment, for, with/except ... as, :=), not a scope analysis: a
heuristic that errs towards keeping a correct fix of a broken file.
"""

from __future__ import annotations

import keyword
import re
from collections import Counter
from dataclasses import dataclass

from lsp_runner.diagnostic import Diagnostic, normalize_message
from lsp_runner.syntax import SyntaxIssue, syntax_errors

from .linediff import opcodes, split_lines

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRING = re.compile(r"(?:[rbuRBUfF]{0,2})(\"\"\"|'''|\"|')(?:\\.|(?!\1).)*(?:\1|$)")
_DEF = re.compile(r"^\s*(?:async\s+)?def\s+(\w+)\s*\(([^)]*)")
_CLASS = re.compile(r"^\s*class\s+(\w+)")
_IMPORT = re.compile(r"^\s*import\s+(.+)")
_FROM = re.compile(r"^\s*from\s+\S+\s+import\s+\(?([^)#]+)")
_FOR = re.compile(r"^\s*(?:async\s+)?for\s+(.+?)\s+in\b")
_AS = re.compile(r"\bas\s+(\w+)")
_WALRUS = re.compile(r"(\w+)\s*:=")
_ASSIGN = re.compile(r"^\s*([^=#]*?[\w\])])\s*(?:[-+*/%&|^@]|//|>>|<<|\*\*)?=(?!=)")
_CALL = re.compile(r"\w\s*\(")  # `print(x, end=...)` is a call, not an assignment
_ENVIRONMENT_RULES = ("pyright[reportMissingImports]", "pyright[reportMissingModuleSource]")
NAME_RULES = _ENVIRONMENT_RULES + ("pyright[reportUndefinedVariable]", "pyright[reportAttributeAccessIssue]",
                                   "ruff[F821]")
_QUOTED = re.compile(r'"([^"]+)"')


@dataclass(frozen=True)
class LineMap:
    """How the lines of `after` relate to those of `before`."""

    old_of_new: tuple[int | None, ...]       # per new line: the original line it is, None if changed
    hunks: tuple[tuple[int, int, int, int], ...]  # (i1, i2, j1, j2) of every change, in order

    def hunk_of_new(self, j: int) -> tuple[int, int, int, int] | None:
        """The hunk whose new side holds line j."""
        return next((h for h in self.hunks if h[2] <= j < h[3]), None)

    def new_lines_of(self, i: int) -> range:
        """Where original line i is in the new file: its line, or the lines of the hunk that rewrote it."""
        for i1, i2, j1, j2 in self.hunks:
            if i1 <= i < i2:
                return range(j1, j2) if j2 > j1 else range(j1, j1 + 1)  # deleted: what now stands there
        j = self.new_line(i)
        return range(j, j + 1) if j is not None else range(0)

    def new_line(self, i: int) -> int | None:
        """The new line that original line i is; None if the diff rewrote it. Past the end (a
        diagnostic at the end of the file) counts from the last line when that one is unchanged."""
        j = self.new_of_old.get(i)
        if j is None and self.old_of_new and self.old_of_new[-1] is not None and i > self.old_of_new[-1]:
            j = len(self.old_of_new) - 1 + (i - self.old_of_new[-1])
        return j

    def old_line(self, j: int) -> int | None:
        """The original line that new line j is; None if the diff wrote it (past the end: as new_line)."""
        if j < len(self.old_of_new):
            return self.old_of_new[j]
        last = self.old_of_new[-1] if self.old_of_new else None
        return None if last is None else last + (j - len(self.old_of_new) + 1)

    @property
    def new_of_old(self) -> dict[int, int]:
        return {i: j for j, i in enumerate(self.old_of_new) if i is not None}


def line_map(before: str, after: str) -> LineMap:
    """The line correspondence of two versions of a file."""
    a, b = split_lines(before), split_lines(after)
    old_of_new: list[int | None] = [None] * len(b)
    hunks = []
    for tag, i1, i2, j1, j2 in opcodes(a, b):
        if tag == "equal":
            for k in range(j2 - j1):
                old_of_new[j1 + k] = i1 + k
        else:
            hunks.append((i1, i2, j1, j2))
    return LineMap(tuple(old_of_new), tuple(hunks))


def _key(d: Diagnostic) -> tuple[str, str]:
    return d.code, normalize_message(d.message)


def target_still_reported(target: Diagnostic, after: list[Diagnostic], lm: LineMap) -> Diagnostic | None:
    """The diagnostic of the fixed file that is still the target, if any."""
    lines = lm.new_lines_of(target.start_line)
    wanted = _key(target)
    return next((d for d in after if d.start_line in lines and _key(d) == wanted), None)


def new_syntax_errors(before: str, after: str, lm: LineMap | None = None) -> list[SyntaxIssue]:
    """The fixed file's syntax errors that the original did not have at the same (mapped) line."""
    found = syntax_errors(after)
    if not found:
        return []
    lm = lm or line_map(before, after)
    return _unmatched(found, syntax_errors(before), lm.old_line)


def _unmatched(errors, others, to_other_line) -> list[SyntaxIssue]:
    """The errors with no error of the same message at their line mapped into the other file."""
    left = Counter((e.line, normalize_message(e.message)) for e in others)
    out = []
    for e in errors:
        key = (to_other_line(e.line), normalize_message(e.message))
        if key[0] is not None and left[key] > 0:
            left[key] -= 1
        else:
            out.append(e)
    return out


def _code_part(line: str) -> str:
    return _STRING.sub(" ", line).split("#", 1)[0]


def used_names(line: str) -> set[str]:
    """Identifiers a line mentions outside strings and comments."""
    return {n for n in _IDENT.findall(_code_part(line)) if not keyword.iskeyword(n)}


def bound_names(line: str) -> set[str]:
    """Names a line binds (def, class, import, assignment target, for, as, :=), as far as its text shows."""
    code = _code_part(line)
    out: set[str] = set()
    if m := _DEF.match(code):
        out.add(m.group(1))
        out |= {p.split(":")[0].split("=")[0].strip(" *") for p in m.group(2).split(",")} - {""}
    elif m := _CLASS.match(code):
        out.add(m.group(1))
    elif m := _IMPORT.match(code):
        for part in m.group(1).split(","):
            alias = _AS.search(part)
            out.add(alias.group(1) if alias else part.strip().split(".")[0])
    elif m := _FROM.match(code):
        for part in m.group(1).split(","):
            alias = _AS.search(part)
            out.add(alias.group(1) if alias else part.strip())
    elif (m := _FOR.match(code)) or ((m := _ASSIGN.match(code)) and not _CALL.search(m.group(1))):
        out |= _targets(m.group(1))
    out |= set(_AS.findall(code)) | set(_WALRUS.findall(code))
    return {n for n in out if n.isidentifier() and not keyword.iskeyword(n)}


def _targets(text: str) -> set[str]:
    """Names an assignment target binds: `a, (b, *c)` -> a, b, c; `self.x` -> x; `a[i]` -> none."""
    out = set()
    for part in text.replace("(", ",").replace(")", ",").split(","):
        part = part.strip(" *\t")
        if not part or "[" in part:
            continue
        last = part.split(":")[0].strip().rsplit(".", 1)[-1].strip()  # `x: int` annotates x
        if last.isidentifier():
            out.add(last)
    return out


def introduced_errors(before: str, before_diags: list[Diagnostic], after: str, after_diags: list[Diagnostic],
                      lm: LineMap | None = None, target: Diagnostic | None = None) -> list[Diagnostic]:
    """The fixed file's error-severity diagnostics that the diff brought in (the module's rules)."""
    lm = lm or line_map(before, after)
    a, b = split_lines(before), split_lines(after)
    old_at: dict[int, Counter] = {}
    for d in before_diags:
        if d.severity == 1:
            old_at.setdefault(d.start_line, Counter())[_key(d)] += 1
    old_total = Counter(_key(d) for d in before_diags if d.severity == 1)
    if target is not None:
        old_total[_key(target)] -= 1  # the target is gone: it cannot pay for a copy of itself elsewhere
    new_total = Counter(_key(d) for d in after_diags if d.severity == 1)
    old_syntax = syntax_errors(before)
    broken = {e.line for e in old_syntax}
    fixed_blocks = _blocks(a, _removed_syntax_lines(old_syntax, syntax_errors(after), lm))
    # an unclosed bracket or string hides everything after it: from the first such block to the end
    masked = set(range(min(fixed_blocks), len(a))) if fixed_blocks else set()
    removed = [i for i1, i2, _, _ in lm.hunks for i in range(i1, i2)]
    added = [b[j] for _, _, j1, j2 in lm.hunks for j in range(j1, j2)]
    bound_added = _bound(added)
    unbound = _bound([a[i] for i in removed]) - bound_added
    # a binding rewritten where the diff removed a syntax error was no binding pyright could trust
    rebound = _bound([a[i] for i in removed if i not in broken and i not in fixed_blocks]) & bound_added
    revealing = _dependents(bound_added - _bound(a), a)
    out = []
    for d in after_diags:
        if d.severity != 1:
            continue
        key = _key(d)
        i = lm.old_line(d.start_line)
        if i is None:  # a changed line: whatever the hunk replaced must have had it
            hunk = lm.hunk_of_new(d.start_line)
            replaced = range(hunk[0], hunk[1]) if hunk else range(0)
            if any(old_at.get(k, Counter())[key] for k in replaced):
                continue
            if d.code in _ENVIRONMENT_RULES and _same_import(d.message, [a[k] for k in replaced]):
                continue
            unmasked = any(k in masked for k in replaced) or (hunk is not None and hunk[0] in masked)
            unresolved_target = (target is not None and target.code in NAME_RULES
                                 and target.start_line in replaced)
            if (unmasked or unresolved_target) and not _writes(_span(d, b), [a[k] for k in replaced]):
                continue
            out.append(d)
            continue
        if old_at.get(i, Counter())[key]:
            continue
        names = used_names(b[d.start_line] if d.start_line < len(b) else "")
        if names & (unbound | rebound):
            out.append(d)
            continue
        if new_total[key] <= old_total[key]:
            continue
        ruff_masked = d.code.startswith("ruff[") and bool(old_syntax)
        if not (ruff_masked or i in masked or names & revealing):
            out.append(d)
    return out


def _removed_syntax_lines(old: tuple[SyntaxIssue, ...], new: tuple[SyntaxIssue, ...], lm: LineMap) -> list[int]:
    """Original lines of the syntax errors the diff removed (not at their mapped line any more)."""
    return [e.line for e in _unmatched(old, new, lm.new_line)]


def _blocks(lines: list[str], at: list[int]) -> set[int]:
    """The lines of the top-level blocks (statement, def or class at column 0, with its body) holding `at`."""
    if not at:
        return set()
    starts = [k for k, line in enumerate(lines) if line[:1] not in ("", " ", "\t", "#", ")", "]", "}")]
    out: set[int] = set()
    for line in at:
        first = max((k for k in starts if k <= line), default=0)
        last = min((k for k in starts if k > line), default=len(lines))
        out.update(range(first, last))
    return out


_TOKEN = re.compile(r"\w+|[^\w\s]")


def _span(d: Diagnostic, lines: list[str]) -> str:
    """The text a diagnostic flags on its first line (the whole line when its range is empty there)."""
    line = lines[d.start_line] if d.start_line < len(lines) else ""
    end = d.end_character if d.end_line == d.start_line else len(line)
    return line[d.start_character:end] or line


def _writes(span: str, replaced: list[str]) -> bool:
    """Whether the flagged text has a token the replaced lines did not have: the diff wrote it."""
    have = Counter(_TOKEN.findall("\n".join(replaced)))
    return any(n > have[t] for t, n in Counter(_TOKEN.findall(span)).items())


def _bound(lines: list[str]) -> set[str]:
    return set().union(*map(bound_names, lines)) if lines else set()


def _dependents(names: set[str], lines: list[str]) -> set[str]:
    """`names` and every name the lines bind from them, transitively (`class C(codecs.Codec)` -> C)."""
    users: dict[str, list[int]] = {}
    binds = []
    for k, line in enumerate(lines):
        binds.append(bound_names(line))
        for n in used_names(line):
            users.setdefault(n, []).append(k)
    out, todo, seen = set(names), list(names), set()
    while todo:
        for k in users.get(todo.pop(), ()):
            if k not in seen:
                seen.add(k)
                fresh = binds[k] - out
                out |= fresh
                todo.extend(fresh)
    return out


def quoted_names(message: str) -> list[str]:
    """What a message quotes: `Cannot access attribute "x" for class "C"` -> x, C."""
    return _QUOTED.findall(message.replace("`", '"'))


def _same_import(message: str, replaced: list[str]) -> bool:
    """Whether the unresolved module the message names was already named by the lines the diff replaced."""
    quoted = quoted_names(message)
    return bool(quoted) and all(any(q in line for line in replaced) for q in quoted)
