"""Staging: records in, typed rows out, one Arrow table (`staged`) for both lanes.

Fast lane: JSON lines go to the compiled scanner (native/scan.c, scan_native.py),
which parses and checks them in one pass against the contract. It is deliberately
conservative: a line that passes is valid; a line that does not (or that holds
anything unusual: escaped surrogates, a path that needs normalizing, a number
orjson would read as a float) goes to the slow lane, where the Python validator
decides and writes the precise error. Both lanes fill the same `staged` rows.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from events.errors import BadEvent
from events.readers import Record, decode_json_line, event_json, raw_of
from events.validate import validate_event

from .store import ROW_GROUP_SIZE

STAGED = pa.schema([
    ("line_no", pa.int64()), ("origin", pa.string()), ("raw", pa.string()), ("h", pa.uint64()),
    ("repl_id", pa.string()), ("seq", pa.int64()), ("us", pa.int64()), ("kind", pa.string()),
    ("session_id", pa.string()), ("user_id", pa.int64()), ("path", pa.string()), ("version", pa.int64()),
    ("ops", pa.string()), ("crc32", pa.uint64()), ("author", pa.string()), ("op", pa.string()),
    ("dest", pa.string()), ("start_line", pa.int32()), ("start_character", pa.int32()), ("end_line", pa.int32()),
    ("end_character", pa.int32()), ("severity", pa.int8()), ("code", pa.string()), ("message", pa.string()),
    ("has_code_action", pa.bool_()), ("language", pa.string()), ("is_private", pa.bool_()), ("owner", pa.string()),
    ("title", pa.string()),
])


# kinds the compiled fast lane takes (every kind of the contract; others are unknown kinds: slow lane)
FAST_KINDS = ("ot", "file", "lsp_diagnostic", "repl", "run", "shell", "editor", "snapshot", "package_install")


def content_hash(data: bytes) -> int:
    """64-bit hash of a record's bytes; equals DuckDB's md5_number_lower(text)."""
    return int.from_bytes(hashlib.md5(data).digest()[8:16], "little")


def scan_rows(lines: pa.Table, origin: str) -> tuple[pa.Table, list[int]]:
    """Fast lane: staged rows (STAGED) of the lines of `lines(line_no, line)` the compiled scanner accepts,
    and the line numbers it leaves for the slow lane."""
    from .scan_native import scan_lines

    rows, slow = scan_lines(lines, batch_lines=ROW_GROUP_SIZE)
    origins = pc.binary_join_element_wise(origin, pc.cast(rows.column("line_no"), pa.string()), ":")
    return rows.add_column(1, "origin", origins), slow


class Staged:
    """The staged rows of one chunk, both lanes: Arrow tables that DuckDB reads as `staged`.

    Registered, not copied: a temp table would copy every raw line once more.
    Restaged rows (classify.rebuild_late_repls) are added later and registered again.
    """

    def __init__(self, con) -> None:
        self.con = con
        self.parts: list[pa.Table] = []
        self.register()

    def add_table(self, rows: pa.Table | None) -> None:
        """Stage rows of STAGED's schema (e.g. scan_rows' table)."""
        if rows is not None and rows.num_rows:
            self.parts.append(rows)

    def add_rows(self, rows: list[dict]) -> None:
        """Stage slow-lane rows (dicts of STAGED's columns)."""
        if rows:
            self.parts.append(pa.Table.from_pylist(rows, schema=STAGED))

    def register(self) -> None:
        """(Re-)register `staged` with everything added so far, each row numbered by its position (`rix`)."""
        table = pa.concat_tables(self.parts) if self.parts else STAGED.empty_table()
        table = table.append_column("rix", pa.array(np.arange(table.num_rows, dtype=np.int64)))
        # DuckDB scans an Arrow table in parallel by record batch, and inserts whole row groups straight into
        # the file: batches of up to a row group, sliced, not copied (the scanner's parts are ~n/8 rows; an
        # insert from 4K-row batches took 1.6x as long)
        self.table = pa.Table.from_batches(table.to_batches(max_chunksize=ROW_GROUP_SIZE), table.schema)
        self.con.register("staged", self.table)

    def close(self) -> None:
        self.con.unregister("staged")


def staged_row(ev: dict, line_no: int, origin: str, raw: str, h: int) -> dict:
    """The staged row of one event that passed the Python validator."""
    kind = ev["kind"]
    row = dict.fromkeys(STAGED.names)
    row.update(line_no=line_no, origin=origin, raw=raw, h=h, repl_id=ev["repl_id"], seq=ev["seq"], us=ev["_us"],
               kind=kind, session_id=ev.get("session_id"), user_id=ev.get("user_id"), path=ev.get("path"))
    if kind == "ot":
        row.update(version=ev["version"], ops=_ops_json(ev["ops"]), crc32=ev.get("crc32"),
                   author=ev.get("author"))
    elif kind == "file":
        row.update(op=ev["op"], dest=ev.get("dest"))
    elif kind == "lsp_diagnostic":
        r = ev["range"]
        row.update(start_line=r["start"]["line"], start_character=r["start"]["character"],
                   end_line=r["end"]["line"], end_character=r["end"]["character"], severity=ev["severity"],
                   code=ev.get("code"), message=ev["message"], has_code_action=bool(ev.get("has_code_action", False)))
    elif kind == "repl":
        row.update(language=ev.get("language"), is_private=ev["is_private"], owner=ev.get("owner"),
                   title=ev.get("title"))
    return row


def _ops_json(ops: object) -> str:
    """The op list as JSON text for the fold, which checks it (a bad op list breaks its file there)."""
    try:
        text = orjson.dumps(ops)
    except orjson.JSONEncodeError:  # nested past orjson's 255 levels, or an integer past 64 bits
        try:
            return json.dumps(ops)  # the fold refuses both, as it would the same text from the fast lane
        except RecursionError:
            raise BadEvent("unknown_op", "ops are nested too deep to be an op list (each op is one object with "
                                         "skip, delete or insert)") from None
    if b"null" in text and type(ops) is list:  # rare: orjson writes NaN and infinities as null
        # keep them readable: the fold would report a count of None
        ops = [{k: repr(v) if type(v) is float and not math.isfinite(v) else v for k, v in op.items()}
               if type(op) is dict else op for op in ops]
        text = orjson.dumps(ops)
    return text.decode()


def stage_records(records: list[tuple[int, Record]]) -> tuple[list[dict], list[tuple]]:
    """Slow lane: validate records in Python. Returns (staged rows, (error, origin, raw, h) per bad record)."""
    rows, bad = [], []
    for line_no, record in records:
        error = record.error
        if record.raw is not None:
            raw = record.raw
        else:  # Parquet rows and Python dicts: the stored record is their JSON text
            try:
                raw = event_json(record.event)
            except BadEvent as e:
                raw, error = raw_of(record.event), error or e
        h = content_hash(raw)
        text = raw.decode("utf-8", "backslashreplace")  # valid records are UTF-8; a bad one keeps its bytes readable
        if record.error is not None:
            bad.append((record.error, record.origin, text, h))
            continue
        try:
            ev = validate_event(record.event, record.trusted, ops=False)
        except BadEvent as e:
            bad.append((e, record.origin, text, h))
            continue
        try:
            if error is not None:  # valid, but with no JSON text to store
                raise error
            rows.append(staged_row(ev, line_no, record.origin, text, h))
        except BadEvent as e:
            bad.append((e.located(repl_id=ev["repl_id"], seq=ev["seq"], path=ev.get("path")), record.origin, text, h))
    return rows, bad


def decode_record(line: bytes, origin: str) -> Record:
    try:
        return Record(origin, decode_json_line(line), None, line)
    except BadEvent as e:
        return Record(origin, None, e, line)


def quarantine_row(error: BadEvent, origin: str | None, raw: str, h: int, us: int | None,
                   restaged: bool = False) -> tuple:
    """A quarantine row (and whether it is a restaged event); the key makes a re-ingest idempotent.

    us is set only for events the fold refused: they passed validation, are kept losslessly in `raw`,
    and are replayed again when their repl is rebuilt.
    """
    if error.repl_id is not None and error.seq is not None:
        key = f"{error.repl_id}/{error.seq}/{h:016x}"
    else:
        key = f"line/{h:016x}"
    return ("ingest", key, error.repl_id, error.seq, error.path, error.version, origin, error.kind, str(error), raw,
            us, restaged)
