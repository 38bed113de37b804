"""Ingest throughput from JSONL: simulated sessions and one long single-file session."""

from __future__ import annotations

import argparse
import shutil
import time

import orjson

from events.simulator import long_session, simulate, write_jsonl
from otlake.stages import ingest_files
from warehouse.store import Warehouse

from .common import OUT, median_time, save


def decode_only(path) -> int:
    """Baseline in the same run: just reading and decoding the lines."""
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            orjson.loads(line)
            n += 1
    return n


def run_one(path, tmp, name: str, repeat: int) -> dict:
    with open(path, "rb") as fh:
        n = sum(1 for _ in fh)
    runs = []
    for i in range(repeat):
        home = tmp / f"{name}-{i}"
        shutil.rmtree(home, ignore_errors=True)
        with Warehouse(home) as wh:
            start = time.perf_counter()
            report = ingest_files(wh, [path])
            runs.append((time.perf_counter() - start, report.step_seconds))
            assert report.balanced() and report.quarantined == 0, report.summary()
        size_mb = round((home / "otlake.duckdb").stat().st_size / 1e6, 1)
    runs.sort(key=lambda r: r[0])
    med, steps = runs[len(runs) // 2]
    steps = {k: round(v, 3) for k, v in steps.items()}
    steps["read_and_other"] = round(med - sum(steps.values()), 3)
    dec, _ = median_time(lambda: decode_only(path), repeat)
    return {"events": n, "median_s": round(med, 3), "events_per_s": round(n / med),
            "runs_s": [round(t, 3) for t, _ in runs], "steps_of_median_run_s": steps,
            "decode_only_events_per_s": round(n / dec), "mb": round(path.stat().st_size / 1e6, 1),
            "warehouse_mb": size_mb}


def main(repls: int = 300, long_edits: int = 250_000, repeat: int = 5) -> dict:
    tmp = OUT / "ingest"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    sessions = tmp / "sessions.jsonl"
    started = time.perf_counter()
    write_jsonl(simulate(repls, seed=3), sessions)
    sim_s = time.perf_counter() - started
    single = tmp / "long.jsonl"
    write_jsonl(long_session(long_edits, seed=4), single)
    result = {"simulated_repls": repls, "simulate_s": round(sim_s, 1), "repeat": repeat,
              "sessions": run_one(sessions, tmp, "sessions", repeat),
              "single_file_session": run_one(single, tmp, "long", repeat)}
    save("ingest", result)
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--repls", type=int, default=300)
    ap.add_argument("--long-edits", type=int, default=250_000)
    a = ap.parse_args()
    main(a.repls, a.long_edits)
