"""Run SQL text on a warehouse connection, with errors that say what to do (what `otlake sql` runs)."""

from __future__ import annotations

import re

import duckdb

from events.errors import OtlakeError

_READ_ONLY = re.compile(r'Cannot execute statement of type "(\w+)" on database .* read-only mode')


class SqlError(OtlakeError):
    """SQL that could not run: empty, refused by DuckDB (its message), or a write on a read-only warehouse."""


def run_sql(con: duckdb.DuckDBPyConnection, query: str) -> tuple[str, duckdb.DuckDBPyRelation | None]:
    """Run every statement of query in order; (the last one's type, e.g. 'SELECT', and its result).

    The result is a relation not yet fetched (so DuckDB can render its values), None where DuckDB
    gives none. Statements before the last run to completion and their rows are dropped.
    """
    try:
        query.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate: stdin or an argument that was not UTF-8
        raise SqlError(f"the query is not UTF-8 text (at character {e.start}): save it as UTF-8") from None
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as e:
        raise SqlError(explain(e)) from None
    if not statements:
        raise SqlError('empty query: give a SQL statement, e.g. otlake sql "SELECT kind, count(*) FROM events '
                       'GROUP BY kind", or - to read it from stdin')
    try:
        for statement in statements[:-1]:
            con.execute(statement).fetchall()
        return statements[-1].type.name, con.sql(statements[-1])
    except duckdb.Error as e:
        raise SqlError(explain(e)) from None


def explain(e: duckdb.Error) -> str:
    """DuckDB's message, with what to do where we know it."""
    message = str(e)
    if m := _READ_ONLY.search(message):
        return (f"{m[1]} writes to the warehouse, which is open read-only: run it with `otlake sql --write` "
                "(in Python, Warehouse(read_only=False))")
    if isinstance(e, duckdb.CatalogException) and message.startswith("Catalog Error: Table with name"):
        return f'{message}\n(list the tables with otlake sql "SHOW TABLES")'
    return message
