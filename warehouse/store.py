"""The embedded warehouse: one DuckDB file, its schema, and replay as SQL functions."""

from __future__ import annotations

import atexit
import itertools
import os
import threading
import weakref
from pathlib import Path
from typing import Self

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from events.errors import OtlakeError

from .dataset_schema import DATASET_TABLES
from .schema import SCHEMA_VERSION, TABLES, VIEWS
from .timetravel import TimeTravel

DB_NAME = "otlake.duckdb"


def data_home(path: str | os.PathLike | None = None) -> Path:
    """The warehouse folder: the argument, else $OTLAKE_HOME, else ./otlake-data."""
    return Path(path or os.environ.get("OTLAKE_HOME") or "otlake-data")


ROW_GROUP_SIZE = 16_384  # rows; DuckDB's default is 122,880


def _open_for_writing(path: Path) -> duckdb.DuckDBPyConnection:
    """A connection whose only database is the warehouse file, attached with our row group size.

    An insert of whole row groups is written straight to the file, so its commit neither logs it in the
    WAL nor writes it again at the checkpoint; with 16K-row groups most of an ingest chunk goes that way
    (ingest's write step took half the time, see BENCHMARKS.md). The size is an ATTACH option, not a
    property of the file, hence attach, then make it the default catalog (cursors included) by
    detaching the in-memory database.
    """
    con = duckdb.connect()
    try:
        quoted = str(path).replace("'", "''")
        con.execute(f"ATTACH '{quoted}' AS otlake (ROW_GROUP_SIZE {ROW_GROUP_SIZE})")
        con.execute("USE otlake")
        con.execute("DETACH memory")
        # where DuckDB spills: beside the file, as when the file is opened directly (not the working folder)
        con.execute(f"SET temp_directory = '{quoted}.tmp'")
    except BaseException:
        con.close()
        raise
    return con


class WarehouseError(OtlakeError):
    """The warehouse cannot be opened or used."""


class Warehouse:
    """An open warehouse. Use as a context manager; `con` is the DuckDB connection."""

    def __init__(self, home: str | os.PathLike | None = None, read_only: bool = False) -> None:
        self.home = data_home(home)
        self.path = self.home / DB_NAME
        self.read_only = read_only
        if read_only and not self.path.exists():
            raise WarehouseError(f"no warehouse at {self.path}: run `otlake ingest FILE` first (or set OTLAKE_HOME)")
        if not read_only:
            self.home.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(self.path), read_only=True) if read_only else _open_for_writing(self.path)
        except duckdb.Error as e:
            raise WarehouseError(f"cannot open {self.path}: {e}") from e
        self._udf_cursor: _CursorPool | None = None
        # a notebook may never close it; DuckDB 2.0 prints leak warnings for what is open at exit
        atexit.register(self.close)
        self.con.execute("SET TimeZone = 'UTC'")
        if not read_only:
            self._create_schema()
        self._udf_cursor = register_functions(self.con)

    def _create_schema(self) -> None:
        for ddl in (*TABLES.values(), *DATASET_TABLES.values()):
            self.con.execute(ddl)
        for ddl in VIEWS.values():
            self.con.execute(ddl)
        self.con.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
        )

    def travel(self) -> TimeTravel:
        """A TimeTravel reader on its own cursor (close it with `.cur.close()`)."""
        return TimeTravel(self.con.cursor())

    def close(self) -> None:
        """Close the cursors and the connection (safe to call twice)."""
        atexit.unregister(self.close)
        if self._udf_cursor is not None:
            self._udf_cursor.close()
            self._udf_cursor = None
        self.con.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def register_functions(con) -> _CursorPool:
    """file_at(repl_id, path, ts) and files_at(repl_id, ts) on a DuckDB connection.

    Returns the pool of cursors the functions read through: the caller keeps it as long as the
    connection (the function holds it weakly, so that DuckDB, which holds the function, does not
    keep the connection alive in a cycle the garbage collector cannot see).
    """
    # DuckDB may call the UDF from several worker threads at once, and a cursor
    # serves one call at a time: each concurrent call borrows its own cursor.
    pool = _CursorPool(con)
    pool_ref = weakref.ref(pool)

    def file_at(repl_ids: pa.Array, paths: pa.Array, ts: pa.Array) -> pa.Array:
        lender = pool_ref()
        if lender is None:
            raise WarehouseError("file_at: the warehouse connection it was registered on is closed")
        us = pc.cast(ts, pa.int64()).to_pylist()
        rids, ps = repl_ids.to_pylist(), paths.to_pylist()
        live = [i for i in range(len(us)) if rids[i] is not None and ps[i] is not None and us[i] is not None]
        out: list[str | None] = [None] * len(us)
        cur = lender.take()
        try:
            texts = TimeTravel(cur).file_at([rids[i] for i in live], [ps[i] for i in live],
                                            [us[i] for i in live])
        finally:
            lender.give(cur)
        for i, text in zip(live, texts):
            out[i] = text
        return pa.array(out, pa.string())

    # A Python function lands in the catalog of the database, which every connection to the file in this
    # process shares, cursors included. The first connection registers `file_at` there (its cursors call it
    # too); a second one (inspecting or reading with pandas while a connection is held, two read-only
    # Warehouses) cannot register that name again and must not call the first one's (it reads through the
    # first one's cursors, and DuckDB crashes once the connection that registered a function is gone): it
    # registers a name of its own and reaches it through `file_at`, a temporary macro, its own alone.
    # Closing removes the function (_CursorPool.close), so the name never outlives its connection.
    signature = (["VARCHAR", "VARCHAR", "TIMESTAMPTZ"], "VARCHAR")
    try:
        con.create_function("file_at", file_at, *signature, type="arrow", null_handling="special",
                            side_effects=False)
        pool.function = "file_at"
    except duckdb.CatalogException:
        name = f"_otlake_file_at_{os.getpid()}_{next(_FUNCTION_IDS)}"
        con.create_function(name, file_at, *signature, type="arrow", null_handling="special", side_effects=False)
        pool.function = name
        con.execute(f"CREATE OR REPLACE TEMP MACRO file_at(r, p, t) AS {name}(r, p, t)")
    con.execute(
        """CREATE OR REPLACE TEMP MACRO files_at(r, t) AS TABLE
           SELECT path, file_at(repl_id, path, t) AS content FROM file_paths
           WHERE repl_id = r AND from_ts <= t AND (to_ts IS NULL OR to_ts > t)
           ORDER BY path"""
    )
    return pool


_FUNCTION_IDS = itertools.count()


class _CursorPool:
    """Cursors of one connection, lent one per concurrent UDF call; `function`: the name file_at calls."""

    def __init__(self, con) -> None:
        self.con = con
        self.function: str | None = None
        self.free: list = []
        self.all: list = []
        self.lock = threading.Lock()

    def take(self):
        with self.lock:
            if self.free:
                return self.free.pop()
            cur = self.con.cursor()
            self.all.append(cur)
            return cur

    def give(self, cur) -> None:
        with self.lock:
            self.free.append(cur)

    def close(self) -> None:
        """Close the cursors and take the function out of the database's catalog."""
        for cur in self.all:
            cur.close()
        self.all, self.free = [], []
        if self.function is not None:
            try:
                self.con.remove_function(self.function)
            except duckdb.Error:
                pass  # the connection is closed already: its database went with it, or keeps a dead name
            self.function = None


def sqlalchemy_engine(home: str | os.PathLike | None = None, read_only: bool = True):
    """A SQLAlchemy engine on the warehouse (duckdb-engine), with file_at/files_at registered.

    Schema reflection works (`inspect(engine).get_columns("events")`, pandas' `read_sql_table`), and
    the engine needs no `dispose()`: nothing is left to warn about at exit.
    """
    from sqlalchemy import create_engine, event

    from . import duckdb_dialect  # noqa: F401  (registers the duckdb.otlake dialect)

    path = data_home(home) / DB_NAME
    if not path.exists():
        raise WarehouseError(f"no warehouse at {path}: run `otlake ingest FILE` first (or set OTLAKE_HOME)")
    engine = create_engine(f"duckdb+otlake:///{path}", connect_args={"read_only": read_only})

    @event.listens_for(engine, "connect")
    def _register(dbapi_connection, _record) -> None:
        # duckdb-engine wraps the DuckDB connection; the pool lives as long as the wrapper
        raw = dbapi_connection._ConnectionWrapper__c
        raw.execute("SET TimeZone = 'UTC'")
        dbapi_connection.otlake_functions = register_functions(raw)

    @event.listens_for(engine, "close")
    def _release(dbapi_connection, _record) -> None:
        # before the pool closes the connection: its function leaves the database's catalog with it
        functions = getattr(dbapi_connection, "otlake_functions", None)
        if functions is not None:
            functions.close()

    return engine
