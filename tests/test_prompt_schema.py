"""The sentinel prompt and response: DESIGN.md's example byte for byte, strict parsing, round trips."""

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synth.errors import DiffError, SchemaError
from synth.linediff import apply
from synth.schema import (
    Prompt,
    one_line,
    parse_prompt,
    parse_response,
    render_prompt,
    render_response,
)

# copied from DESIGN.md, "Line diffs and the prompt schema"
DESIGN_PROMPT = """<code>
#main.py
1 import turtle
2
3 screen = turtle.screen
4 screen.setup(550, 400)
</code>
<lsp_error>
pyright[reportAttributeAccessIssue] "screen" is not a known member of module "turtle"
</lsp_error>
<error_line>
3 screen = turtle.screen
</error_line>"""
DESIGN_RESPONSE = """<diff>
-3 screen = turtle.screen
+3 screen = turtle.Screen()
</diff>"""
DESIGN = Prompt(
    path="main.py",
    code="import turtle\n\nscreen = turtle.screen\nscreen.setup(550, 400)",
    rule="pyright[reportAttributeAccessIssue]",
    message='"screen" is not a known member of module "turtle"',
    line=3,
)

CHARS = list("ab #<>/\t\r\n1-é\x85\u2028")
CODE = st.text(alphabet=st.sampled_from(CHARS), max_size=60)
PATH = st.text(alphabet=st.sampled_from(list("ab/._ #<>é")), min_size=1, max_size=12)
RULE = st.builds("{}[{}]".format, st.sampled_from(["pyright", "ruff"]),
                 st.text(alphabet=st.sampled_from(list("aZ09_-.")), min_size=1, max_size=8))
MESSAGE = st.text(alphabet=st.sampled_from(CHARS), max_size=40)
ONE_LINE_MESSAGE = MESSAGE.map(one_line).filter(bool)


@st.composite
def prompts(draw, message=ONE_LINE_MESSAGE):
    code = draw(CODE)
    line = draw(st.integers(1, len(code.split("\n"))))
    return Prompt(draw(PATH), code, draw(RULE), draw(message), line)


def schema_error(parse, text: str) -> str:
    with pytest.raises(SchemaError) as caught:
        parse(text)
    return str(caught.value)


def test_design_example_byte_for_byte():
    assert render_prompt(DESIGN) == DESIGN_PROMPT
    assert render_response("-3 screen = turtle.screen\n+3 screen = turtle.Screen()") == DESIGN_RESPONSE
    assert DESIGN.line_text == "screen = turtle.screen"


def test_design_example_parses_and_its_diff_fixes_the_code():
    prompt = parse_prompt(DESIGN_PROMPT)
    assert prompt == DESIGN
    fixed = apply(prompt.code, parse_response(DESIGN_RESPONSE))
    assert fixed == "import turtle\n\nscreen = turtle.Screen()\nscreen.setup(550, 400)"


@settings(max_examples=300)
@given(prompts())
def test_prompt_round_trip(prompt):
    text = render_prompt(prompt)
    assert parse_prompt(text) == prompt
    assert parse_prompt(text + "\n") == prompt


@settings(max_examples=200)
@given(prompts(message=MESSAGE.filter(lambda m: one_line(m))))
def test_messages_render_on_one_line(prompt):
    parsed = parse_prompt(render_prompt(prompt))
    assert parsed == replace(prompt, message=one_line(prompt.message))
    assert parsed.message.splitlines() == [parsed.message]
    assert one_line(parsed.message) == parsed.message


def test_multi_line_pyright_message():
    message = 'Cannot access attribute "x" for class "A"\n  Attribute "x" is unknown'
    text = render_prompt(replace(DESIGN, message=message))
    assert 'pyright[reportAttributeAccessIssue] Cannot access attribute "x" for class "A" ' \
           'Attribute "x" is unknown\n</lsp_error>' in text


def test_code_keeps_carriage_returns_and_final_newline():
    prompt = Prompt("a.py", "x = 1\r\ny = 2\r\n", "ruff[F821]", "m", 2)
    text = render_prompt(prompt)
    assert "<code>\n#a.py\n1 x = 1\r\n2 y = 2\r\n3\n</code>" in text
    assert "<error_line>\n2 y = 2\r\n</error_line>" in text
    assert parse_prompt(text) == prompt


@settings(max_examples=200)
@given(st.text(alphabet=st.sampled_from(list("+-12 ab\n\r")), max_size=30))
def test_response_round_trip(text):
    diff = "\n".join(f"-{n} {line}" for n, line in enumerate(text.split("\n"), 1)) if text else ""
    assert parse_response(render_response(diff)) == diff
    assert parse_response(render_response(diff) + "\n") == diff


def test_empty_diff_response():
    assert render_response("") == "<diff>\n</diff>"
    assert parse_response("<diff>\n</diff>") == ""


@pytest.mark.parametrize("bad, where", [
    (DESIGN_PROMPT.replace("<code>\n", "<code> \n"), "prompt line 1: expected '<code>'"),
    (DESIGN_PROMPT.replace("#main.py", "main.py"), "prompt line 2: expected '#path'"),
    (DESIGN_PROMPT.replace("</code>", "</ code>"), "no '</code>' line"),
    (DESIGN_PROMPT.replace("2\n3 screen", "2\n4 screen"), "prompt line 5: expected code line 3"),
    (DESIGN_PROMPT.replace("\n2\n", "\n2 \n"), "prompt line 4: expected code line 2"),
    (DESIGN_PROMPT.replace("\n2\n", "\n02\n"), "prompt line 4: expected code line 2"),
    (DESIGN_PROMPT.replace("#main.py\n1 import turtle\n2\n3 screen = turtle.screen\n"
                           "4 screen.setup(550, 400)\n", "#main.py\n"), "the code has no numbered line"),
    (DESIGN_PROMPT.replace("<lsp_error>", "<error>"), "prompt line 8: expected '<lsp_error>'"),
    (DESIGN_PROMPT.replace('] "screen"', ']  "screen"'), "prompt line 9: expected 'tool[rule] message'"),
    (DESIGN_PROMPT.replace('] "screen" is not a known member of module "turtle"', "]"),
     "prompt line 9: expected 'tool[rule] message'"),
    (DESIGN_PROMPT.replace("\n3 screen = turtle.screen\n</error_line>",
                           "\n3 screen = turtle.Screen\n</error_line>"), "is not line 3 of the code"),
    (DESIGN_PROMPT.replace("\n3 screen = turtle.screen\n</error_line>",
                           "\n9 screen = turtle.screen\n</error_line>"), "1 to 4"),
    (DESIGN_PROMPT.replace("pyright[reportAttributeAccessIssue]", "reportAttributeAccessIssue"),
     "is not of the form tool[rule]"),
    (DESIGN_PROMPT + "\n\n", "expected 6 lines after '</code>'"),
    (DESIGN_PROMPT + "\nmore", "expected 6 lines after '</code>'"),
])
def test_parse_prompt_says_what_is_wrong(bad, where):
    assert where in schema_error(parse_prompt, bad)


@pytest.mark.parametrize("fields, what", [
    ({"path": ""}, "one non-empty line"),
    ({"path": "a\nb.py"}, "one non-empty line"),
    ({"rule": "pyright"}, "tool[rule]"),
    ({"rule": "ruff[E 501]"}, "tool[rule]"),
    ({"message": " \n "}, "is empty"),
    ({"line": 0}, "outside its 4 lines"),
    ({"line": 5}, "outside its 4 lines"),
])
def test_prompt_refuses_what_it_cannot_render(fields, what):
    with pytest.raises(SchemaError, match=what.replace("[", r"\[").replace("]", r"\]")):
        replace(DESIGN, **fields)


@pytest.mark.parametrize("bad, where", [
    ("-3 a\n+3 b", "expected a '<diff>' line"),
    ("Sure:\n<diff>\n-3 a\n</diff>", "expected a '<diff>' line"),
    ("<diff>\n-3 a", "expected a '<diff>' line"),
    ("<diff>\n-3 a\n</diff>\nthanks", "expected a '<diff>' line"),
    ("<diff>\n-3 a\n</diff>\n\n", "expected a '<diff>' line"),
    ("<diff>", "expected a '<diff>' line"),
])
def test_parse_response_is_strict(bad, where):
    assert where in schema_error(parse_response, bad)


def test_a_malformed_diff_line_is_a_schema_error_caused_by_the_diff_error():
    with pytest.raises(SchemaError) as caught:
        parse_response("<diff>\n-3 a\n3 b\n</diff>")
    assert isinstance(caught.value.__cause__, DiffError)
    assert caught.value.__cause__.kind == "malformed"
    assert "diff line 2: '3 b'" in str(caught.value)
    with pytest.raises(SchemaError, match="malformed"):
        render_response("-1 a\n</diff>\n<diff>\n-2 b")
