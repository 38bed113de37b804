"""Staging: records in, typed rows out, one table (`staged`) for both lanes.

Fast lane: JSON lines go to DuckDB, which parses and type-checks them in bulk
with checks derived from events.schema. The checks are deliberately
conservative: a line that passes is valid; a line that does not (or that
holds anything unusual: escaped surrogates, a path that needs
normalizing, a rare kind) goes to the slow lane, where the Python validator
decides and writes the precise error. Both lanes fill the same `staged` rows.
"""

from __future__ import annotations

import hashlib

import orjson
import pyarrow as pa

from events.errors import BadEvent
from events.readers import Record
from events.schema import FIELDS
from events.validate import validate_event

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

# kinds the fast lane handles; the rest are rare and take the slow lane
FAST_KINDS = ("ot", "file", "lsp_diagnostic", "repl", "run", "shell", "editor")


def content_hash(data: bytes) -> int:
    """64-bit hash of a record's bytes; equals DuckDB's md5_number_lower(text)."""
    return int.from_bytes(hashlib.md5(data).digest()[8:16], "little")


def _type_test(expr: str, types: tuple) -> str:
    tests = []
    for t in types:
        if t is type(None):
            tests.append(f"{expr} IS NULL")
        else:
            tests.append({str: "json_type({e}) = 'VARCHAR'", int: "json_type({e}) = 'UBIGINT'",
                          bool: "json_type({e}) = 'BOOLEAN'", list: "json_type({e}) = 'ARRAY'",
                          dict: "json_type({e}) = 'OBJECT'", float: "json_type({e}) = 'DOUBLE'"}[t].format(e=expr))
    return "(" + " OR ".join(tests) + ")"


def _kind_test(kind: str) -> str:
    """A conservative SQL test that a `kind` line's fields are present and well typed."""
    parts = []
    for name, (types, required) in FIELDS[kind].items():
        expr = f"s.{name}"
        if not required and type(None) not in types:
            types = types + (type(None),)  # absent or null: the Python validator treats it as absent
        parts.append(_type_test(expr, types))
    return " AND ".join(parts)


_CLEAN_PATH = (
    "(length({p}) > 0 AND NOT contains({p}, chr(0)) AND NOT regexp_matches({p}, "
    r"'(^|/)\.{{1,2}}(/|$)|//|^/|/$|^[A-Za-z]:|^\\'))"
)

_FIELD_NAMES = sorted({"repl_id", "seq", "ts", "kind", "session_id", "user_id"} | {
    f for kind in FAST_KINDS for f in FIELDS[kind]})
_TRANSFORM = orjson.dumps({name: "JSON" for name in _FIELD_NAMES}).decode()

_KIND_TESTS = " ".join(f"WHEN '{k}' THEN {_kind_test(k)}" for k in FAST_KINDS)

# {origin} is a bind parameter: the file name for origin strings
FAST_SQL = f"""
CREATE OR REPLACE TEMP TABLE fast AS
WITH parsed AS (
    SELECT line_no, line,
           CASE WHEN json_valid(line) AND json_type(line) = 'OBJECT'
                     AND NOT regexp_matches(line, '\\\\u[dD][89a-fA-F]')
                THEN json_transform(line, '{_TRANSFORM}') END AS s
    FROM lines
), typed AS (
    SELECT line_no, line, s,
           s.kind ->> '$' AS kind, s.ts ->> '$' AS ts, s.path ->> '$' AS path, s.dest ->> '$' AS dest
    FROM parsed
)
SELECT line_no, line, s, kind, ts, path, dest,
       coalesce(s IS NOT NULL
       AND json_type(s.repl_id) = 'VARCHAR' AND length(s.repl_id ->> '$') > 0
       AND json_type(s.seq) = 'UBIGINT' AND TRY_CAST(s.seq AS UBIGINT) <= 9223372036854775807
       AND json_type(s.ts) = 'VARCHAR'
       AND regexp_full_match(ts, '\\d{{4}}-\\d\\d-\\d\\dT([01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d\\.\\d{{6}}Z')
       AND try_strptime(ts, '%Y-%m-%dT%H:%M:%S.%fZ') IS NOT NULL
       AND json_type(s.kind) = 'VARCHAR' AND kind IN {FAST_KINDS}
       AND (s.session_id IS NULL OR json_type(s.session_id) = 'VARCHAR')
       AND (s.user_id IS NULL OR (json_type(s.user_id) = 'UBIGINT' AND TRY_CAST(s.user_id AS UBIGINT) <= 9223372036854775807))
       AND coalesce(CASE kind {_KIND_TESTS} END, false)
       AND (path IS NULL OR {_CLEAN_PATH.format(p='path')})
       AND CASE kind
             WHEN 'ot' THEN TRY_CAST(s.version AS UBIGINT) <= 4294967295
                        AND (s.crc32 IS NULL OR TRY_CAST(s.crc32 AS UBIGINT) <= 4294967295)
                        AND (s.spooky_version IS NULL OR TRY_CAST(s.spooky_version AS UBIGINT) <= 9223372036854775807)
                        AND (s.nonce IS NULL OR json_type(s.nonce) = 'VARCHAR'
                             OR TRY_CAST(s.nonce AS UBIGINT) <= 9223372036854775807)
             WHEN 'file' THEN (s.op ->> '$') IN ('create', 'remove')
                        OR ((s.op ->> '$') = 'move' AND dest IS NOT NULL AND {_CLEAN_PATH.format(p='dest')})
             WHEN 'lsp_diagnostic' THEN
                  json_type(s.range, '$.start.line') = 'UBIGINT' AND json_type(s.range, '$.start.character') = 'UBIGINT'
                  AND json_type(s.range, '$.end.line') = 'UBIGINT' AND json_type(s.range, '$.end.character') = 'UBIGINT'
                  AND TRY_CAST(s.range ->> '$.start.line' AS UBIGINT) < 2147483648
                  AND TRY_CAST(s.range ->> '$.start.character' AS UBIGINT) < 2147483648
                  AND TRY_CAST(s.range ->> '$.end.line' AS UBIGINT) < 2147483648
                  AND TRY_CAST(s.range ->> '$.end.character' AS UBIGINT) < 2147483648
                  AND TRY_CAST(s.severity AS UBIGINT) BETWEEN 1 AND 4
             WHEN 'run' THEN s.exit_code IS NULL OR TRY_CAST(s.exit_code AS UBIGINT) <= 2147483647
             ELSE true END, false) AS ok
FROM typed
"""

INSERT_FAST_SQL = """
INSERT INTO staged
SELECT line_no, $origin || ':' || line_no, line, md5_number_lower(line),
       s.repl_id ->> '$', TRY_CAST(s.seq AS BIGINT), epoch_us(try_strptime(ts, '%Y-%m-%dT%H:%M:%S.%fZ')), kind,
       s.session_id ->> '$', TRY_CAST(s.user_id AS BIGINT), path, TRY_CAST(s.version AS BIGINT),
       CASE WHEN kind = 'ot' THEN s.ops::VARCHAR END, TRY_CAST(s.crc32 AS UBIGINT), s.author ->> '$',
       s.op ->> '$', dest,
       TRY_CAST(s.range ->> '$.start.line' AS INTEGER), TRY_CAST(s.range ->> '$.start.character' AS INTEGER),
       TRY_CAST(s.range ->> '$.end.line' AS INTEGER), TRY_CAST(s.range ->> '$.end.character' AS INTEGER),
       TRY_CAST(s.severity AS TINYINT), s.code ->> '$', s.message ->> '$',
       coalesce(TRY_CAST(s.has_code_action AS BOOLEAN), false),
       s.language ->> '$', TRY_CAST(s.is_private AS BOOLEAN), s.owner ->> '$', s.title ->> '$'
FROM fast WHERE ok
"""


def create_staged(con) -> None:
    """An empty `staged` temp table for one chunk."""
    con.register("staged_schema", STAGED.empty_table())
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE staged AS SELECT * FROM staged_schema")
    finally:
        con.unregister("staged_schema")


def insert_staged(con, rows: list[dict]) -> None:
    """Add slow-lane rows to `staged`."""
    if rows:
        con.register("slow_rows", pa.Table.from_pylist(rows, schema=STAGED))
        try:
            con.execute("INSERT INTO staged SELECT * FROM slow_rows")
        finally:
            con.unregister("slow_rows")


def stage_lines(con, lines: pa.Table, origin: str) -> list[int]:
    """Stage the fast lines of `lines(line_no, line)`; returns the line numbers left for the slow lane."""
    con.register("lines", lines)
    try:
        con.execute(FAST_SQL)
    finally:
        con.unregister("lines")
    con.execute(INSERT_FAST_SQL, {"origin": origin})
    slow = con.execute("SELECT line_no FROM fast WHERE NOT ok ORDER BY line_no").fetchall()
    con.execute("DROP TABLE fast")
    return [n for (n,) in slow]


def staged_row(ev: dict, line_no: int, origin: str, raw: str, h: int) -> dict:
    """The staged row of one event that passed the Python validator."""
    kind = ev["kind"]
    row = dict.fromkeys(STAGED.names)
    row.update(line_no=line_no, origin=origin, raw=raw, h=h, repl_id=ev["repl_id"], seq=ev["seq"], us=ev["_us"],
               kind=kind, session_id=ev.get("session_id"), user_id=ev.get("user_id"), path=ev.get("path"))
    if kind == "ot":
        row.update(version=ev["version"], ops=orjson.dumps(ev["ops"]).decode(), crc32=ev.get("crc32"),
                   author=ev.get("author"))
    elif kind == "file":
        row.update(op=ev["op"], dest=ev.get("dest"))
    elif kind == "lsp_diagnostic":
        r = ev["range"]
        row.update(start_line=r["start"]["line"], start_character=r["start"]["character"],
                   end_line=r["end"]["line"], end_character=r["end"]["character"], severity=ev["severity"],
                   code=ev["code"], message=ev["message"], has_code_action=bool(ev.get("has_code_action", False)))
    elif kind == "repl":
        row.update(language=ev.get("language"), is_private=ev["is_private"], owner=ev.get("owner"),
                   title=ev.get("title"))
    return row


def stage_records(records: list[tuple[int, Record]]) -> tuple[list[dict], list[tuple]]:
    """Slow lane: validate records in Python. Returns (staged rows, (error, origin, raw, h) per bad record)."""
    rows, bad = [], []
    for line_no, record in records:
        raw = record.raw if record.raw is not None else _dumps(record.event)
        h = content_hash(raw)
        text = raw.decode("utf-8", "replace")
        if record.error is not None:
            bad.append((record.error, record.origin, text, h))
            continue
        try:
            ev = validate_event(record.event, record.trusted, ops=False)
        except BadEvent as e:
            bad.append((e, record.origin, text, h))
            continue
        rows.append(staged_row(ev, line_no, record.origin, text, h))
    return rows, bad


def _dumps(event) -> bytes:
    try:
        return orjson.dumps(event)
    except TypeError:  # e.g. an integer too large for JSON's usual range
        return repr(event)[:100_000].encode("utf-8", "replace")
