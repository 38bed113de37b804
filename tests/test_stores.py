"""Every Store backend passes the one contract (tests/store_contract.py): the warehouse's DuckDB file, memory."""

from __future__ import annotations

import pyarrow as pa
import pytest

from warehouse.store import Warehouse
from warehouse.stores import DuckDBStore, MemoryStore, read_table

from .store_contract import StoreContract, repls


class TestDuckDBStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path):
        with Warehouse(tmp_path / "wh") as wh:
            yield DuckDBStore(wh.con)


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self):
        return MemoryStore()


def test_the_duckdb_store_is_the_warehouse_file_sql_sees(tmp_path):
    with Warehouse(tmp_path / "wh") as wh:
        DuckDBStore(wh.con).commit("r1", {"repls": repls(("a", "python", False, "A"))})
    with Warehouse(tmp_path / "wh", read_only=True) as wh:
        assert wh.con.execute("SELECT repl_id, title FROM repls").fetchall() == [("a", "A")]


def test_big_reads_come_in_several_batches(tmp_path):
    n = 200_000
    rows = pa.table({"repl_id": [f"r{i:06d}" for i in range(n)], "language": ["python"] * n})
    with Warehouse(tmp_path / "wh") as wh:
        store = DuckDBStore(wh.con)
        store.commit("r1", {"repls": rows})
        batches = list(store.read("repls", columns=["repl_id"]))
        assert len(batches) > 1 and sum(b.num_rows for b in batches) == n
        assert read_table(store, "repls", columns=["repl_id"]).column(0).to_pylist() == sorted(rows["repl_id"].to_pylist())
