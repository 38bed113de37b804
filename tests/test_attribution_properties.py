"""Properties of the attribution and mining rules on messy text: no crash, and an unchanged file changes nothing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lsp_runner.diagnostic import Diagnostic
from synth.attribution import introduced_errors, line_map, new_syntax_errors, target_still_reported
from synth.linediff import apply, render
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
    new_syntax_errors(before, after, lm)


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


@settings(max_examples=60)
@given(old=TEXT, later=TEXT, line=st.integers(0, 30), syntax=st.booleans())
def test_mining_never_fails_and_every_candidate_but_the_fallback_adds_no_syntax_error(old, later, line, syntax):
    found = windowed_candidates(old, later, line, syntax_target=syntax, names=frozenset({"x", "os"}))
    assert len(found) <= 3 and old not in found[:-1]
    assert all(not new_syntax_errors(old, c) for c in found[:-1])
    still_typing(line, old, later, old)
    still_typing(line, "", old, None)
