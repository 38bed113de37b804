"""iter_line_blocks (numpy) finds exactly the lines iter_lines finds: numbers, bytes, blocks."""

from __future__ import annotations

import gzip

from hypothesis import given, settings
from hypothesis import strategies as st

from events.readers import iter_line_blocks, iter_lines

PIECES = [b"a", b"{", b"}", b"\n", b"\r", b" ", b"\t", b"\xef\xbb\xbf", b"\xc3\xa9", b"\x0b", b"\r\n", b"\xff"]


def blocks_as_lines(path, max_lines, block_bytes):
    out = []
    for block in iter_line_blocks(path, max_lines, block_bytes):
        assert 0 < len(block) <= max_lines
        assert block.offsets[0] == 0 and block.offsets[-1] == len(block.data)
        out += [(int(block.numbers[i]), block.line(i)) for i in range(len(block))]
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=60), st.integers(1, 24), st.integers(1, 6), st.booleans())
def test_same_lines_as_iter_lines(tmp_path_factory, pieces, block_bytes, max_lines, gz):
    data = b"".join(pieces)
    path = tmp_path_factory.mktemp("lines") / ("in.jsonl.gz" if gz else "in.jsonl")
    path.write_bytes(gzip.compress(data) if gz else data)
    assert blocks_as_lines(path, max_lines, block_bytes) == list(iter_lines(path))


def test_a_usual_file_in_blocks(tmp_path):
    lines = [b'{"n":%d,"text":"%s"}' % (i, b"x" * (i % 50)) for i in range(1000)]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    got = blocks_as_lines(path, 300, 4096)  # lines cross the 4 KB reads
    assert got == [(i + 1, line) for i, line in enumerate(lines)]


def test_a_truncated_gzip_gives_its_whole_lines_then_fails(tmp_path):
    from events.errors import OtlakeError

    lines = [b'{"n":%d}' % i for i in range(20000)]
    data = gzip.compress(b"\n".join(lines) + b"\n")
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    got = []
    try:
        for block in iter_line_blocks(path, 1000, 1 << 20):
            got += [block.line(i) for i in range(len(block))]
    except OtlakeError as e:
        assert "cannot read" in str(e)
    else:
        raise AssertionError("a truncated file must fail")
    assert 5000 < len(got) < 20000 and got == lines[: len(got)]
