"""run_stage, the one run lifecycle (otlake/pipeline.py), on both stores, with a small stage over real tables.

The stage reads each repl's `repls` row: a private repl is dropped (counted by reason), a repl without a title
is quarantined, every other repl gives one `meta` row; its marker is a second `meta` row. A killed run
(SIGKILL of a real process between partitions) rerun ends with the tables of one clean run.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from otlake.pipeline import Context, LocalEngine, Partition, PipelineError, StageResult, run_stage
from warehouse.store import Warehouse
from warehouse.stores import DuckDBStore, MemoryStore, read_table

from .store_contract import repls

REPO = Path(__file__).resolve().parents[1]
NOW = 1_709_294_400_000_000  # 2024-03-01T12:00:00Z
REPLS = repls(("r1", "python", False, "one"), ("r2", "python", True, "secret"), ("r3", "python", False, ""),
              ("r4", "python", False, "four"), ("r5", "python", None, "five"))


class Titles:
    """A small stage over real tables; `fail_at` raises in that partition (a crash mid-run)."""

    name, reads, writes = "titles", ("repls",), ("meta", "quarantine")

    def __init__(self, fail_at: str | None = None, unbalanced: bool = False) -> None:
        self.fail_at, self.unbalanced, self.seen = fail_at, unbalanced, []

    def pending(self, store, params):
        done = {k.removeprefix("done:") for k in read_table(store, "meta", columns=["key"]).column(0).to_pylist()}
        ids = read_table(store, "repls", columns=["repl_id"]).column(0).to_pylist()
        return [r for r in ids if r not in done]

    def process(self, part: Partition, ctx: Context) -> StageResult:
        self.seen.append(part.key)
        if part.key == self.fail_at:
            raise RuntimeError(f"crash in {part.key}")
        row = part.tables["repls"].to_pylist()[0]
        result = StageResult(count_in=1, markers={"meta": pa.table({"key": [f"done:{part.key}"], "value": ["1"]})})
        if row["is_private"] is not False:  # unknown privacy counts as private
            result.dropped["private_repl"] += 1
        elif not row["title"]:
            result.quarantine = pa.table({"source": ["titles"], "key": [part.key], "repl_id": [part.key],
                                          "error_kind": ["no_title"], "message": [f"repl {part.key} has no title"]})
        else:
            result.outputs["meta"] = pa.table({"key": [f"title:{part.key}"], "value": [row["title"].upper()]})
            result.count_out = 1
        if self.unbalanced:
            result.count_in += 1
        return result

    def reduce(self, results, ctx):
        return None


def fresh(kind: str, tmp_path: Path):
    if kind == "memory":
        store = MemoryStore()
        store.commit("setup", {"repls": REPLS})
        return store, None
    wh = Warehouse(tmp_path / kind)
    store = DuckDBStore(wh.con)
    store.commit("setup", {"repls": REPLS})
    return store, wh


def tables(store) -> dict:
    meta = read_table(store, "meta", columns=["key", "value"]).to_pylist()
    q = read_table(store, "quarantine", columns=["source", "key", "error_kind", "message"]).to_pylist()
    return {"meta": [m for m in meta if m["key"].startswith(("title:", "done:"))], "quarantine": q}


@pytest.mark.parametrize("kind", ["memory", "duckdb"])
def test_a_run_commits_counts_and_balances(kind, tmp_path):
    store, wh = fresh(kind, tmp_path)
    try:
        steps = []
        report = run_stage(Titles(), store, LocalEngine(), {"why": "test"}, now_us=NOW,
                           progress=lambda done, total: steps.append((done, total)))
        assert report.reconciliation() == {"in": 5, "out": 2, "dropped": {"private_repl": 2}, "quarantined": 1,
                                           "partitions": 5}
        assert steps == [(n, 5) for n in range(1, 6)]
        got = tables(store)
        assert [m for m in got["meta"] if m["key"].startswith("title:")] == [
            {"key": "title:r1", "value": "ONE"}, {"key": "title:r4", "value": "FOUR"}]
        assert got["quarantine"] == [{"source": "titles", "key": "r3", "error_kind": "no_title",
                                      "message": "repl r3 has no title"}]
        q = read_table(store, "quarantine", columns=["run_id", "quarantined_at"]).to_pylist()[0]
        assert q["run_id"] == report.run_id and int(q["quarantined_at"].timestamp() * 1e6) == NOW
        run = store.runs().get(report.run_id)
        assert (run["stage"], run["status"], run["params"]) == ("titles", "done", {"why": "test"})
        assert run["reconciliation"]["dropped"] == {"private_repl": 2} and run["timings"]["seconds"] >= 0
        again = Titles()
        assert run_stage(again, store, LocalEngine(), {}, now_us=NOW).partitions == 0 and again.seen == []
    finally:
        if wh is not None:
            wh.close()


@pytest.mark.parametrize("kind", ["memory", "duckdb"])
def test_a_crashed_run_is_failed_and_a_rerun_redoes_only_what_has_no_marker(kind, tmp_path):
    store, wh = fresh(kind, tmp_path)
    try:
        crashing = Titles(fail_at="r3")
        with pytest.raises(RuntimeError, match="crash in r3"):
            run_stage(crashing, store, LocalEngine(), {}, now_us=NOW)
        failed = [r for r in _all_runs(store) if r["status"] == "failed"]
        assert len(failed) == 1 and failed[0]["reconciliation"]["partitions"] == 2
        rerun = Titles()
        report = run_stage(rerun, store, LocalEngine(), {}, now_us=NOW)
        assert rerun.seen == ["r3", "r4", "r5"] and report.partitions == 3
        clean, clean_wh = fresh(kind, tmp_path / "clean")
        try:
            run_stage(Titles(), clean, LocalEngine(), {}, now_us=NOW)
            assert tables(store) == tables(clean)
        finally:
            if clean_wh is not None:
                clean_wh.close()
    finally:
        if wh is not None:
            wh.close()


def _all_runs(store) -> list[dict]:
    log = store.runs()
    if isinstance(store, MemoryStore):
        return [log.get(r) for r in log.rows]
    return [log.get(r) for (r,) in store._con.execute("SELECT run_id FROM runs").fetchall()]


def test_a_reconciliation_that_does_not_balance_fails_the_run():
    store = MemoryStore()
    store.commit("setup", {"repls": REPLS})
    with pytest.raises(PipelineError, match=r"records in \(10\) != out \(2\)"):
        run_stage(Titles(unbalanced=True), store, LocalEngine(), {}, now_us=NOW)
    (run,) = store.runs().rows.values()
    assert run["status"] == "failed"


KILLED_RUN = """
import os, signal, sys
sys.path[:0] = [{repo!r}]
from tests.test_pipeline import Titles, NOW
from otlake.pipeline import LocalEngine, run_stage
from warehouse.store import Warehouse
from warehouse.stores import DuckDBStore

def progress(done, total):
    if done == 3:
        os.kill(os.getpid(), signal.SIGKILL)

with Warehouse({home!r}) as wh:
    run_stage(Titles(), DuckDBStore(wh.con), LocalEngine(), {{}}, now_us=NOW, progress=progress)
"""


def test_a_run_killed_with_sigkill_and_rerun_ends_with_the_tables_of_one_clean_run(tmp_path):
    home = tmp_path / "killed"
    store, wh = fresh("killed", tmp_path)
    wh.close()
    done = subprocess.run([sys.executable, "-c", KILLED_RUN.format(repo=str(REPO), home=str(home))],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    with Warehouse(home) as wh:
        store = DuckDBStore(wh.con)
        statuses = Counter(r["status"] for r in _all_runs(store))
        assert statuses == Counter({"running": 1})  # the killed run never finished: its row says so
        rerun = Titles()
        run_stage(rerun, store, LocalEngine(), {}, now_us=NOW)
        assert rerun.seen == ["r4", "r5"]
        # the next run saw the killed run's process gone: its row now says so
        assert Counter(r["status"] for r in _all_runs(store)) == Counter({"interrupted": 1, "done": 1})
        killed_then_rerun = tables(store)
    clean = MemoryStore()
    clean.commit("setup", {"repls": REPLS})
    run_stage(Titles(), clean, LocalEngine(), {}, now_us=NOW)
    assert killed_then_rerun == tables(clean)


@pytest.mark.parametrize("kind", ["memory", "duckdb"])
def test_the_local_engine_in_a_process_pool_gives_what_it_gives_in_process(kind, tmp_path):
    """Spawned processes (the stage sent once, chunks of partitions split there) commit the same rows, in
    the same order of results, as the engine running every partition in this process."""
    got = {}
    for workers in (1, 2):
        store, wh = fresh(f"{kind}-{workers}", tmp_path) if kind == "duckdb" else fresh(kind, tmp_path)
        try:
            done = []
            report = run_stage(Titles(), store, LocalEngine(workers, task_rows=1, inline_rows=1), {}, now_us=NOW,
                               progress=lambda n, total, done=done: done.append((n, total)))
            got[workers] = (tables(store), report.reconciliation(), done)
        finally:
            if wh is not None:
                wh.close()
    assert got[1] == got[2]
    assert got[2][1]["partitions"] == 5 and got[2][2][-1] == (5, 5)


def test_a_pool_too_small_to_be_worth_starting_runs_in_process(tmp_path):
    stage = Titles()
    store, _ = fresh("memory", tmp_path)
    run_stage(stage, store, LocalEngine(2, inline_rows=10_000), {}, now_us=NOW)
    assert stage.seen == ["r1", "r2", "r3", "r4", "r5"]  # processed here: the pool never started
