"""Render results as a table, CSV or JSON (an array of row objects, one row a line).

Query results (`render_relation`, what `otlake sql` prints) are rendered by DuckDB itself, so
every DuckDB type comes out exact and as DuckDB spells it: table and CSV cells are
`CAST(value AS VARCHAR)` (a NaN double is `nan`, a BLOB `\\x00ab`, an INTERVAL `1 month 2 days`,
a timestamp `2024-03-01 12:00:00+00`, NULL is `NULL` in a table and empty in CSV), JSON values
are `to_json(value)` (numbers, DECIMAL and HUGEINT with every digit; lists and structs as arrays
and objects, a MAP as an object with text keys; other types as their text) except that NaN,
Infinity and -Infinity, which JSON has no numbers for, become the strings "NaN", "Infinity" and
"-Infinity" (what float() and DuckDB's JSON cast read back). A column name that repeats gets _1,
_2 as a JSON key (`SELECT 1 AS a, 2 AS a` gives {"a": 1, "a_1": 2}).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from datetime import date, datetime, time
from decimal import Decimal

import duckdb

from warehouse.sql import SqlError, explain

FORMATS = ("table", "csv", "json")
_NOT_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def render(columns: list[str], rows: list[tuple], fmt: str) -> str:
    """Python values (what a stage computed) in the given format."""
    if fmt == "json":
        return _json_rows(columns, [[_json(v) for v in row] for row in rows])
    return _text_rows(columns, [[None if v is None else _text(v) for v in row] for row in rows], fmt)


def render_relation(rel: duckdb.DuckDBPyRelation, fmt: str) -> tuple[str, int]:
    """A query's result in the given format, every value rendered by DuckDB; (text, rows)."""
    n = len(rel.columns)
    cast = "to_json(#{})" if fmt == "json" else "CAST(#{} AS VARCHAR)"
    try:
        rows = rel.project(", ".join(cast.format(i) for i in range(1, n + 1))).fetchall()
    except duckdb.Error as e:
        raise SqlError(explain(e)) from None
    if fmt == "json":
        return _json_rows(rel.columns, [["null" if v is None else _finite_json(v) for v in row] for row in rows]), \
            len(rows)
    return _text_rows(rel.columns, rows, fmt), len(rows)


_BARE = re.compile(r'"(?:[^"\\]|\\.)*"|(-?Infinity|NaN)')  # a JSON string, or a bare non-finite word


def _finite_json(text: str) -> str:
    """DuckDB's JSON, with its bare NaN/Infinity/-Infinity (not JSON) turned into strings; every other
    character as DuckDB wrote it (no number goes through a float)."""
    if "NaN" not in text and "Infinity" not in text:
        return text
    return _BARE.sub(lambda m: f'"{m[1]}"' if m[1] else m[0], text)


def _unique(columns: list[str]) -> list[str]:
    """Column names as JSON keys, a repeated name suffixed _1, _2 (`SELECT 1 AS a, 2 AS a`)."""
    out, seen = [], set()
    for c in map(str, columns):
        name, n = c, 0
        while name in seen:
            n += 1
            name = f"{c}_{n}"
        seen.add(name)
        out.append(name)
    return out


def _json_rows(columns: list[str], cells: list[list[str]]) -> str:
    keys = [json.dumps(c, ensure_ascii=False) for c in _unique(columns)]
    lines = ["{" + ", ".join(f"{k}: {v}" for k, v in zip(keys, row)) + "}" for row in cells]
    return "[\n" + ",\n".join(lines) + "\n]" if lines else "[]"


def _plain(value):
    if isinstance(value, float) and not math.isfinite(value):
        return _NOT_FINITE[str(value)]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _json(value) -> str:
    return json.dumps(_plain(value), ensure_ascii=False, allow_nan=False, default=str)


def _text(value) -> str:
    value = _plain(value)
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _cell(text: str | None, width: int = 60) -> str:
    if text is None:
        return "NULL"
    text = text.replace("\n", "\\n").replace("\t", "\\t")
    return text if len(text) <= width else text[: width - 1] + "…"


def _text_rows(columns: list[str], rows: list, fmt: str) -> str:
    """Rows of text cells (None for NULL) as CSV or a table."""
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(["" if v is None else v for v in row] for row in rows)
        return out.getvalue().rstrip("\n")
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line, "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |", line]
    out += ["| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |" for r in cells]
    out += [line, f"{len(rows)} row{'s' if len(rows) != 1 else ''}"]
    return "\n".join(out)
