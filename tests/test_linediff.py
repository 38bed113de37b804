"""Numbered line diffs: exact round trips, strict parse and apply, extraction from LM answers."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synth.errors import DiffError
from synth.linediff import LineDiff, LineOp, apply, extract, line_diff, numbered, parse, render

# line breaks other than "\n" ("\r", "\x85", "\u2028", form feed) must stay inside line texts
TEXT = st.text(alphabet=st.sampled_from(list("ab \n\r-+1é\x85\u2028\x0c")), max_size=40)
LINE = st.text(alphabet=st.sampled_from(list("ab \r-+1")), max_size=4)
LINES = st.lists(LINE, max_size=8)
DISTINCT_LINES = st.lists(LINE, max_size=8, unique=True)

DESIGN_OLD = "import turtle\n\nscreen = turtle.screen\nscreen.setup(550, 400)\n"
DESIGN_NEW = "import turtle\n\nscreen = turtle.Screen()\nscreen.setup(550, 400)\n"
DESIGN_DIFF = "-3 screen = turtle.screen\n+3 screen = turtle.Screen()"


@st.composite
def edited(draw, lines=LINES):
    """A text and a random line edit of it: inserts, deletes, replaces, a final-newline toggle."""
    old_lines, final_newline = draw(lines), draw(st.booleans())
    new_lines = list(old_lines)
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        if kind == "insert":
            new_lines.insert(draw(st.integers(0, len(new_lines))), draw(LINE))
        elif new_lines:
            at = draw(st.integers(0, len(new_lines) - 1))
            if kind == "delete":
                del new_lines[at]
            else:
                new_lines[at] = draw(LINE)
    toggle = draw(st.booleans())
    old = "\n".join(old_lines) + ("\n" if final_newline else "")
    new = "\n".join(new_lines) + ("\n" if final_newline != toggle else "")
    return old, new


def kind_of(old: str, diff) -> str:
    with pytest.raises(DiffError) as caught:
        apply(old, diff)
    return caught.value.kind


@settings(max_examples=300)
@given(TEXT, TEXT)
def test_apply_render_is_exact_on_random_texts(old, new):
    assert apply(old, render(old, new)) == new


@settings(max_examples=300)
@given(edited())
def test_apply_render_is_exact_on_edits(pair):
    old, new = pair
    diff = render(old, new)
    assert apply(old, diff) == new
    assert (diff == "") == (old == new)


@settings(max_examples=200)
@given(edited())
def test_ops_name_the_lines_they_remove_and_add(pair):
    old, new = pair
    old_lines, new_lines = old.split("\n"), new.split("\n")
    for op in line_diff(old, new).ops:
        lines = old_lines if op.sign == "-" else new_lines
        assert lines[op.number - 1] == op.text


@settings(max_examples=200)
@given(edited())
def test_parse_round_trips_rendered_text(pair):
    old, new = pair
    text = render(old, new)
    parsed = parse(text)
    assert parsed == line_diff(*pair)
    assert parsed.to_text() == text
    assert len(parsed.ops) == (len(text.split("\n")) if text else 0)


@settings(max_examples=200)
@given(edited(), st.data())
def test_apply_refuses_a_changed_removed_text(pair, data):
    old, new = pair
    ops = line_diff(old, new).ops
    removals = [k for k, op in enumerate(ops) if op.sign == "-"]
    if not removals:
        return
    k = data.draw(st.sampled_from(removals))
    changed = LineOp("-", ops[k].number, ops[k].text + "x")
    assert kind_of(old, LineDiff(ops[:k] + (changed,) + ops[k + 1:])) == "text_mismatch"


@settings(max_examples=200)
@given(edited(DISTINCT_LINES), st.sampled_from([-1, 1, 2]))
def test_apply_refuses_shifted_numbers(pair, shift):
    old, new = pair
    if len(set(old.split("\n"))) < len(old.split("\n")):
        return  # a final newline can repeat an empty line; the check needs distinct lines
    ops = line_diff(old, new).ops
    if not any(op.sign == "-" for op in ops) or min(op.number for op in ops) + shift < 1:
        return  # shifted additions alone are a different valid diff
    shifted = LineDiff(tuple(LineOp(op.sign, op.number + shift, op.text) for op in ops))
    assert kind_of(old, shifted) in {"text_mismatch", "bad_numbers", "out_of_range"}


def test_design_example():
    assert render(DESIGN_OLD, DESIGN_NEW) == DESIGN_DIFF
    assert apply(DESIGN_OLD, DESIGN_DIFF) == DESIGN_NEW


def test_one_changed_line_in_a_long_file_is_two_ops():
    old = "\n".join(f"x{i} = {i % 3}" for i in range(200)) + "\n"
    new = old.replace("x150 = 0", "x150 = 1")
    assert render(old, new) == "-151 x150 = 0\n+151 x150 = 1"


def test_final_newline_is_a_last_empty_line():
    assert render("a\n", "a") == "-2 "
    assert render("a", "a\n") == "+2 "
    assert apply("a\nb\n", "+3 c") == "a\nb\nc\n"
    assert apply("a\nb", "+3 c") == "a\nb\nc"
    assert apply("a\nb\n", "-3 ") == "a\nb"
    assert kind_of("a\nb", "-3 ") == "out_of_range"


def test_carriage_returns_stay_in_the_line_text():
    assert render("a\r\nb\r\n", "a\r\nc\r\n") == "-2 b\r\n+2 c\r"
    assert apply("a\r\nb\r\n", "-2 b\r\n+2 c\r") == "a\r\nc\r\n"
    assert render("a\rb", "a\rc") == "-1 a\rb\n+1 a\rc"
    assert kind_of("a\r\nb\r\n", "-2 b\n+2 c") == "text_mismatch"


def test_empty_files():
    assert render("", "") == ""
    assert render("", "x") == "-1 \n+1 x"
    assert apply("x", "-1 x") == ""
    assert apply("", "+1 x") == "x\n"  # added before the one empty line
    assert apply("abc", "") == "abc"


def test_numbered():
    assert numbered(DESIGN_OLD) == (
        "1 import turtle\n2\n3 screen = turtle.screen\n4 screen.setup(550, 400)\n5")
    assert numbered("") == "1"
    assert numbered("a\r\n    b") == "1 a\r\n2     b"


def test_parse_fields_and_empty_texts():
    assert parse("-4\n\n-5 \n+4  x").ops == (
        LineOp("-", 4, ""), LineOp("-", 5, ""), LineOp("+", 4, " x"))
    assert parse("") == LineDiff(())


@pytest.mark.parametrize("line", [
    "-3screen", "3 foo", "- 3 foo", " -3 a", "-03 a", "-0 a", "+x y", "*3 a", "  ", "\r",
])
def test_parse_refuses_malformed_lines(line):
    with pytest.raises(DiffError) as caught:
        parse(f"-1 a\n{line}")
    assert caught.value.kind == "malformed"
    assert "diff line 2" in str(caught.value) and repr(line) in str(caught.value)


def test_text_mismatch_says_both_texts():
    with pytest.raises(DiffError) as caught:
        apply("a\nb\nc", "-2 x")
    assert caught.value.kind == "text_mismatch"
    assert "'b'" in str(caught.value) and "'x'" in str(caught.value)


@pytest.mark.parametrize("diff, kind", [
    ("-4 d", "out_of_range"),
    ("-2 b\n-2 b", "bad_numbers"),  # duplicate removal
    ("-3 c\n-1 a", "bad_numbers"),  # removals going up
    ("+2 x\n+2 y", "bad_numbers"),  # two lines cannot both be line 2
    ("-3 c\n+2 x", "bad_numbers"),  # new line 2 is already the kept 'b'
    ("+3 x\n-1 a", "bad_numbers"),  # original line 1 was kept to make room for new line 3
    ("+5 x", "bad_numbers"),  # at most 3 lines can come before it
    ("-1 a\n-2 b\n-3 c\n+2 x", "bad_numbers"),  # nothing is left to be new line 1
])
def test_apply_refuses_contradicting_numbers(diff, kind):
    assert kind_of("a\nb\nc", diff) == kind


def test_apply_accepts_numbers_that_fit():
    assert apply("a\nb\nc", "+4 x") == "a\nb\nc\nx"
    assert apply("a\nb\nc", "+1 x\n-1 a") == "x\nb\nc"  # addition first: same lines, no guess
    assert apply("a\nb\nc", "-1 a\n-3 c\n+2 x") == "b\nx"
    assert apply("a\nb\nc", "-2 b\n+2 b") == "a\nb\nc"


def test_extract_text_around_a_diff_block():
    answer = f"Here is the fix:\n<diff>\n{DESIGN_DIFF}\n</diff>\nScreen must be called."
    assert extract(answer) == DESIGN_DIFF
    assert apply(DESIGN_OLD, extract(answer)) == DESIGN_NEW


@pytest.mark.parametrize("fence", ["```diff", "```", "  ``` diff "])
def test_extract_a_fenced_block(fence):
    assert extract(f"Fix:\n{fence}\n\n{DESIGN_DIFF}\n```\nDone.") == DESIGN_DIFF


def test_extract_takes_the_first_of_two_blocks():
    assert extract("<diff>\n-1 a\n</diff>\nor\n<diff>\n-2 b\n</diff>") == "-1 a"
    assert extract("```diff\n-1 a\n```\n```diff\n-2 b\n```") == "-1 a"


def test_extract_prefers_a_diff_block_to_a_fence():
    assert extract("```diff\n-1 x\n```\n<diff>\n-1 a\n</diff>") == "-1 a"


def test_extract_is_tolerant_around_the_block():
    # a stop sequence '</diff>' is cut from the answer
    assert extract("<diff>\n-1 a\n+1 b\n") == "-1 a\n+1 b"
    # '<diff>' named in prose before the block
    assert extract("I will answer in a <diff> block.\n<diff>\n-1 a\n</diff>") == "-1 a"
    # a fence inside the block
    assert extract("<diff>\n```diff\n-1 a\n```\n</diff>") == "-1 a"
    assert extract("<diff>-1 a</diff>") == "-1 a"
    assert extract("<diff>\n  \n</diff>") == ""
    # bare diff lines with prose around
    assert extract("Change\n-3 a\n+3  b\nand done") == "-3 a\n+3  b"


def test_extract_keeps_the_diff_lines_as_they_are():
    assert extract("<diff>\n  -1 a\n+1 b  \n\n</diff>") == "  -1 a\n+1 b  "
    assert extract("<diff>\r\n-1 a\r\n</diff>") == "-1 a\r"  # then text_mismatch on a '\n' file


@pytest.mark.parametrize("answer", [
    "I cannot fix this.", "", "```python\nx = 1\n```\ntext\n```python\ny = 2\n```", "- a bullet",
])
def test_extract_without_a_block_is_none(answer):
    assert extract(answer) is None


@settings(max_examples=200)
@given(edited(), st.text(alphabet="ab \n.-`", max_size=20), st.text(alphabet="ab \n.", max_size=20))
def test_extract_finds_a_rendered_diff_among_prose(pair, before, after):
    diff = render(*pair)
    assert extract(f"{before}<diff>\n{diff}\n</diff>{after}") == diff
