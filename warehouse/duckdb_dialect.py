"""duckdb-engine's SQLAlchemy dialect, with schema reflection read from DuckDB's own catalog.

duckdb-engine reflects with PostgreSQL's catalog queries, through DuckDB's emulation of
pg_catalog. With SQLAlchemy 2.1 and DuckDB 2.0 those queries fail (pg_collation, REGCLASS), so
`inspect(engine).get_columns(...)`, `Table(..., autoload_with=engine)` and pandas'
`read_sql_table` failed. This subclass answers columns, keys, constraints and comments from
`duckdb_columns()`, `duckdb_constraints()`, `duckdb_tables()` and `duckdb_views()` instead;
everything else is duckdb-engine's. It is registered as `duckdb.otlake` (URL
`duckdb+otlake:///path`), the dialect `warehouse.store.sqlalchemy_engine` uses."""

from __future__ import annotations

import atexit
import re

from duckdb_engine import Dialect as DuckDBEngineDialect
from duckdb_engine.datatypes import Map, Struct
from duckdb_engine.datatypes import Union as UnionType
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine.reflection import ObjectKind, ObjectScope
from sqlalchemy.sql import text

# DuckDB's spellings that PostgreSQL's names (duckdb-engine's table) lack or read otherwise
_TYPES = {
    "double": sqltypes.Double,
    "float": sqltypes.Float,
    "blob": sqltypes.LargeBinary,
    "timestamp with time zone": lambda: sqltypes.TIMESTAMP(timezone=True),
    "time with time zone": lambda: sqltypes.TIME(timezone=True),
    "struct": Struct,
    "map": lambda: Map(sqltypes.NullType, sqltypes.NullType),
    "union": lambda: UnionType({}),
}


def _release_duckdb_engine() -> None:
    """Drop duckdb-engine's TryCast compiler at exit (it is registered when duckdb_engine is imported).

    That function lives on in SQLAlchemy's TryCast class, and its globals are duckdb_engine's module dict,
    which reaches the duckdb module's types and constants. Python clears the dicts only of modules still
    alive at shutdown; with torch loaded, SQLAlchemy's classes outlive the last collection, so DuckDB's
    nanobind module found its objects alive and printed a leak report at exit (every test process that
    imported both torch and duckdb_engine, and any process using sqlalchemy_engine beside torch).
    """
    import sys

    if "duckdb_engine" in sys.modules:
        from sqlalchemy.ext.compiler import deregister
        from sqlalchemy.sql.elements import TryCast

        deregister(TryCast)


atexit.register(_release_duckdb_engine)

_ARRAY = re.compile(r"(.*)\[\d*\]")
_DECIMAL = re.compile(r"(?:decimal|numeric)\((\d+),\s*(\d+)\)")


class OtlakeDuckDBDialect(DuckDBEngineDialect):
    """duckdb-engine, with columns reflected from duckdb_columns()."""

    supports_statement_cache = False  # as duckdb-engine; SQLAlchemy asks each subclass to say so

    def reflected_type(self, data_type: str) -> sqltypes.TypeEngine:
        """The SQLAlchemy type of a DuckDB type name (NullType for one it has no class for)."""
        name = data_type.strip().lower()
        if m := _ARRAY.fullmatch(name):
            return ARRAY(self.reflected_type(m[1]))
        if m := _DECIMAL.fullmatch(name):
            return sqltypes.Numeric(int(m[1]), int(m[2]))
        base = name.split("(", 1)[0].strip()
        make = _TYPES.get(base) or self.ischema_names.get(base)
        return make() if make is not None else sqltypes.NullType()

    def _rows(self, connection, select: str, schema, filter_names, scope, kind) -> list:
        """Rows of `select` (over `rel`: the relations asked for, `name` and `comment`), by relation name."""
        relations = []
        if ObjectKind.TABLE in kind:
            relations.append("SELECT database_name, schema_name, table_name, temporary, comment FROM duckdb_tables()")
        if ObjectKind.VIEW in kind:
            relations.append("SELECT database_name, schema_name, view_name, temporary, comment FROM duckdb_views() "
                             "WHERE NOT internal")
        if not relations:
            return []
        temporary = {ObjectScope.DEFAULT: "NOT temporary", ObjectScope.TEMPORARY: "temporary"}.get(scope, "true")
        names = "AND name IN (SELECT unnest(CAST(:names AS VARCHAR[])))" if filter_names else ""
        params = {"schema": schema, **({"names": list(filter_names)} if filter_names else {})}
        return connection.execute(text(
            f"""WITH rel AS (
                  SELECT * FROM ({' UNION ALL '.join(relations)}) r (database_name, schema_name, name, temporary, comment)
                  WHERE schema_name = coalesce(:schema, current_schema())
                    AND (temporary OR database_name = current_database()) AND {temporary} {names})
                {select}"""), params).fetchall()

    def _constraints(self, connection, constraint_type: str, schema, filter_names, scope, kind) -> dict:
        """{relation: [(name, columns, referenced table, referenced columns, expression)]}, every relation a key."""
        rows = self._rows(connection, f"""
            SELECT rel.name, c.constraint_name, c.constraint_column_names, c.referenced_table,
                   c.referenced_column_names, c.expression
            FROM rel LEFT JOIN duckdb_constraints() c
              ON c.database_name = rel.database_name AND c.schema_name = rel.schema_name
                 AND c.table_name = rel.name AND c.constraint_type = '{constraint_type}'
            ORDER BY rel.name, c.constraint_index""", schema, filter_names, scope, kind)
        out: dict[str, list] = {}
        for name, *constraint in rows:
            found = out.setdefault(name, [])
            if constraint[0] is not None:
                found.append(constraint)
        return out

    def get_multi_columns(self, connection, schema=None, filter_names=None, scope=ObjectScope.DEFAULT,
                          kind=ObjectKind.ANY, **kw):
        rows = self._rows(connection, """
            SELECT c.table_name, c.column_name, c.data_type, c.is_nullable, c.column_default, c.comment
            FROM duckdb_columns() c JOIN rel
              ON rel.database_name = c.database_name AND rel.schema_name = c.schema_name AND rel.name = c.table_name
            ORDER BY c.table_name, c.column_index""", schema, filter_names, scope, kind)
        out: dict[tuple[str | None, str], list[dict]] = {}
        for table, column, data_type, nullable, default, comment in rows:
            out.setdefault((schema, table), []).append({
                "name": column, "type": self.reflected_type(data_type), "nullable": nullable,
                "default": default, "autoincrement": False, "comment": comment})
        return out.items()

    def get_multi_pk_constraint(self, connection, schema=None, filter_names=None, scope=ObjectScope.DEFAULT,
                                kind=ObjectKind.ANY, **kw):
        found = self._constraints(connection, "PRIMARY KEY", schema, filter_names, scope, kind)
        return [((schema, table), {"name": pks[0][0], "constrained_columns": list(pks[0][1])} if pks
                 else {"name": None, "constrained_columns": []}) for table, pks in found.items()]

    def get_multi_foreign_keys(self, connection, schema=None, filter_names=None, scope=ObjectScope.DEFAULT,
                               kind=ObjectKind.ANY, **kw):
        found = self._constraints(connection, "FOREIGN KEY", schema, filter_names, scope, kind)
        return [((schema, table), [{"name": name, "constrained_columns": list(cols), "referred_schema": schema,
                                    "referred_table": ref, "referred_columns": list(ref_cols), "options": {}}
                                   for name, cols, ref, ref_cols, _ in fks]) for table, fks in found.items()]

    def get_multi_unique_constraints(self, connection, schema=None, filter_names=None, scope=ObjectScope.DEFAULT,
                                     kind=ObjectKind.ANY, **kw):
        found = self._constraints(connection, "UNIQUE", schema, filter_names, scope, kind)
        return [((schema, table), [{"name": name, "column_names": list(cols)} for name, cols, *_ in uniques])
                for table, uniques in found.items()]

    def get_multi_check_constraints(self, connection, schema=None, filter_names=None, scope=ObjectScope.DEFAULT,
                                    kind=ObjectKind.ANY, **kw):
        found = self._constraints(connection, "CHECK", schema, filter_names, scope, kind)
        return [((schema, table), [{"name": name, "sqltext": expr} for name, *_, expr in checks])
                for table, checks in found.items()]

    def get_multi_indexes(self, connection, schema=None, filter_names=None, scope=ObjectScope.DEFAULT,
                          kind=ObjectKind.ANY, **kw):
        # the warehouse declares no indexes (ingest keeps the keys, see README); duckdb_indexes() gives an
        # index's expressions only as one text, so an index added by hand is not reflected (nor warned about)
        return [((schema, table), []) for table in self._constraints(
            connection, "PRIMARY KEY", schema, filter_names, scope, kind)]

    def get_indexes(self, connection, table_name, schema=None, **kw):
        # duckdb-engine's own warns; this one answers as get_multi_indexes does
        return dict(self.get_multi_indexes(connection, schema, [table_name], **kw)).get((schema, table_name), [])

    def get_multi_table_comment(self, connection, schema=None, filter_names=None, scope=ObjectScope.DEFAULT,
                                kind=ObjectKind.ANY, **kw):
        rows = self._rows(connection, "SELECT name, comment FROM rel", schema, filter_names, scope, kind)
        return [((schema, name), {"text": comment}) for name, comment in rows]

    def get_multi_table_options(self, connection, schema=None, filter_names=None, scope=ObjectScope.DEFAULT,
                                kind=ObjectKind.ANY, **kw):
        return []


registry.register("duckdb.otlake", __name__, "OtlakeDuckDBDialect")
