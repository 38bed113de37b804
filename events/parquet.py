"""The Arrow/Parquet form of the event contract: one column per field, null where absent.

A Parquet row is the same event as a JSON line with the same fields: an absent field and a null
are alike (a Parquet row has every column), and a field that may hold any JSON value (`editor.detail`,
`ot.nonce`) is a JSON column (Arrow's `arrow.json`, Parquet's JSON logical type) whose text is read
back as the value it spells, so an object stays an object and a string a string.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import BadEvent, OtlakeError
from .readers import Record, decode_json_line, raw_of
from .validate import check_strings, located_in, storable_text

_POS = pa.struct([("line", pa.int64()), ("character", pa.int64())])

ARROW_SCHEMA = pa.schema([
    ("repl_id", pa.string()), ("seq", pa.int64()), ("ts", pa.timestamp("us", tz="UTC")),
    ("kind", pa.string()), ("session_id", pa.string()), ("user_id", pa.int64()),
    # repl
    ("language", pa.string()), ("is_private", pa.bool_()), ("owner", pa.string()), ("title", pa.string()),
    # ot / file / diagnostics / editor
    ("path", pa.string()), ("version", pa.int64()), ("spooky_version", pa.int64()),
    ("ops", pa.list_(pa.struct([("skip", pa.int64()), ("delete", pa.int64()), ("insert", pa.string())]))),
    ("crc32", pa.int64()), ("author", pa.string()), ("nonce", pa.json_()),
    ("op", pa.string()), ("dest", pa.string()),
    ("range", pa.struct([("start", _POS), ("end", _POS)])), ("severity", pa.int64()), ("code", pa.string()),
    ("message", pa.string()), ("has_code_action", pa.bool_()),
    ("action", pa.string()), ("detail", pa.json_()),
    ("packages", pa.list_(pa.string())), ("manager", pa.string()), ("status", pa.string()),
    ("command", pa.string()), ("exit_code", pa.int64()), ("output_tail", pa.string()),
    ("files", pa.map_(pa.string(), pa.string())),
])
_JSON = frozenset(f.name for f in ARROW_SCHEMA if isinstance(f.type, pa.JsonType))


def _row(ev: dict) -> dict:
    extra = set(ev) - set(ARROW_SCHEMA.names)
    if extra:  # dropping them would make the Parquet row another event than the JSON line
        raise ValueError(f"event {ev.get('repl_id')!r} seq {ev.get('seq')!r} has fields the Parquet form has no "
                         f"column for: {', '.join(sorted(map(str, extra)))} (write it as JSON Lines instead)")
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
        elif name in _JSON:
            row[name] = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        else:
            row[name] = value
    return row


def events_to_table(events: list[dict]) -> pa.Table:
    """Events (contract dicts) as an Arrow table of ARROW_SCHEMA."""
    return pa.Table.from_pylist([_row(e) for e in events], schema=ARROW_SCHEMA)


def write_parquet(events: list[dict], path: Path) -> None:
    """Write events as one Parquet file."""
    pq.write_table(events_to_table(events), path, compression="zstd")


def read_parquet(path: Path, batch_rows: int = 65_536) -> Iterator[Record]:
    """Records of a Parquet file whose columns are the contract's fields (any subset, any order).

    A row that cannot be read as an event (text that is not UTF-8, a JSON column that is not JSON, a
    value Python cannot hold) is a bad record, never an error of the whole file.
    """
    try:
        # arrow_extensions_enabled: a JSON column of another writer is read as JSON too
        pf = pq.ParquetFile(path, arrow_extensions_enabled=True)
    except (OSError, pa.ArrowException) as e:
        raise OtlakeError(f"cannot read {path} as Parquet: {e}") from e
    name = storable_text(str(path))  # origins are stored: a file name need not be UTF-8
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=batch_rows):
            batch = _microseconds(batch)
            json_columns = [f.name for f in batch.schema if isinstance(f.type, pa.JsonType)]
            for item, error in _rows(batch):
                row += 1
                origin = f"{name}:row {row}"
                if error is None:
                    item, error = _decode_json(item, json_columns)
                event = _event(item, json_columns)
                if error is not None:  # quarantine keeps the row as the event it would have been
                    yield Record(origin, None, located_in(error, event), raw_of(event))
                else:
                    yield Record(origin, event, None, None)
    except (OSError, pa.ArrowException) as e:  # damage inside the file: the rows before it were read
        raise OtlakeError(f"cannot read {path} after row {row}: {e}") from e


def _microseconds(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Nanosecond timestamps truncated to microseconds, as for RFC 3339 text (Python's datetime has no ns)."""
    for i, field in enumerate(batch.schema):
        if pa.types.is_timestamp(field.type) and field.type.unit == "ns":
            column = batch.column(i).cast(pa.timestamp("us", tz=field.type.tz), safe=False)
            batch = batch.set_column(i, field.name, column)
    return batch


def _rows(batch: pa.RecordBatch) -> Iterator[tuple[dict, BadEvent | None]]:
    """(row as Python values, None), or where a value cannot be converted, the row as far as it can be
    and the error; only a batch that fails is converted value by value."""
    try:
        yield from ((item, None) for item in batch.to_pylist())
        return
    except (ValueError, pa.ArrowException):  # UnicodeDecodeError is a ValueError
        pass
    for i in range(batch.num_rows):
        item, error = {}, None
        for field, column in zip(batch.schema, batch.columns):
            try:
                item[field.name] = column[i].as_py()
            except UnicodeDecodeError:
                text = _as_binary(column.slice(i, 1)).to_pylist()[0]
                item[field.name] = _surrogateescaped(text)
                try:
                    check_strings(item[field.name], field.name, "bytes that are not UTF-8")
                except BadEvent as e:
                    error = error or e
            except (ValueError, OverflowError, pa.ArrowException) as e:
                item[field.name] = None
                error = error or BadEvent("wrong_type", f"column {field.name} of type {field.type} cannot be "
                                                        f"read as an event field: {e}")
        yield item, error


def _as_binary(column: pa.Array) -> pa.Array:
    """The same values with every string (nested ones too) as bytes, unchecked."""
    def binary(t: pa.DataType) -> pa.DataType:
        if isinstance(t, pa.ExtensionType):
            return binary(t.storage_type)
        if pa.types.is_string(t):
            return pa.binary()
        if pa.types.is_large_string(t):
            return pa.large_binary()
        if pa.types.is_map(t):
            return pa.map_(binary(t.key_type), binary(t.item_type))
        if pa.types.is_list(t):
            return pa.list_(binary(t.value_type))
        if pa.types.is_large_list(t):
            return pa.large_list(binary(t.value_type))
        if pa.types.is_struct(t):
            return pa.struct([(f.name, binary(f.type)) for f in t])
        return t
    if isinstance(column.type, pa.ExtensionType):
        column = column.storage
    return column.cast(binary(column.type))


def _surrogateescaped(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, dict):
        return {k: _surrogateescaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_surrogateescaped(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_surrogateescaped(v) for v in value)
    return value


def _decode_json(item: dict, columns: list[str]) -> tuple[dict, BadEvent | None]:
    """The values of JSON columns, read from their text."""
    for name in columns:
        text = item.get(name)
        if text is not None:
            try:
                item[name] = decode_json_line(text.encode())
            except BadEvent as e:
                return item, BadEvent(e.kind, f"column {name}: {e.detail}")
    return item, None


def _drop_nulls(value):
    """Parquet rows carry every column of the file; the contract omits absent fields."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        if value and isinstance(value[0], tuple) and len(value[0]) == 2:  # a map column
            return {k: v for k, v in value}
        return [_drop_nulls(v) for v in value]
    return value


def _event(item: dict, json_columns: list[str]) -> dict:
    # JSON columns hold values as sent, nulls inside them included (only a column's null means absent)
    event = {k: v if k in json_columns else _drop_nulls(v) for k, v in item.items() if v is not None}
    # Parquet gives datetimes for timestamp columns; the contract carries RFC 3339 text
    ts = event.get("ts")
    if ts is not None and not isinstance(ts, str) and hasattr(ts, "isoformat"):
        if getattr(ts, "tzinfo", 1) is None:  # a timestamp column without a zone: the contract's UTC
            ts = ts.replace(tzinfo=UTC)
        event["ts"] = ts.isoformat()
    return event
