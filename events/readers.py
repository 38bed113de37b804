"""Readers of event files: JSONL (optionally gzipped) and Parquet.

Each yields `Record`s in file order: where it came from, the decoded event
(or the BadEvent that stopped decoding) and the raw text for quarantine.
Decoding never raises for bad content; only an unreadable file does.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import orjson

from .errors import BadEvent, OtlakeError
from .validate import check_strings


@dataclass(slots=True)
class Record:
    """One input record: origin (file:line or file:row), event dict or error, the raw bytes.

    `raw` is the record as received (a JSON line) or None when the source has
    no text form (Parquet); `trusted` says every string came from a strict
    UTF-8 decoder.
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
        # orjson refuses lone surrogates; the stdlib accepts them, so we can say which it was
        try:
            value = json.loads(line.decode("utf-8", errors="surrogateescape"))
        except (ValueError, UnicodeDecodeError):
            raise BadEvent("malformed_json", f"not valid JSON: {fast_error}") from None
        try:
            check_strings(value)
        except BadEvent as e:
            if isinstance(value, dict):
                where = {k: value.get(k) for k in ("repl_id", "seq", "path")}
                raise e.located(
                    repl_id=where["repl_id"] if isinstance(where["repl_id"], str) else None,
                    seq=where["seq"] if type(where["seq"]) is int else None,
                ) from None
            raise
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


def read_jsonl(path: Path) -> Iterator[Record]:
    """Records of a JSON Lines file (.jsonl, .ndjson, .json, or any of them .gz)."""
    name = str(path)
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


def _drop_nulls(value):
    """Parquet rows carry every column of the file; the contract omits absent fields."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        if value and isinstance(value[0], tuple) and len(value[0]) == 2:  # a map column
            return {k: v for k, v in value}
        return [_drop_nulls(v) for v in value]
    return value


def read_parquet(path: Path, batch_rows: int = 65_536) -> Iterator[Record]:
    """Records of a Parquet file whose columns are the contract's fields."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except OSError as e:
        raise OtlakeError(f"cannot read {path} as Parquet: {e}") from e
    name = str(path)
    row = 0
    for batch in pf.iter_batches(batch_size=batch_rows):
        for item in batch.to_pylist():
            row += 1
            event = _drop_nulls(item)
            # Parquet gives datetimes for timestamp columns; the contract carries RFC 3339 text
            ts = event.get("ts")
            if ts is not None and not isinstance(ts, str) and hasattr(ts, "isoformat"):
                if getattr(ts, "tzinfo", 1) is None:  # a timestamp column without a zone: the contract's UTC
                    ts = ts.replace(tzinfo=UTC)
                event["ts"] = ts.isoformat()
            yield Record(f"{name}:row {row}", event, None, None)


def read_events(path: Path) -> Iterator[Record]:
    """Records of an event file, by its suffix."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".parquet":
        return read_parquet(path)
    if set(suffixes) & {".jsonl", ".ndjson", ".json", ".gz"} or not suffixes:
        return read_jsonl(path)
    raise OtlakeError(f"{path}: unknown event file type {''.join(suffixes)!r} (expected .jsonl, .jsonl.gz or .parquet)")
