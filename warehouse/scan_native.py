"""The fast lane of ingest in C (native/scan.c): JSON lines to typed `staged` rows in one pass.

It replaced a DuckDB SQL fast lane (json_transform and checks, about 10x slower). Lines it accepts
are valid events with the values the Python lane (decode_json_line + validate_event + staged_row)
gives them; every other line is left to the slow lane, which decides and writes the precise error.
See native/scan.c for the rules.
"""

from __future__ import annotations

import pyarrow as pa

from . import _scan
from .stage import STAGED

SCHEMA = pa.schema([f for f in STAGED if f.name != "origin"])  # the caller adds origin
THREADS = 2

if tuple(SCHEMA.names) != _scan.COLUMNS:
    raise ImportError(f"warehouse._scan is out of date: its columns {_scan.COLUMNS} are not {SCHEMA.names}")


def scan_lines(lines: pa.Table, threads: int = THREADS, batch_lines: int = 0) -> tuple[pa.Table, list[int]]:
    """Staged rows (SCHEMA, input order) of the accepted lines of `lines(line_no int64, line large_string)`,
    and the line numbers left for the slow lane, sorted. batch_lines > 0: a record batch per that many
    lines (ingest asks for a row group's worth), else a few per thread."""
    chunks = []
    for batch in lines.select(["line_no", "line"]).to_batches():
        nos, text = batch.column(0), batch.column(1)
        if not len(batch):
            continue
        if nos.null_count:
            raise ValueError("line_no must not be null")
        nos = nos.cast(pa.int64())
        text = text.cast(pa.large_string())  # no-op for the type ingest gives
        validity, offsets, data = text.buffers()
        chunks.append((len(text), text.offset, validity if text.null_count else None, offsets,
                       data if data is not None else b"", nos.offset, nos.buffers()[1]))
    parts, slow = _scan.scan(chunks, threads, batch_lines)
    batches = [  # one per part the C side scanned; its buffers are owned by _scan.Buffer objects
        pa.RecordBatch.from_arrays(
            [pa.Array.from_buffers(field.type, rows, [None if b is None else pa.py_buffer(b) for b in buffers])
             for field, buffers in zip(SCHEMA, columns)], schema=SCHEMA)
        for rows, columns in parts if rows]
    return pa.Table.from_batches(batches, schema=SCHEMA), sorted(memoryview(slow).cast("q").tolist())
