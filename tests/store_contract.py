"""The Store contract (warehouse/stores.py) as one test case: every backend subclasses it and passes it unchanged.

A subclass gives the `store` fixture (a new, empty store per test). Rows are the warehouse's own tables
(repls, quarantine, diffs), so a backend is tested with the keys and types it will hold.
"""

from __future__ import annotations

import datetime
import os
import socket

import pyarrow as pa
import pytest

from warehouse.stores import StoreError, read_table

T0 = datetime.datetime(2024, 3, 1, 12, 0, tzinfo=datetime.UTC)


def repls(*rows: tuple) -> pa.Table:
    """repls rows: (repl_id, language, is_private, title)."""
    return pa.table({
        "repl_id": [r[0] for r in rows], "language": [r[1] for r in rows],
        "is_private": pa.array([r[2] for r in rows], pa.bool_()), "title": [r[3] for r in rows],
        "seq": pa.array([1] * len(rows), pa.int64()),
        "ts": pa.array([T0] * len(rows), pa.timestamp("us", "UTC"))})


def quarantine(*rows: tuple) -> pa.Table:
    """quarantine rows: (source, key, error_kind, message)."""
    return pa.table({"source": [r[0] for r in rows], "key": [r[1] for r in rows],
                     "error_kind": [r[2] for r in rows], "message": [r[3] for r in rows],
                     "quarantined_at": pa.array([T0] * len(rows), pa.timestamp("us", "UTC"))})


def rows_of(store, table: str, **kw) -> list[dict]:
    return read_table(store, table, **kw).to_pylist()


class StoreContract:
    """Subclasses define a `store` fixture."""

    def test_an_empty_table_reads_as_no_rows_with_its_columns(self, store):
        table = read_table(store, "repls")
        assert table.num_rows == 0
        assert {"repl_id", "language", "is_private", "title"} <= set(table.column_names)

    def test_committed_rows_read_back_sorted_by_key(self, store):
        store.commit("r1", {"repls": repls(("b", "python", False, "B"), ("a", "python", True, "A"))})
        got = rows_of(store, "repls", columns=["repl_id", "is_private", "title", "ts"])
        assert got == [{"repl_id": "a", "is_private": True, "title": "A", "ts": T0},
                       {"repl_id": "b", "is_private": False, "title": "B", "ts": T0}]

    def test_an_upsert_replaces_rows_by_key_and_keeps_the_others(self, store):
        store.commit("r1", {"repls": repls(("a", "python", False, "old"), ("b", "python", False, "B"))})
        store.commit("r2", {"repls": repls(("a", "nodejs", True, "new"), ("c", "python", None, "C"))})
        got = rows_of(store, "repls", columns=["repl_id", "language", "is_private", "title"])
        assert got == [{"repl_id": "a", "language": "nodejs", "is_private": True, "title": "new"},
                       {"repl_id": "b", "language": "python", "is_private": False, "title": "B"},
                       {"repl_id": "c", "language": "python", "is_private": None, "title": "C"}]

    def test_within_one_commit_the_last_row_of_a_key_wins(self, store):
        store.commit("r1", {"repls": repls(("a", "python", False, "first"), ("a", "python", False, "second"))})
        assert [r["title"] for r in rows_of(store, "repls")] == ["second"]

    def test_a_repeated_commit_ends_with_the_same_tables(self, store):
        batch = {"repls": repls(("a", "python", False, "A")),
                 "quarantine": quarantine(("ingest", "f:1", "bad_json", "not JSON"))}
        store.commit("r1", batch)
        first = {t: rows_of(store, t) for t in batch}
        store.commit("r1", batch)  # a retry after a crash that hid whether the first commit landed
        assert {t: rows_of(store, t) for t in batch} == first
        assert len(first["repls"]) == 1 and len(first["quarantine"]) == 1

    def test_deletes_remove_rows_by_key(self, store):
        store.commit("r1", {"repls": repls(("a", "python", False, "A"), ("b", "python", False, "B"))})
        store.commit("r2", {}, deletes={"repls": pa.table({"repl_id": ["a", "zz"]})})
        assert [r["repl_id"] for r in rows_of(store, "repls")] == ["b"]

    def test_where_filters_by_value_by_list_and_by_null(self, store):
        store.commit("r1", {"repls": repls(("a", "python", False, "A"), ("b", "nodejs", None, "B"),
                                           ("c", "python", True, "C"))})
        assert [r["repl_id"] for r in rows_of(store, "repls", where={"language": "python"})] == ["a", "c"]
        assert [r["repl_id"] for r in rows_of(store, "repls", where={"repl_id": ["c", "b", "x"]})] == ["b", "c"]
        assert [r["repl_id"] for r in rows_of(store, "repls", where={"is_private": None})] == ["b"]
        assert rows_of(store, "repls", where={"language": "python", "is_private": True},
                       columns=["repl_id"]) == [{"repl_id": "c"}]
        assert rows_of(store, "repls", where={"repl_id": []}) == []

    def test_quarantine_rows_are_upserts_by_source_and_key(self, store):
        store.commit("r1", {"quarantine": quarantine(("ingest", "k1", "bad_json", "first"),
                                                     ("verify", "k1", "mismatch", "other stage"))})
        store.commit("r2", {"quarantine": quarantine(("ingest", "k1", "bad_json", "again"))})
        got = rows_of(store, "quarantine", columns=["source", "key", "message"])
        assert got == [{"source": "ingest", "key": "k1", "message": "again"},
                       {"source": "verify", "key": "k1", "message": "other stage"}]

    def test_a_commit_is_all_or_nothing(self, store):
        store.commit("r1", {"repls": repls(("a", "python", False, "A"))})
        bad = pa.table({"source": ["ingest"], "key": ["k"], "no_such_column": [1]})
        with pytest.raises(StoreError, match="no_such_column"):
            store.commit("r2", {"repls": repls(("a", "python", False, "changed"), ("b", "python", False, "B")),
                                "quarantine": bad})
        assert [(r["repl_id"], r["title"]) for r in rows_of(store, "repls")] == [("a", "A")]
        assert rows_of(store, "quarantine") == []

    def test_rows_without_their_key_are_refused_naming_it(self, store):
        with pytest.raises(StoreError, match="repl_id"):
            store.commit("r1", {"repls": pa.table({"title": ["no key"]})})
        with pytest.raises(StoreError, match="null 'key'"):
            store.commit("r1", {"quarantine": quarantine(("ingest", None, "bad_json", "m"))})
        assert rows_of(store, "repls") == []

    def test_unknown_tables_and_columns_are_store_errors(self, store):
        with pytest.raises(StoreError, match="nope"):
            list(store.read("nope"))
        with pytest.raises(StoreError, match="wrong"):
            list(store.read("repls", columns=["repl_id", "wrong"]))
        with pytest.raises(StoreError, match="wrong"):
            list(store.read("repls", where={"wrong": 1}))
        with pytest.raises(StoreError, match="has no key"):
            store.commit("r1", {"nope": pa.table({"a": [1]})})

    def test_the_run_log_records_a_run_from_start_to_finish(self, store):
        log = store.runs()
        run_id = log.start("pairs", {"workers": 2, "repls": ["a"]})
        assert run_id.startswith("pairs-")
        assert log.get(run_id) == {"run_id": run_id, "stage": "pairs", "status": "running",
                                   "params": {"workers": 2, "repls": ["a"]}, "reconciliation": None,
                                   "timings": {"pid": os.getpid(), "host": socket.gethostname()}}
        assert log.interrupt_dead() == [] and log.get(run_id)["status"] == "running"  # its process lives
        log.finish(run_id, "done", {"in": 3, "out": 2, "dropped": {"stylistic_rule": 1}}, {"total": 1.5})
        got = log.get(run_id)
        assert (got["status"], got["reconciliation"], got["timings"]) == (
            "done", {"in": 3, "out": 2, "dropped": {"stylistic_rule": 1}}, {"total": 1.5})
        assert log.start("pairs", {}) != run_id
        assert log.get("pairs-unknown") is None
        with pytest.raises(StoreError, match="status"):
            log.finish(run_id, "finished-ish", {}, {})
