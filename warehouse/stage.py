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
from events.readers import Record, decode_json_line
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


# Type tests read the JSON text json_transform gives back (minified by DuckDB), whose first character
# says the type; integers must be plain digits that fit a BIGINT, stricter than the Python validator.
_TYPE_TESTS = {
    str: "starts_with({e}::VARCHAR, '\"')",
    int: "regexp_full_match({e}::VARCHAR, '[0-9]{{1,18}}')",
    bool: "{e}::VARCHAR IN ('true', 'false')",
    list: "starts_with({e}::VARCHAR, '[')",
    dict: "starts_with({e}::VARCHAR, '{{')",
    float: "json_type({e}) = 'DOUBLE'",
}


def _type_test(expr: str, types: tuple) -> str:
    tests = [f"{expr} IS NULL" if t is type(None) else _TYPE_TESTS[t].format(e=expr) for t in types]
    return "(" + " OR ".join(tests) + ")"


def _kind_test(kind: str) -> str:
    """A conservative SQL test that a `kind` line's fields are present and well typed."""
    parts = []
    for name, (types, required) in FIELDS[kind].items():
        if not required and type(None) not in types:
            types = types + (type(None),)  # absent or null: the Python validator treats it as absent
        parts.append(_type_test(f"s.{name}", types))
    return " AND ".join(parts)


_CLEAN_PATH = (
    "(length({p}) > 0 AND NOT contains({p}, chr(0)) AND NOT regexp_matches({p}, "
    r"'(^|/)\.{{1,2}}(/|$)|//|^/|/$|^[A-Za-z]:|^\\'))"
)

_FIELD_NAMES = sorted({"repl_id", "seq", "ts", "kind", "session_id", "user_id"} | {
    f for kind in FAST_KINDS for f in FIELDS[kind]})
_TRANSFORM = orjson.dumps({name: "JSON" for name in _FIELD_NAMES}).decode()

_KIND_TESTS = " ".join(f"WHEN '{k}' THEN {_kind_test(k)}" for k in FAST_KINDS)
_KIND_NAMES = ", ".join(f"'\"{k}\"'" for k in FAST_KINDS)


def _distinct_keys(expr: str) -> str:
    # json_transform keeps a repeated key's first value, orjson its last: such objects take the slow lane
    return f"list_unique(json_keys({expr})) = len(json_keys({expr}))"


# One statement, nothing materialized between parsing and the insert; $origin is the file name.
# A line qualifies only if it is a valid JSON object ('{' first, so no whitespace to think about) with no
# escaped surrogate; CASE guards every JSON function from invalid text.
FAST_SQL = f"""
INSERT INTO staged
WITH parsed AS (
    SELECT line_no, line,
           CASE WHEN starts_with(line, '{{') AND json_valid(line) AND NOT regexp_matches(line, '\\\\u[dD][89a-fA-F]')
                THEN json_transform(line, '{_TRANSFORM}') END AS s,
           CASE WHEN starts_with(line, '{{') AND json_valid(line) THEN json_keys(line) END AS keys
    FROM lines
), typed AS (
    SELECT line_no, line, s, list_unique(keys) = len(keys) AS distinct_keys,
           CASE WHEN s.kind::VARCHAR IN ({_KIND_NAMES}) THEN trim(s.kind::VARCHAR, '"') END AS kind,
           CASE WHEN regexp_full_match(s.ts::VARCHAR,
                     '"\\d{{4}}-\\d\\d-\\d\\dT([01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d\\.\\d{{6}}Z"')
                THEN epoch_us(try_strptime(s.ts ->> '$', '%Y-%m-%dT%H:%M:%S.%fZ')) END AS us,
           s.path ->> '$' AS path, s.dest ->> '$' AS dest
    FROM parsed
)
SELECT line_no, $origin || ':' || line_no, line, md5_number_lower(line),
       s.repl_id ->> '$', TRY_CAST(s.seq::VARCHAR AS BIGINT), us, kind,
       s.session_id ->> '$', TRY_CAST(s.user_id::VARCHAR AS BIGINT), path, TRY_CAST(s.version::VARCHAR AS BIGINT),
       CASE WHEN kind = 'ot' THEN s.ops::VARCHAR END, TRY_CAST(s.crc32::VARCHAR AS UBIGINT), s.author ->> '$',
       s.op ->> '$', dest,
       TRY_CAST(s.range ->> '$.start.line' AS INTEGER), TRY_CAST(s.range ->> '$.start.character' AS INTEGER),
       TRY_CAST(s.range ->> '$.end.line' AS INTEGER), TRY_CAST(s.range ->> '$.end.character' AS INTEGER),
       TRY_CAST(s.severity::VARCHAR AS TINYINT), s.code ->> '$', s.message ->> '$',
       coalesce(s.has_code_action::VARCHAR = 'true', false),
       s.language ->> '$', s.is_private::VARCHAR = 'true', s.owner ->> '$', s.title ->> '$'
FROM typed
WHERE coalesce(
       distinct_keys AND starts_with(s.repl_id::VARCHAR, '"') AND s.repl_id::VARCHAR <> '""'
       AND regexp_full_match(s.seq::VARCHAR, '[0-9]{{1,18}}')
       AND us IS NOT NULL AND kind IS NOT NULL
       AND (s.session_id IS NULL OR starts_with(s.session_id::VARCHAR, '"'))
       AND (s.user_id IS NULL OR regexp_full_match(s.user_id::VARCHAR, '[0-9]{{1,18}}'))
       AND CASE kind {_KIND_TESTS} END
       AND (path IS NULL OR (starts_with(s.path::VARCHAR, '"') AND {_CLEAN_PATH.format(p='path')}))
       AND CASE kind
             WHEN 'ot' THEN regexp_full_match(s.version::VARCHAR, '[0-9]{{1,10}}')
                        AND s.version::VARCHAR::UBIGINT <= 4294967295
                        AND (s.crc32 IS NULL OR (regexp_full_match(s.crc32::VARCHAR, '[0-9]{{1,10}}')
                                                 AND s.crc32::VARCHAR::UBIGINT <= 4294967295))
             WHEN 'file' THEN (s.op ->> '$') IN ('create', 'remove')
                        OR ((s.op ->> '$') = 'move' AND dest IS NOT NULL AND {_CLEAN_PATH.format(p='dest')})
             WHEN 'lsp_diagnostic' THEN
                  {_distinct_keys('s.range')} AND {_distinct_keys("s.range -> '$.start'")}
                  AND {_distinct_keys("s.range -> '$.end'")}
                  AND regexp_full_match(s.range -> '$.start.line', '[0-9]{{1,9}}')
                  AND regexp_full_match(s.range -> '$.start.character', '[0-9]{{1,9}}')
                  AND regexp_full_match(s.range -> '$.end.line', '[0-9]{{1,9}}')
                  AND regexp_full_match(s.range -> '$.end.character', '[0-9]{{1,9}}')
                  AND s.severity::VARCHAR IN ('1', '2', '3', '4')
             WHEN 'run' THEN s.exit_code IS NULL OR regexp_full_match(s.exit_code::VARCHAR, '[0-9]{{1,9}}')
             ELSE true END, false)
"""


_SQL_TYPES = {pa.int64(): "BIGINT", pa.string(): "VARCHAR", pa.uint64(): "UBIGINT", pa.int32(): "INTEGER",
              pa.int8(): "TINYINT", pa.bool_(): "BOOLEAN"}
_STAGED_DDL = ("CREATE OR REPLACE TEMP TABLE staged ("
               + ", ".join(f"{f.name} {_SQL_TYPES[f.type]}" for f in STAGED) + ")")


def create_staged(con) -> None:
    """An empty `staged` temp table for one chunk.

    Plain DDL on purpose: in DuckDB 2.0 a temp table made by CREATE TABLE AS
    from an (empty) Arrow table, filled past one row group inside a
    transaction, gave wrong join results (every row unmatched).
    """
    con.execute(_STAGED_DDL)


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
        con.execute(FAST_SQL, {"origin": origin})
        slow = con.execute("SELECT line_no FROM lines ANTI JOIN staged USING (line_no) ORDER BY line_no").fetchall()
    finally:
        con.unregister("lines")
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
