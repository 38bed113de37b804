"""The compiled stream fold (ot_replay._fold, native/fold.c): the Projector's results (ot_replay.fold), faster.

`fold_rows` folds a batch of ot/file rows, sorted by (repl_id, seq), exactly
as ingest would drive ot_replay.fold.Projector (a new Projector whenever the
repl changes, resumed from stored files where given) and returns the same
rows and refusals. Projector stays the reference implementation: the tests
compare the two row for row.

The C loop reads the Arrow buffers directly; an op list it does not fully
understand (anything but the plain contract form) comes back here to
`_parse`, so the reference parse_ops decides every odd case.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pyarrow as pa

from events.errors import BadEvent
from events.validate import parse_ops

from . import _fold
from .buffer import past_end
from .fold import COLUMNS

# input columns in the order fold() takes them: s string, i int64, u uint64
_INPUTS = (("repl_id", "s"), ("seq", "i"), ("us", "i"), ("kind", "s"), ("path", "s"), ("version", "i"),
           ("ops", "s"), ("crc32", "u"), ("author", "s"), ("op", "s"), ("dest", "s"))
_TYPES = {"int64": pa.int64(), "uint64": pa.uint64()}


@dataclass
class ResumeFile:
    """A live file of a repl at the end of what is stored (warehouse.ingest.resume_states gives them)."""

    path: str
    file_id: int
    version: int
    content: str  # the file's text at `version`
    broken: tuple[str, int] | None = None  # (error_kind, seq) of a stored break


def _parse(text: str | None) -> tuple[list, bytes | None]:
    """An op list as Projector.ot reads it: (compact ops, their orjson JSON), or BadEvent.

    Ops that are not valid JSON are refused as malformed_json (Projector.ot
    would let orjson's JSONDecodeError escape). The JSON is None for counts
    orjson cannot write (past 64 bits): such a packet fails its bounds check,
    so it is never written.
    """
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise BadEvent("malformed_json", f"not valid JSON: {e}") from None
    ops = parse_ops(raw, check_unicode=False)
    try:
        return ops, orjson.dumps(ops)
    except orjson.JSONEncodeError:
        return ops, None


def _column(rows: pa.Table | pa.RecordBatch, name: str, kind: str) -> tuple:
    """(length, offset, validity, offsets, data, width) of one input column, for the C fold."""
    return column_spec(rows.column(name), kind)


def column_spec(arr: pa.Array | pa.ChunkedArray, kind: str) -> tuple:
    """(length, offset, validity, offsets, data, width) of a column for the C code: kind s (string), i (int64)
    or u (uint64)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if kind == "s":
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            arr = arr.cast(pa.string())
        width = 8 if pa.types.is_large_string(arr.type) else 4
        validity, offsets, data = arr.buffers()
    else:
        target = pa.uint64() if kind == "u" else pa.int64()
        if arr.type != target:
            arr = arr.cast(target)
        width = 8
        validity, data = arr.buffers()
        offsets = None
    return len(arr), arr.offset, validity if arr.null_count else None, offsets, data, width


def _array(name: str, type_: str, length: int, nulls: int, validity, offsets, data, large: bool) -> pa.Array:
    buffers = [None if b is None else pa.py_buffer(b) for b in (validity, offsets, data)]
    if type_ == "str":
        return pa.Array.from_buffers(pa.large_string() if large else pa.string(), length, buffers, null_count=nulls)
    return pa.Array.from_buffers(_TYPES[type_], length, [buffers[0], buffers[2]], null_count=nulls)


def fold_rows(rows: pa.Table, every: int, resume: dict[str, list[ResumeFile]] | None = None, *,
              chunk_bytes: int = _fold.CHUNK_BYTES) -> tuple[dict[str, pa.Table], list[tuple[int, BadEvent]]]:
    """Fold ot/file rows (sorted by repl_id, seq) as ingest's Projector loop does.

    rows: repl_id, seq, us, kind, path, version, ops, crc32, author, op, dest.
    Returns the tables of projector.COLUMNS (same rows, same order) and the
    refused rows as (row index, BadEvent), in row order. chunk_bytes: the
    size of the C text buffer's chunks (a tuning knob; tests make it tiny).
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    columns = tuple(_column(rows, name, kind) for name, kind in _INPUTS)
    tables, refused = _fold.fold(columns, rows.num_rows, every, resume or {}, _parse, past_end, BadEvent,
                                  chunk_bytes)
    out = {}
    for table, cols in tables.items():
        names = tuple(c[0] for c in cols)
        if names != COLUMNS[table]:
            raise RuntimeError(f"ot_replay._fold gives {table} columns {names}, projector has {COLUMNS[table]}")
        out[table] = pa.Table.from_arrays([_array(*c) for c in cols], names=list(names))
    return out, refused
