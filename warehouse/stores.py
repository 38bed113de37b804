"""Where tables live: the Store contract (DESIGN.md, "Stages, stores and engines") and its backends.

A store reads a table as Arrow record batches (`read`) and commits one run's output in one step
(`commit`): rows upserted and rows deleted by each table's key (TABLE_KEYS, DESIGN.md's keys), so a
commit repeated after a crash ends with the same tables. Quarantine rows are upserts into `quarantine`
like any other; `runs()` is the run log (one row per stage run: parameters, status, reconciliation,
timings). Backends: `DuckDBStore` (the warehouse file; SQL, `file_at` and SQLAlchemy keep working on it)
and `MemoryStore` (Arrow tables in memory, for fast tests). tests/store_contract.py is the one test case
every backend passes; the Delta lake backend will pass it unchanged.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from events.stages import (
    RUN_STATUSES,
    RunLog,
    Store,
    StoreError,
    Where,
    new_run_id,
    read_table,
    stage_of,
)
from ot_replay.timeline import TABLES as TIMELINE_TABLES
from ot_replay.timeline import Timeline

from .dataset_schema import DATASET_TABLES
from .eval_schema import EVAL_TABLES
from .schema import KEYS, TABLES

# the contract's types live in events.stages (synth/, train/ and eval/ read stores through them); named here too
__all__ = ["RUN_STATUSES", "TABLE_KEYS", "DuckDBRunLog", "DuckDBStore", "MemoryRunLog", "MemoryStore", "RunLog", "Store",
           "StoreError", "Where", "new_run_id", "read_table", "read_timeline", "stage_of"]

# the key of every table a stage writes (the event tables' from warehouse.schema): a commit upserts and
# deletes by it
TABLE_KEYS: dict[str, tuple[str, ...]] = {
    **KEYS,
    "meta": ("key",),
    "repls": ("repl_id",),
    "pairs": ("pair_id",),
    "pair_checks": ("repl_id", "seq"),
    "diffs": ("pair_id", "source", "model"),
    "datasets": ("dataset_id",),
    "dataset_examples": ("dataset_id", "pair_id"),
    "quarantine": ("source", "key"),
    "runs": ("run_id",),
    "eval_runs": ("run_id",),
    "eval_items": ("run_id", "item_id", "sample"),
    "eval_sets": ("name",),
}
def read_timeline(store: Store, repl_id: str) -> Timeline:
    """The timeline of one repl (ot_replay.timeline): its derived rows read from the store."""
    return Timeline.from_tables(repl_id, *(read_table(store, t, {"repl_id": repl_id}) for t in TIMELINE_TABLES))


def _process() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _dead(timings: Mapping[str, Any] | None) -> bool:
    """Whether a running run's process, on this host, is gone (a run started elsewhere is never judged)."""
    if not timings or timings.get("host") != socket.gethostname() or not isinstance(timings.get("pid"), int):
        return False
    try:
        os.kill(timings["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process: alive
        return False
    return False


def _key_of(table: str) -> tuple[str, ...]:
    try:
        return TABLE_KEYS[table]
    except KeyError:
        raise StoreError(f"table {table!r} has no key: commit writes only {', '.join(sorted(TABLE_KEYS))}") from None


def _check_keys(table: str, rows: pa.Table, what: str) -> tuple[str, ...]:
    key = _key_of(table)
    missing = [c for c in key if c not in rows.column_names]
    if missing:
        raise StoreError(f"{what} of {table!r} lack key column(s) {', '.join(missing)} (key: {', '.join(key)})")
    for column in key:
        nulls = rows.column(column).null_count
        if nulls:
            raise StoreError(f"{what} of {table!r}: {nulls} row(s) with a null {column!r}, part of the key")
    return key


def _last_per_key(rows: pa.Table, key: tuple[str, ...]) -> pa.Table:
    """One row per key: the last one given wins, as if the rows were upserted one by one."""
    if rows.num_rows < 2:
        return rows
    index = pa.array(range(rows.num_rows), pa.int64())
    last = rows.select(list(key)).append_column("__n", index).group_by(list(key)).aggregate([("__n", "max")])
    chosen = last.column("__n_max").combine_chunks()
    return rows.take(chosen.take(pc.sort_indices(chosen)))


def warehouse_schemas() -> dict[str, pa.Schema]:
    """The Arrow schema of every warehouse table, from its DuckDB DDL (what MemoryStore starts with)."""
    import duckdb

    with duckdb.connect() as con:
        for ddl in (*TABLES.values(), *DATASET_TABLES.values(), *EVAL_TABLES.values()):
            con.execute(ddl)
        names = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables "
                                           "WHERE table_type = 'BASE TABLE' ORDER BY 1").fetchall()]
        return {name: con.sql(f"SELECT * FROM {_quote(name)} LIMIT 0").to_arrow_table().schema
                for name in names}


# ---- DuckDB ------------------------------------------------------------------------------------------------

class DuckDBRunLog:
    """The `runs` table of a DuckDB warehouse."""

    def __init__(self, con) -> None:
        self._con = con

    def start(self, stage: str, params: Mapping[str, Any]) -> str:
        run_id = new_run_id(stage)
        self._con.execute("INSERT INTO runs (run_id, stage, status, started_at, params, timings) "
                          "VALUES (?, ?, 'running', now(), ?, ?)",
                          [run_id, stage, orjson.dumps(params).decode(), orjson.dumps(_process()).decode()])
        return run_id

    def interrupt_dead(self) -> list[str]:
        """Mark `interrupted` every running run whose process on this host is gone; their ids."""
        rows = _fetch(self._con, "SELECT run_id, timings FROM runs WHERE status = 'running'", [])
        dead = [run_id for run_id, timings in rows if _dead(_json(timings))]
        for run_id in dead:
            self._con.execute("UPDATE runs SET status = 'interrupted', finished_at = now() WHERE run_id = ?",
                              [run_id])
        return dead

    def finish(self, run_id: str, status: str, reconciliation: Mapping[str, Any],
               timings: Mapping[str, Any]) -> None:
        if status not in RUN_STATUSES:
            raise StoreError(f"run {run_id}: status {status!r} is not one of {', '.join(RUN_STATUSES)}")
        self._con.execute("UPDATE runs SET status = ?, finished_at = now(), reconciliation = ?, timings = ? "
                          "WHERE run_id = ?", [status, orjson.dumps(reconciliation).decode(),
                                               orjson.dumps(timings).decode(), run_id])

    def get(self, run_id: str) -> dict | None:
        rows = _fetch(self._con, "SELECT run_id, stage, status, params, reconciliation, timings FROM runs "
                                 "WHERE run_id = ?", [run_id])
        if not rows:
            return None
        run_id, stage, status, params, reconciliation, timings = rows[0]
        return {"run_id": run_id, "stage": stage, "status": status, "params": _json(params),
                "reconciliation": _json(reconciliation), "timings": _json(timings)}


def _json(text):
    return None if text is None else orjson.loads(text)


def _fetch(con, sql: str, args: list) -> list[tuple]:
    """Rows of one query on a cursor of its own (closing `con.execute(...)`'s result would close `con`)."""
    cur = con.cursor()
    try:
        return cur.execute(sql, args).fetchall()
    finally:
        cur.close()


class DuckDBStore:
    """The warehouse's DuckDB file as a Store; `con` is the warehouse's connection (warehouse.store.Warehouse)."""

    def __init__(self, con) -> None:
        self._con = con
        self._names = itertools.count()
        self._known: dict[str, dict[str, str]] = {}  # table -> its columns, looked up once (tables never shrink)

    @property
    def con(self):
        """The warehouse's connection, for what runs as SQL inside it (ingest's merge, time travel)."""
        return self._con

    def _columns(self, table: str) -> dict[str, str]:
        if table in self._known:
            return self._known[table]
        found = dict(_fetch(self._con, "SELECT column_name, data_type FROM information_schema.columns "
                                       "WHERE table_name = ? AND table_schema = 'main' ORDER BY ordinal_position",
                            [table]))
        if not found:
            raise StoreError(f"no table {table!r} in the warehouse")
        self._known[table] = found
        return found

    def schema(self, table: str, columns: Sequence[str] | None = None) -> pa.Schema:
        cur = self._con.cursor()
        try:
            return cur.sql(f"SELECT {self._select(table, columns)} FROM {_quote(table)} LIMIT 0").to_arrow_table().schema
        finally:
            cur.close()

    def _select(self, table: str, columns: Sequence[str] | None) -> str:
        known = self._columns(table)
        if columns is None:
            return ", ".join(_quote(c) for c in known)
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise StoreError(f"table {table!r} has no column(s) {', '.join(unknown)}")
        return ", ".join(_quote(c) for c in columns)

    def read(self, table: str, where: Where | None = None,
             columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        select = self._select(table, columns)
        known = self._columns(table)
        clauses, args = [], []
        for column, value in (where or {}).items():
            if column not in known:
                raise StoreError(f"table {table!r} has no column {column!r} to filter on")
            if isinstance(value, list | tuple | set | frozenset):
                clauses.append(f"{_quote(column)} IN (SELECT unnest(?))")
                args.append(list(value))
            elif value is None:
                clauses.append(f"{_quote(column)} IS NULL")
            else:
                clauses.append(f"{_quote(column)} = ?")
                args.append(value)
        sql = f"SELECT {select} FROM {_quote(table)}" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        order = [c for c in TABLE_KEYS.get(table, ()) if columns is None or c in columns]
        if order:
            sql += " ORDER BY " + ", ".join(_quote(c) for c in order)
        return self._batches(sql, args)

    def _batches(self, sql: str, args: list) -> Iterator[pa.RecordBatch]:
        cur = self._con.cursor()
        try:
            reader = cur.sql(sql, params=args).to_arrow_reader(65_536)
            yield from reader
        finally:
            cur.close()

    def _plan(self, run_id: str, upserts: Mapping[str, pa.Table], deletes: Mapping[str, pa.Table] | None) -> list:
        plan = []
        for table, rows in (deletes or {}).items():
            plan.append((table, _check_keys(table, rows, "deletes"), rows, False))
        for table, rows in upserts.items():
            key = _check_keys(table, rows, "upserts")
            plan.append((table, key, _last_per_key(rows, key), True))
        for table, _, rows, _ in plan:
            known = self._columns(table)
            unknown = [c for c in rows.column_names if c not in known]
            if unknown:
                raise StoreError(f"run {run_id}: table {table!r} has no column(s) {', '.join(unknown)}")
        return plan

    def commit(self, run_id: str, upserts: Mapping[str, pa.Table],
               deletes: Mapping[str, pa.Table] | None = None) -> None:
        plan = self._plan(run_id, upserts, deletes)
        if not plan:
            return
        cur = self._con.cursor()
        try:
            cur.execute("BEGIN")
            try:
                self._write(cur, plan)
                cur.execute("COMMIT")
            except BaseException as e:
                cur.execute("ROLLBACK")
                if isinstance(e, Exception) and not isinstance(e, StoreError):
                    raise StoreError(f"run {run_id}: the commit was rolled back: {e}") from e
                raise
        finally:
            cur.close()

    def commit_in(self, con, run_id: str, upserts: Mapping[str, pa.Table]) -> None:
        """commit()'s upserts on `con`, inside a transaction the caller holds and ends (a stage's own merge:
        ingest writes its quarantine rows this way, in the chunk's transaction)."""
        self._write(con, self._plan(run_id, upserts, None))

    def _write(self, cur, plan: list) -> None:
        for table, key, rows, insert in plan:
            name = f"_otlake_commit_{next(self._names)}"
            cur.register(name, rows)
            try:
                match = " AND ".join(f"t.{_quote(c)} IS NOT DISTINCT FROM r.{_quote(c)}" for c in key)
                cur.execute(f"DELETE FROM {_quote(table)} t WHERE EXISTS "
                            f"(SELECT 1 FROM {name} r WHERE {match})")
                if insert and rows.num_rows:
                    cur.execute(f"INSERT INTO {_quote(table)} BY NAME SELECT * FROM {name}")
            finally:
                cur.unregister(name)

    def runs(self) -> DuckDBRunLog:
        return DuckDBRunLog(self._con)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ---- in memory ---------------------------------------------------------------------------------------------

@dataclass
class MemoryRunLog:
    """Runs as dicts in memory."""

    rows: dict[str, dict] = field(default_factory=dict)

    def start(self, stage: str, params: Mapping[str, Any]) -> str:
        run_id = new_run_id(stage)
        self.rows[run_id] = {"run_id": run_id, "stage": stage, "status": "running",
                             "params": orjson.loads(orjson.dumps(params)), "reconciliation": None,
                             "timings": _process(), "started_at": time.time()}
        return run_id

    def interrupt_dead(self) -> list[str]:
        dead = [r["run_id"] for r in self.rows.values() if r["status"] == "running" and _dead(r["timings"])]
        for run_id in dead:
            self.rows[run_id]["status"] = "interrupted"
        return dead

    def finish(self, run_id: str, status: str, reconciliation: Mapping[str, Any],
               timings: Mapping[str, Any]) -> None:
        if status not in RUN_STATUSES:
            raise StoreError(f"run {run_id}: status {status!r} is not one of {', '.join(RUN_STATUSES)}")
        if run_id not in self.rows:
            return  # as an UPDATE of no row
        self.rows[run_id].update(status=status, reconciliation=orjson.loads(orjson.dumps(reconciliation)),
                                 timings=orjson.loads(orjson.dumps(timings)))

    def get(self, run_id: str) -> dict | None:
        row = self.rows.get(run_id)
        return None if row is None else {k: v for k, v in row.items() if k != "started_at"}


class MemoryStore:
    """Tables as Arrow in memory, with the warehouse's schemas (or `schemas`; a table not among them takes the
    schema of its first commit)."""

    def __init__(self, schemas: Mapping[str, pa.Schema] | None = None) -> None:
        schemas = warehouse_schemas() if schemas is None else schemas
        self._tables: dict[str, pa.Table] = {name: s.empty_table() for name, s in schemas.items()}
        self._runs = MemoryRunLog()

    def schema(self, table: str, columns: Sequence[str] | None = None) -> pa.Schema:
        schema = self._table(table).schema
        if columns is None:
            return schema
        return pa.schema([schema.field(c) for c in self._checked(table, schema, columns)])

    def _table(self, table: str) -> pa.Table:
        try:
            return self._tables[table]
        except KeyError:
            raise StoreError(f"no table {table!r} in the store") from None

    @staticmethod
    def _checked(table: str, schema: pa.Schema, columns: Sequence[str]) -> list[str]:
        unknown = [c for c in columns if c not in schema.names]
        if unknown:
            raise StoreError(f"table {table!r} has no column(s) {', '.join(unknown)}")
        return list(columns)

    def read(self, table: str, where: Where | None = None,
             columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        rows = self._table(table)
        mask = None
        for column, value in (where or {}).items():
            if column not in rows.column_names:
                raise StoreError(f"table {table!r} has no column {column!r} to filter on")
            if isinstance(value, list | tuple | set | frozenset):
                cond = pc.is_in(rows.column(column), pa.array(list(value), rows.schema.field(column).type))
            elif value is None:
                cond = pc.is_null(rows.column(column))
            else:
                cond = pc.equal(rows.column(column), pa.scalar(value, rows.schema.field(column).type))
            cond = pc.fill_null(cond, False)
            mask = cond if mask is None else pc.and_(mask, cond)
        if mask is not None:
            rows = rows.filter(mask)
        key = [c for c in TABLE_KEYS.get(table, ()) if c in rows.column_names]
        if key and rows.num_rows:
            rows = rows.sort_by([(c, "ascending") for c in key])
        if columns is not None:
            rows = rows.select(self._checked(table, rows.schema, columns))
        return iter(rows.to_batches())

    def commit(self, run_id: str, upserts: Mapping[str, pa.Table],
               deletes: Mapping[str, pa.Table] | None = None) -> None:
        staged = dict(self._tables)  # every table is computed first: a failure changes nothing
        for table, rows in (deletes or {}).items():
            key = _check_keys(table, rows, "deletes")
            staged[table] = _without(self._table(table), rows, key)
        for table, rows in upserts.items():
            key = _check_keys(table, rows, "upserts")
            rows = _last_per_key(rows, key)
            current = staged.get(table)
            if current is None:
                staged[table] = rows
                continue
            unknown = [c for c in rows.column_names if c not in current.column_names]
            if unknown:
                raise StoreError(f"run {run_id}: table {table!r} has no column(s) {', '.join(unknown)}")
            try:
                aligned = pa.table({f.name: (rows.column(f.name).cast(f.type) if f.name in rows.column_names
                                             else pa.nulls(rows.num_rows, f.type)) for f in current.schema})
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
                raise StoreError(f"run {run_id}: rows for {table!r} do not fit its columns: {e}") from e
            staged[table] = pa.concat_tables([_without(current, aligned, key), aligned])
        self._tables = staged

    def runs(self) -> MemoryRunLog:
        return self._runs


def _without(current: pa.Table, rows: pa.Table, key: tuple[str, ...]) -> pa.Table:
    """`current` less its rows whose key is among `rows`' keys."""
    if not current.num_rows or not rows.num_rows:
        return current
    keys = rows.select(list(key)).group_by(list(key)).aggregate([])
    marked = keys.append_column("__drop", pa.array([True] * keys.num_rows))
    joined = current.join(marked, list(key), join_type="left outer", use_threads=False)
    kept = joined.filter(pc.is_null(joined.column("__drop"))).drop_columns(["__drop"])
    return kept.select(current.column_names)
