"""The SQLAlchemy engine as notebooks and BI tools use it: schema browsing, pandas, no noise at exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy
from duckdb_engine.datatypes import HugeInteger, Map, Struct, UBigInteger
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import ARRAY

import warehouse.duckdb_dialect  # noqa: F401  (its exit hook: this module imports duckdb_engine itself)
from otlake.stages import ingest_events
from warehouse.dataset_schema import DATASET_TABLES
from warehouse.schema import TABLES
from warehouse.store import Warehouse, sqlalchemy_engine

from .conftest import Log

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(tmp_path):
    log = Log("r1")
    log.type("main.py", "hi")
    with Warehouse(tmp_path / "wh") as wh:
        ingest_events(wh, log.events)
        wh.con.execute("""CREATE TABLE kinds (id INTEGER PRIMARY KEY, tags VARCHAR[], amount DECIMAL(18,3),
                            big HUGEINT, meta STRUCT(a INTEGER), m MAP(VARCHAR, INTEGER), raw BLOB,
                            seen TIMESTAMPTZ, d DOUBLE, note VARCHAR NOT NULL DEFAULT 'none')""")
        wh.con.execute("COMMENT ON TABLE kinds IS 'every kind of column'")
        wh.con.execute("""CREATE TABLE kind_refs (kind_id INTEGER REFERENCES kinds (id), code VARCHAR UNIQUE,
                            n INTEGER CHECK (n > 0))""")
    return tmp_path / "wh"


@pytest.fixture
def engine(home):
    engine = sqlalchemy_engine(home)
    yield engine
    engine.dispose()


def test_inspect_lists_tables_views_and_columns(engine):
    insp = sqlalchemy.inspect(engine)
    assert set(insp.get_table_names()) == {*TABLES, *DATASET_TABLES, "kinds", "kind_refs"}
    assert insp.get_view_names() == ["file_paths"]
    columns = {c["name"]: c for c in insp.get_columns("events")}
    assert list(columns) == ["repl_id", "seq", "ts", "kind", "session_id", "user_id", "path", "event", "event_hash"]
    assert isinstance(columns["seq"]["type"], sqlalchemy.BigInteger)
    assert isinstance(columns["ts"]["type"], sqlalchemy.TIMESTAMP) and columns["ts"]["type"].timezone
    assert isinstance(columns["event_hash"]["type"], UBigInteger)
    assert (columns["repl_id"]["nullable"], columns["path"]["nullable"]) == (False, True)
    assert [c["name"] for c in insp.get_columns("file_paths")][:3] == ["repl_id", "path", "file_id"]
    assert insp.get_pk_constraint("repls")["constrained_columns"] == ["repl_id"]
    assert insp.get_pk_constraint("events")["constrained_columns"] == []
    with pytest.raises(sqlalchemy.exc.NoSuchTableError):
        insp.get_columns("nope")


def test_column_types_are_reflected(engine):
    insp = sqlalchemy.inspect(engine)
    kinds = {c["name"]: c for c in insp.get_columns("kinds")}
    assert isinstance(kinds["tags"]["type"], ARRAY) and isinstance(kinds["tags"]["type"].item_type, sqlalchemy.String)
    assert (kinds["amount"]["type"].precision, kinds["amount"]["type"].scale) == (18, 3)
    assert isinstance(kinds["big"]["type"], HugeInteger)
    assert isinstance(kinds["meta"]["type"], Struct) and isinstance(kinds["m"]["type"], Map)
    assert isinstance(kinds["raw"]["type"], sqlalchemy.LargeBinary)
    assert isinstance(kinds["d"]["type"], sqlalchemy.Double)
    assert (kinds["note"]["nullable"], kinds["note"]["default"]) == (False, "'none'")
    assert insp.get_table_comment("kinds") == {"text": "every kind of column"}
    table = sqlalchemy.Table("kinds", sqlalchemy.MetaData(), autoload_with=engine)
    assert [c.name for c in table.primary_key] == ["id"]


def test_constraints_are_reflected(engine):
    insp = sqlalchemy.inspect(engine)
    (fk,) = insp.get_foreign_keys("kind_refs")
    assert (fk["constrained_columns"], fk["referred_table"], fk["referred_columns"]) == (["kind_id"], "kinds", ["id"])
    assert [u["column_names"] for u in insp.get_unique_constraints("kind_refs")] == [["code"]]
    assert [c["sqltext"] for c in insp.get_check_constraints("kind_refs")] == ["(n > 0)"]
    assert insp.get_indexes("kind_refs") == [] and insp.get_foreign_keys("kinds") == []
    refs = sqlalchemy.Table("kind_refs", sqlalchemy.MetaData(), autoload_with=engine)
    assert [(e.parent.name, e.column.table.name, e.column.name) for e in refs.foreign_keys] == [
        ("kind_id", "kinds", "id")]


def test_pandas_reads_tables_views_and_queries(engine):
    repls = pd.read_sql_table("repls", engine)
    assert repls[["repl_id", "language", "title"]].to_dict("records") == [
        {"repl_id": "r1", "language": "python3", "title": "demo"}]
    assert str(repls["ts"].dtype) == "datetime64[us, UTC]"
    paths = pd.read_sql_table("file_paths", engine)
    assert paths[["repl_id", "path"]].to_dict("records") == [{"repl_id": "r1", "path": "main.py"}]
    code = pd.read_sql_query(text("SELECT file_at('r1', 'main.py', now()) AS code"), engine)
    assert code["code"].tolist() == ["hi"]
    assert pd.read_sql_table("kinds", engine).empty


def test_engine_reads_amounts_exactly(home):
    with Warehouse(home) as wh:
        wh.con.execute("INSERT INTO kinds (id, amount) VALUES (1, 12.345)")
    engine = sqlalchemy_engine(home)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT amount FROM kinds")).scalar() == Decimal("12.345")
    engine.dispose()


@pytest.mark.parametrize("first", ["", "import torch"])
def test_nothing_is_printed_at_exit_without_dispose(home, first):
    """A notebook never calls dispose() and may keep a connection open: exit must stay quiet, also with torch
    loaded (which kept duckdb-engine's objects alive past shutdown: DuckDB printed a nanobind leak report)."""
    script = first + "\n" + textwrap.dedent(f"""
        import pandas as pd
        import sqlalchemy
        from sqlalchemy import text
        from warehouse.store import sqlalchemy_engine

        engine = sqlalchemy_engine({str(home)!r})
        print(len(sqlalchemy.inspect(engine).get_columns("events")))
        print(len(pd.read_sql_table("repls", engine)))
        held = engine.connect()
        print(held.execute(text("SELECT file_at('r1', 'main.py', now())")).scalar())
    """)
    # -X dev shows ResourceWarnings and every other warning that is otherwise hidden
    done = subprocess.run([sys.executable, "-X", "dev", "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["9", "1", "hi"]
    assert done.stderr == ""


def test_several_connections_to_one_warehouse_each_have_file_at(home):
    """Inspecting or reading with pandas while a connection is held opens a second one; two read-only
    Warehouses on one file likewise. Each has its own file_at, which keeps working after the other closes."""
    engine = sqlalchemy_engine(home)
    try:
        with engine.connect() as held:
            assert held.execute(text("SELECT file_at('r1', 'main.py', now())")).scalar() == "hi"
            assert len(sqlalchemy.inspect(engine).get_columns("events")) == 9
            got = pd.read_sql_query(text("SELECT path, content FROM files_at('r1', now())"), engine)
            assert got.to_dict("records") == [{"path": "main.py", "content": "hi"}]
            assert held.execute(text("SELECT file_at('r1', 'main.py', TIMESTAMPTZ '2000-01-01')")).scalar() is None
    finally:
        engine.dispose()
    first = Warehouse(home, read_only=True)  # the engine's connections are closed: this one has file_at
    second = Warehouse(home, read_only=True)
    try:
        ask = "SELECT file_at('r1', 'main.py', now()), (SELECT content FROM files_at('r1', now()))"
        assert first.con.execute(ask).fetchall() == second.con.execute(ask).fetchall() == [("hi", "hi")]
        cur = first.con.cursor()  # a cursor of the connection that registered file_at calls it too
        try:
            assert cur.execute("SELECT file_at('r1', 'main.py', now())").fetchall() == [("hi",)]
        finally:
            cur.close()
        first.close()
        assert second.con.execute(ask).fetchall() == [("hi", "hi")]
        third = Warehouse(home, read_only=True)  # the first one's name left with it: this one takes it
        try:
            cur = third.con.cursor()
            assert cur.execute("SELECT file_at('r1', 'main.py', now())").fetchall() == [("hi",)]
            cur.close()
        finally:
            third.close()
    finally:
        first.close()
        second.close()
