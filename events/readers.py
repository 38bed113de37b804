"""Readers of event files: JSONL (optionally gzipped) and Parquet.

Each yields `Record`s in file order: where it came from, the decoded event
(or the BadEvent that stopped decoding) and the raw text for quarantine.
Decoding never raises for bad content; only an unreadable file does.
"""

from __future__ import annotations

import gzip
import json
import reprlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from .errors import BadEvent, OtlakeError
from .validate import check_strings, located_in, storable_text


@dataclass(slots=True)
class Record:
    """One input record: origin (file:line or file:row), event dict or error, the raw bytes.

    `raw` is the record as received (a JSON line) or None when the source has
    no text form (Parquet, Python: their JSON text is made when they are staged;
    a bad one carries `raw_of` its values); `trusted` says every string came
    from a strict UTF-8 decoder.
    """

    origin: str
    event: dict | None
    error: BadEvent | None
    raw: bytes | None
    trusted: bool = True


def decode_json_line(line: bytes) -> dict:
    """Decode one JSON line; BadEvent(malformed_json | invalid_unicode) on failure."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as fast_error:
        # orjson refuses lone surrogates and bytes that are not UTF-8; the stdlib reads both (the bytes
        # through surrogateescape), so we can say which it was and where
        try:
            text, not_utf8 = line.decode("utf-8"), None
        except UnicodeDecodeError as e:
            text, not_utf8 = line.decode("utf-8", "surrogateescape"), e
        try:
            value = json.loads(text)
        except ValueError as e:
            raise BadEvent("malformed_json", f"not valid JSON: {e if not_utf8 else fast_error}") from None
        except RecursionError:  # orjson stops at 1024 levels, the stdlib at the interpreter's limit
            raise BadEvent("malformed_json", f"not valid JSON (nested too deep): {fast_error}") from None
        try:
            if not_utf8 is not None:
                bad = " ".join(f"0x{b:02x}" for b in line[not_utf8.start:not_utf8.end])
                check_strings(value, what=f"bytes that are not UTF-8 (first: {bad} at byte offset {not_utf8.start} of the "
                                          "line; save the file as UTF-8)")
            check_strings(value)
        except BadEvent as e:
            raise located_in(e, value) from None
        return value  # valid JSON orjson is stricter about (NaN, huge integers)


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of a JSON Lines file, gzipped or not: no line ends, no blank lines, no BOM."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        fh = opener(path, "rb")
    except OSError as e:
        raise OtlakeError(f"cannot read {path}: {e.strerror or e}") from e
    with fh:
        for number, line in enumerate(fh, 1):
            line = line.rstrip(b"\r\n")
            if number == 1:
                line = line.removeprefix(b"\xef\xbb\xbf")  # some Windows tools start UTF-8 files with one
            if line.strip():
                yield number, line


READ_BLOCK = 64 << 20  # bytes read at a time by iter_line_blocks
_SPACE = np.zeros(256, dtype=bool)
_SPACE[list(b" \t\n\r\x0b\x0c")] = True  # what bytes.strip() removes


@dataclass(slots=True)
class LineBlock:
    """Lines of a JSON Lines file, concatenated: line i is data[offsets[i]:offsets[i+1]], numbered numbers[i]."""

    numbers: np.ndarray  # int64, 1-based line numbers in the file
    offsets: np.ndarray  # int64, len(numbers) + 1
    data: np.ndarray     # uint8, the lines' bytes without line ends

    def __len__(self) -> int:
        return len(self.numbers)

    def line(self, i: int) -> bytes:
        return self.data[self.offsets[i]:self.offsets[i + 1]].tobytes()


def iter_line_blocks(path: Path, max_lines: int, block_bytes: int = READ_BLOCK) -> Iterator[LineBlock]:
    """The lines of iter_lines (same numbers, same bytes), up to max_lines per block, found with numpy.

    No Python object per line: ingest hands the blocks to Arrow as they are.
    """
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        fh = opener(path, "rb")
    except OSError as e:
        raise OtlakeError(f"cannot read {path}: {e.strerror or e}") from e
    consumed = 0  # lines before the current piece
    carry = b""
    with fh:
        while True:
            at = fh.tell()
            try:
                piece = fh.read(block_bytes)
            except (OSError, EOFError) as e:  # e.g. a truncated or corrupt .gz
                # the whole lines before the damage still count, as iter_lines would have given them
                data = carry + _readable_part(fh, at)
                cut = data.rfind(b"\n") + 1
                if cut:
                    yield from _split_lines(data[:cut], consumed, max_lines)[0]
                raise OtlakeError(f"cannot read {path}: {e}") from e
            data = carry + piece if carry else piece
            if piece:
                cut = data.rfind(b"\n") + 1
                if cut == 0:  # no line end yet: one line longer than a block
                    carry = data
                    continue
                data, carry = data[:cut], data[cut:]
            elif not data:
                return
            blocks, lines = _split_lines(data, consumed, max_lines)
            yield from blocks
            consumed += lines
            if not piece:
                return


def _readable_part(fh, at: int) -> bytes:
    """The lines fh gives from offset `at` before it fails, as iter_lines reads them (a gzip stream re-reads
    from its start to seek)."""
    parts = []
    try:
        fh.seek(at)
        for line in fh:
            parts.append(line)  # noqa: PERF402 (list(fh) would lose the lines read before the failure)
    except (OSError, EOFError):
        pass
    return b"".join(parts)


def _split_lines(text: bytes, before: int, max_lines: int) -> tuple[list[LineBlock], int]:
    """Blocks of the lines in text (whole lines), the first numbered before + 1, and how many lines (blank
    ones included) text holds."""
    buf = np.frombuffer(text, dtype=np.uint8)
    nl = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], nl + 1))
    ends = np.concatenate((nl, [len(buf)]))
    if len(buf) and buf[-1] == 10:  # the text after the last line end is not a line
        starts, ends = starts[:-1], ends[:-1]
    return list(_blocks(text, buf, starts, ends, before, max_lines)), len(starts)


def _blocks(text: bytes, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, before: int,
            max_lines: int) -> Iterator[LineBlock]:
    numbers = np.arange(before + 1, before + 1 + len(starts), dtype=np.int64)
    if before == 0 and len(buf) >= 3 and buf[:3].tobytes() == b"\xef\xbb\xbf":
        starts[0] = min(3, ends[0])
    while True:  # rstrip(b"\r\n"): the \n is already gone, trailing \r's are not
        cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13)
        if not cr.any():
            break
        ends[cr] -= 1
    keep = ends > starts
    maybe_blank = keep & _SPACE[buf[np.minimum(starts, max(len(buf) - 1, 0))]] if len(buf) else keep
    for i in np.flatnonzero(maybe_blank):  # rare: lines that start with white space
        if not buf[starts[i]:ends[i]].tobytes().strip():
            keep[i] = False
    starts, ends, numbers = starts[keep], ends[keep], numbers[keep]
    if keep.all() and (len(ends) == 0 or ends[-1] == len(buf) or buf[ends[-1]] == 10) \
            and not (ends[:-1] + 1 - starts[1:]).any():
        # the usual file: every line ends with exactly one \n, so dropping the \n's joins the lines
        data = np.frombuffer(text.replace(b"\n", b""), dtype=np.uint8)
        lengths = ends - starts
        for a in range(0, len(starts), max_lines):
            offsets = np.zeros(len(lengths[a:a + max_lines]) + 1, dtype=np.int64)
            np.cumsum(lengths[a:a + max_lines], out=offsets[1:])
            base = starts[a] - a
            yield LineBlock(numbers[a:a + max_lines], offsets, data[base:base + offsets[-1]])
        return
    for a in range(0, len(starts), max_lines):
        s, e = starts[a:a + max_lines], ends[a:a + max_lines]
        lo, hi = s[0], e[-1]
        marks = np.zeros(hi - lo + 1, dtype=np.int8)
        marks[s - lo] = 1
        marks[e - lo] -= 1
        inside = np.cumsum(marks[:-1], dtype=np.int8).view(bool)
        offsets = np.zeros(len(s) + 1, dtype=np.int64)
        np.cumsum(e - s, out=offsets[1:])
        yield LineBlock(numbers[a:a + max_lines], offsets, buf[lo:hi][inside])


def read_jsonl(path: Path) -> Iterator[Record]:
    """Records of a JSON Lines file (.jsonl, .ndjson, .json, or any of them .gz)."""
    name = storable_text(str(path))  # origins are stored: a file name need not be UTF-8
    loads = orjson.loads
    for number, line in iter_lines(path):
        try:
            event = loads(line)
        except orjson.JSONDecodeError:
            try:
                event = decode_json_line(line)
            except BadEvent as e:
                yield Record(f"{name}:{number}", None, e, line)
                continue
        yield Record(f"{name}:{number}", event, None, line)


def event_json(event: object) -> bytes:
    """The JSON text of a decoded event (a Parquet row, a Python dict); BadEvent(wrong_type) if it has none."""
    try:
        return orjson.dumps(event)
    except orjson.JSONEncodeError:
        pass
    try:  # deeper nesting, integers past 64 bits, lone surrogates (escaped: they are refused later)
        return json.dumps(event, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError) as e:
        raise BadEvent("wrong_type", f"the event cannot be written as JSON: {e}") from None


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxstring, _REPR.maxother = 12, 200, 200, 10_000, 200


def raw_of(event: object) -> bytes:
    """What quarantine keeps of a decoded event: its JSON text, else a bounded repr (never raises)."""
    try:
        return event_json(event)
    except BadEvent:
        return _REPR.repr(event).encode("utf-8", "backslashreplace")


def read_events(path: Path) -> Iterator[Record]:
    """Records of an event file, by its suffix."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".parquet":
        from .parquet import read_parquet  # pyarrow is imported only for Parquet

        return read_parquet(path)
    if set(suffixes) & {".jsonl", ".ndjson", ".json", ".gz"} or not suffixes:
        return read_jsonl(path)
    raise OtlakeError(f"{path}: unknown event file type {''.join(suffixes)!r} (expected .jsonl, .jsonl.gz or .parquet)")
