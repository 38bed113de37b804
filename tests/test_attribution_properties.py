"""Properties of the attribution, syntax and still-typing rules on messy text.

No crash; an unchanged file changes nothing; only the fixed file's syntax errors are reported new, and a line
that cannot parse, added to a file that does, always is; a line is still being typed exactly when it changed in
the burst, the cursor stayed on it and the next burst extended it.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lsp_runner.diagnostic import Diagnostic
from lsp_runner.syntax import python_parses, syntax_errors
from synth.attribution import introduced_errors, line_map, new_syntax_errors, target_still_reported
from synth.linediff import apply, render, split_lines
from synth.still_typing import still_typing
from synth.usermine import windowed_candidates

# lines of the kinds real sessions hold: code, half-typed code, blanks, indentation, CRLF ends, tabs, unicode
LINES = st.sampled_from([
    "import os, sys", "def f(x):", "def f(x)", "    return x", "\treturn x", "class C:", "    pass", "",
    "   ", "x = [1, 2", "x = [1, 2]", "print(os.pth)", "print('ça ✔')", "s = 'abc", '"""doc', "if x = 3:",
    "for i in range(3):", "    total += i", "y = x.upper(", "im", "import math", "    # a comment", "\r",
    "z = 1\r", "}", ")", "lambda: (", "@decorator", "async def g():", "    await h()",
])
TEXT = st.lists(LINES, max_size=25).map("\n".join)
# whole statements that parse on their own at the top level, joined into files that parse
PARSING = st.lists(st.sampled_from([
    "import os, sys", "x = [1, 2]", "print(os.pth)", "print('ça ✔')", "", "   ", "import math", "z = 1\r",
    "    # a comment", "def f(x):\n    return x", "class C:\n    pass", "for i in range(3):\n    total += i",
    "async def g():\n    await h()", "@decorator\ndef f(x):\n\treturn x",
]), max_size=12).map("\n".join)
# a line no parser accepts, wherever it is appended
BROKEN = st.sampled_from(["x = [1, 2", "def f(x)", "if x = 3:", "s = 'abc", ")", "}", "lambda: (", "y = x.upper("])
CODES = st.sampled_from(["pyright[reportUndefinedVariable]", "ruff[E999]", "pyright[error]", "ruff[E401]",
                         "pyright[reportAttributeAccessIssue]", "pyright[reportMissingImports]"])


@st.composite
def diagnostics(draw, text: str) -> list[Diagnostic]:
    n = len(text.split("\n"))
    out = []
    for _ in range(draw(st.integers(0, 5))):
        line = draw(st.integers(0, n + 2))  # past the end too: a diagnostic of another version
        out.append(Diagnostic("main.py", draw(CODES), line, draw(st.integers(0, 40)), line,
                              draw(st.integers(0, 60)), draw(st.sampled_from([1, 2])),
                              draw(st.sampled_from(['"x" is not defined', 'Import "os" could not be resolved',
                                                    "Expected `:`", 'Cannot access attribute "pth"']))))
    return out


@settings(max_examples=60)
@given(data=st.data(), before=TEXT, after=TEXT)
def test_attribution_never_fails_and_only_names_diagnostics_of_the_fixed_file(data, before, after):
    old = data.draw(diagnostics(before))
    new = data.draw(diagnostics(after))
    lm = line_map(before, after)
    found = introduced_errors(before, old, after, new, lm, old[0] if old else None)
    assert all(d in new and d.severity == 1 for d in found)
    for target in old:
        still = target_still_reported(target, new, lm)
        assert still is None or still in new
    assert apply(before, render(before, after)) == after  # the map and the diff agree on the lines
    found, theirs, ours = new_syntax_errors(before, after, lm), syntax_errors(after), syntax_errors(before)
    assert all(e in theirs for e in found)  # only errors of the fixed file, each at most as often as it has it
    assert all(found.count(e) <= theirs.count(e) for e in found)
    assert len(found) >= len(theirs) - len(ours)  # each of the original's errors excuses at most one
    assert found == new_syntax_errors(before, after)  # the map passed in is the one it would make
    if not ours:  # nothing to excuse: every error of the fixed file is new
        assert found == list(theirs)


@settings(max_examples=60)
@given(data=st.data(), code=TEXT)
def test_an_unchanged_file_keeps_its_target_and_gains_no_error(data, code):
    diags = data.draw(diagnostics(code))
    lm = line_map(code, code)
    assert introduced_errors(code, diags, code, diags, lm) == []
    assert new_syntax_errors(code, code) == []
    lines = len(code.split("\n"))
    for d in diags:
        if d.start_line < lines:
            assert target_still_reported(d, diags, lm) is not None
    # the same file moved down by a new first line: its errors moved with it, none is new
    assert new_syntax_errors(code, "import math\n" + code) == []


@settings(max_examples=60)
@given(code=PARSING, bad=BROKEN)
def test_a_line_that_cannot_parse_added_to_a_file_that_does_is_a_new_syntax_error(code, bad):
    assert python_parses(code), code  # the strategy makes only files that parse
    broken = code + "\n" + bad
    found = new_syntax_errors(code, broken)
    assert found and {e.line for e in found} == {len(split_lines(code))}, found  # on that line, and only there
    assert new_syntax_errors(broken, code) == []  # taking it out again adds none
    assert new_syntax_errors(broken, broken) == []


@settings(max_examples=60)
@given(old=TEXT, later=TEXT, line=st.integers(0, 30), syntax=st.booleans())
def test_mining_never_fails_and_every_candidate_but_the_fallback_adds_no_syntax_error(old, later, line, syntax):
    found = windowed_candidates(old, later, line, syntax_target=syntax, names=frozenset({"x", "os"}))
    assert len(found) <= 3 and old not in found[:-1]
    assert all(not new_syntax_errors(old, c) for c in found[:-1])
    assert not still_typing(line, "", old, None)  # nothing typed after it: never
    assert not still_typing(line, old, old, later)  # the burst did not change the line
    assert not still_typing(line, old, later, later)  # the next burst did not touch it
    typing = still_typing(line, old, later, old)
    assert typing == still_typing(line, old, later, old, cursor_line=line)  # the cursor on the line: the same
    assert not still_typing(line, old, later, old, cursor_line=line + 1)  # elsewhere: not being typed
    if typing:  # the next file holds a longer line that starts with the typed one
        typed = split_lines(later)[line].rstrip()
        assert any(len(x.rstrip()) > len(typed) and x.startswith(typed) for x in split_lines(old))


@settings(max_examples=60)
@given(code=TEXT, at=st.integers(0, 30), stem=st.sampled_from(["im", "pri", "def g(", "x = [1,", "    ret", "    "]),
       more=st.sampled_from(["port os", "nt(x)", "x", ") -> None:", " 2]"]))
def test_a_line_the_next_burst_extends_is_still_typing_and_nothing_else_is(code, at, stem, more):
    lines = split_lines(code)
    at %= len(lines) + 1

    def with_line(text: str) -> str:  # the file with `text` as line `at`, every other line as it was
        return "\n".join(lines[:at] + [text] + lines[at:])

    before, typed = with_line(stem[:-1]), with_line(stem)  # the burst's last keystroke made the line
    assert still_typing(at, before, typed, with_line(stem + more))
    assert still_typing(at, before, typed, with_line(stem + more), cursor_line=at)
    assert not still_typing(at, before, typed, with_line(stem + more), cursor_line=at + 1)
    assert not still_typing(at, typed, typed, with_line(stem + more))  # typed in an earlier burst
    assert not still_typing(at, before, typed, typed)  # not touched after
    assert not still_typing(at, before, typed, with_line(stem + "   "))  # only trailing spaces added
    assert not still_typing(at, before, typed, with_line(stem[:-1]))  # shortened, not extended
    if stem.strip():  # (a line of only indentation grows into any code)
        assert not still_typing(at, before, typed, with_line("#" + stem + more))  # rewritten, not extended
    assert not still_typing(at, before, typed, None)
