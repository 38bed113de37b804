"""Time travel: 1000 random instants through file_at in one SQL statement, for several K."""

from __future__ import annotations

import argparse
import random
import shutil

from events.simulator import long_session
from otlake.stages import ingest_events
from warehouse.store import Warehouse

from .common import OUT, median_time, save


def table_bytes(wh: Warehouse, table: str, tmp) -> dict:
    """A table's size: raw UTF-8 bytes of its text columns, and as zstd Parquet (compressed, as stored at rest).

    DuckDB allocates its file in 256 KiB blocks, too coarse to compare small tables, hence Parquet.
    """
    path = tmp / f"{table}.parquet"
    wh.con.execute(f"COPY {table} TO '{path}' (FORMAT parquet, COMPRESSION zstd)")
    column = "content" if table == "checkpoints" else "ops"
    raw = wh.con.execute(f"SELECT coalesce(sum(strlen({column})), 0) FROM {table}").fetchone()[0]
    return {"raw_text_bytes": raw, "parquet_zstd_bytes": path.stat().st_size}


NO_CHECKPOINTS = 1 << 30  # baseline: every query replays from version 0 (measured on fewer queries)


def main(edits: int = 40_000, ks=(16, 64, 128, 256, 1024, NO_CHECKPOINTS), queries: int = 1000, repeat: int = 5) -> dict:
    events = long_session(edits, seed=1)
    repl_id = events[0]["repl_id"]
    tmp = OUT / "timetravel"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    result = {"edits": sum(e["kind"] == "ot" for e in events), "queries": queries, "repeat": repeat, "by_k": {}}
    for k in ks:
        n_q, reps = (20, 1) if k == NO_CHECKPOINTS else (queries, repeat)
        with Warehouse(tmp / f"k{k}") as wh:
            ingest_events(wh, events, checkpoint_every=k)
            path, lo, hi = wh.con.execute(
                "SELECT any_value(path), min(ts), max(ts) FROM ot_ops WHERE repl_id = ?", [repl_id]).fetchone()
            rng = random.Random(7)
            span = (hi - lo).total_seconds()
            wh.con.execute("CREATE TEMP TABLE q (repl_id VARCHAR, path VARCHAR, t TIMESTAMPTZ)")
            wh.con.executemany(
                "INSERT INTO q VALUES (?, ?, ?::TIMESTAMPTZ + to_microseconds(?))",
                [(repl_id, path, lo, int(rng.random() * span * 1e6)) for _ in range(n_q)])
            sql = "SELECT sum(length(file_at(repl_id, path, t))) FROM q"
            total_chars = wh.con.execute(sql).fetchone()[0]
            med, runs = median_time(lambda sql=sql: wh.con.execute(sql).fetchone(), reps)
            n_cp = wh.con.execute("SELECT count(*) FROM checkpoints").fetchone()[0]
            result["by_k"][str(k) if k != NO_CHECKPOINTS else "none"] = {
                "queries": n_q,
                "ms_per_query": round(med * 1000 / n_q, 4),
                "statement_s": round(med, 3),
                "runs_s": [round(t, 3) for t in runs],
                "checkpoints": n_cp,
                "checkpoints_size": table_bytes(wh, "checkpoints", tmp),
                "ot_ops_size": table_bytes(wh, "ot_ops", tmp),
                "avg_file_chars_returned": round(total_chars / n_q),
            }
    save("timetravel", result)
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--edits", type=int, default=40_000)
    ap.add_argument("--queries", type=int, default=1000)
    a = ap.parse_args()
    main(a.edits, queries=a.queries)
