"""OT operations: parsing, apply, compose and transform laws, the chunked buffer."""

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.errors import BadEvent
from ot_replay import buffer as buffer_mod
from ot_replay.buffer import TextBuffer
from ot_replay.ops import apply, compose, normalize, parse_ops, to_contract, transform

TEXT = st.text(alphabet=st.sampled_from(list("ab\n é中😀")), max_size=40)


@st.composite
def doc_and_ops(draw, doc=None):
    """A document and a valid op list on it (code points)."""
    if doc is None:
        doc = draw(TEXT)
    ops, pos = [], 0
    while pos < len(doc) and draw(st.booleans()):
        choice = draw(st.sampled_from(["skip", "delete", "insert"]))
        if choice == "insert":
            ops.append(draw(TEXT.filter(bool)))
        else:
            n = draw(st.integers(1, len(doc) - pos))
            ops.append(n if choice == "skip" else -n)
            pos += n
    if draw(st.booleans()):
        ops.append(draw(TEXT.filter(bool)))
    return doc, ops


def naive(text: str, ops) -> str:
    """Independent reference: one slice per op on a str."""
    pos = 0
    for op in ops:
        if isinstance(op, str):
            text = text[:pos] + op + text[pos:]
            pos += len(op)
        elif op > 0:
            pos += op
        else:
            text = text[:pos] + text[pos - op:]
    return text


def test_parse_ops_round_trips_contract_form():
    raw = [{"skip": 3}, {"delete": 2}, {"insert": "é😀"}]
    assert parse_ops(raw) == [3, -2, "é😀"]
    assert to_contract(parse_ops(raw)) == raw


@pytest.mark.parametrize(
    "raw, kind",
    [
        ([{"retain": 3}], "unknown_op"),
        ([{"skip": 1, "insert": "a"}], "unknown_op"),
        (["skip"], "unknown_op"),
        ([{"skip": -1}], "wrong_type"),
        ([{"skip": True}], "wrong_type"),
        ([{"insert": 5}], "wrong_type"),
        ([{"insert": "\ud800"}], "invalid_unicode"),
        ({"skip": 1}, "wrong_type"),
    ],
)
def test_parse_ops_rejects(raw, kind):
    with pytest.raises(BadEvent) as e:
        parse_ops(raw)
    assert e.value.kind == kind


def test_counts_are_code_points_not_utf16_units():
    # 😀 is one code point (two UTF-16 units): skipping 1 lands after it
    assert apply("😀x", [1, "!"]) == "😀!x"
    buf = TextBuffer("😀x")
    buf.apply([1, -1])
    assert buf.text() == "😀"


def test_apply_past_end_is_an_error_and_changes_nothing():
    buf = TextBuffer("abc")
    with pytest.raises(BadEvent) as e:
        buf.apply(["x", 2, -5])
    assert e.value.kind == "op_past_end"
    assert buf.text() == "abc"
    with pytest.raises(BadEvent):
        apply("abc", [4])


@given(doc_and_ops())
def test_apply_matches_naive(pair):
    doc, ops = pair
    assert apply(doc, ops) == naive(doc, ops)


@given(st.data())
def test_compose_law(data):
    doc, a = data.draw(doc_and_ops())
    _, b = data.draw(doc_and_ops(apply(doc, a)))
    assert apply(doc, compose(a, b)) == apply(apply(doc, a), b)


@given(st.data())
def test_transform_converges(data):
    doc, a = data.draw(doc_and_ops())
    _, b = data.draw(doc_and_ops(doc))
    a2, b2 = transform(a, b)
    assert apply(apply(doc, a), b2) == apply(apply(doc, b), a2)


def test_transform_gives_first_argument_priority_at_same_position():
    a2, b2 = transform(["A"], ["B"])
    assert apply(apply("", ["A"]), b2) == "AB"
    assert apply(apply("", ["B"]), a2) == "AB"


def test_normalize_merges_and_drops_trailing_skip():
    assert normalize([1, 2, "a", "b", -1, -1, 3]) == [3, "ab", -2]
    assert normalize([-1, "a"]) == ["a", -1]


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 40), TEXT), max_size=60))
def test_buffer_matches_naive_across_chunks(monkeypatch_chunk, edits):
    text = "".join(chr(0x61 + i % 26) for i in range(300)) + "é😀中" * 20
    buf = TextBuffer(text)
    for where, dele, ins in edits:
        pos = where % (len(text) + 1)
        dele = min(dele, len(text) - pos)
        ops = [op for op in (pos, -dele, ins) if op]
        buf.apply(ops)
        text = naive(text, ops)
        assert len(buf) == len(text)
        # the CRC caches per-chunk bytes: check it after every edit, not only at the end
        assert buf.crc32() == zlib.crc32(text.encode())
    assert buf.text() == text


@pytest.fixture(scope="module")
def monkeypatch_chunk():
    """Tiny chunks so a 300-char document spans many of them."""
    old = buffer_mod.CHUNK
    buffer_mod.CHUNK = 7
    yield
    buffer_mod.CHUNK = old


def test_cursor_is_where_the_last_edit_left_it():
    from ot_replay.ops import cursor

    assert cursor([5, "ab"]) == 7 and cursor([3, -2, 4]) == 3 and cursor([2]) == 0
    assert cursor(["x", 3, -1]) == 4 and cursor([]) == 0
