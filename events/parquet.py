"""The Arrow/Parquet form of the event contract: one column per field, null where absent."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

_POS = pa.struct([("line", pa.int64()), ("character", pa.int64())])

ARROW_SCHEMA = pa.schema([
    ("repl_id", pa.string()), ("seq", pa.int64()), ("ts", pa.timestamp("us", tz="UTC")),
    ("kind", pa.string()), ("session_id", pa.string()), ("user_id", pa.int64()),
    # repl
    ("language", pa.string()), ("is_private", pa.bool_()), ("owner", pa.string()), ("title", pa.string()),
    # ot / file / diagnostics / editor
    ("path", pa.string()), ("version", pa.int64()), ("spooky_version", pa.int64()),
    ("ops", pa.list_(pa.struct([("skip", pa.int64()), ("delete", pa.int64()), ("insert", pa.string())]))),
    ("crc32", pa.int64()), ("author", pa.string()), ("nonce", pa.int64()),
    ("op", pa.string()), ("dest", pa.string()),
    ("range", pa.struct([("start", _POS), ("end", _POS)])), ("severity", pa.int64()), ("code", pa.string()),
    ("message", pa.string()), ("has_code_action", pa.bool_()),
    ("action", pa.string()), ("detail", pa.string()),
    ("packages", pa.list_(pa.string())), ("manager", pa.string()), ("status", pa.string()),
    ("command", pa.string()), ("exit_code", pa.int64()), ("output_tail", pa.string()),
    ("files", pa.map_(pa.string(), pa.string())),
])


def _row(ev: dict) -> dict:
    row = {}
    for name in ARROW_SCHEMA.names:
        value = ev.get(name)
        if value is None:
            row[name] = None
        elif name == "files":
            row[name] = list(value.items())
        elif name == "ts":
            from .validate import parse_ts

            row[name] = parse_ts(value)
        elif name == "detail" and not isinstance(value, str):
            row[name] = json.dumps(value)
        else:
            row[name] = value
    return row


def events_to_table(events: list[dict]) -> pa.Table:
    """Events (contract dicts) as an Arrow table of ARROW_SCHEMA."""
    return pa.Table.from_pylist([_row(e) for e in events], schema=ARROW_SCHEMA)


def write_parquet(events: list[dict], path: Path) -> None:
    """Write events as one Parquet file."""
    pq.write_table(events_to_table(events), path, compression="zstd")
