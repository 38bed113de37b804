"""The pairs stage (warm pyright pool) against the pyright CLI once per snapshot; then the synth verification chain.

One warehouse of simulated repls whose diagnostics came from the meta-LSP.
The pairs stage runs with 1 and with 2 warm servers (each on a fresh copy of
the warehouse). Then, in the same run, a sample of the very snapshots the
stage checked is checked again by `pyright --stats` (a fresh process per
snapshot), which prints pyright's own check time. Last, `synth --source
user` on the same warehouse gives the verification chain's acceptance per
step and its diffs/s.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import subprocess
import time

from events.simulator import simulate, write_jsonl
from lsp_runner.config import DEFAULT_CONFIG
from lsp_runner.linter import MetaLspLinter
from lsp_runner.snapshot import Snapshot, temporary_root, write_tree
from lsp_runner.tools import pyright_cli_command
from otlake.stages import PairsOptions, SynthOptions, build_pairs, ingest_files, run_synth
from warehouse.store import Warehouse
from warehouse.stores import DuckDBStore, read_timeline

from .common import OUT, save

_STAT = re.compile(r"^(Find Source Files|Read Source Files|Tokenize|Parse|Resolve Imports|Bind|Check|Detect Cycles):"
                   r"\s+([\d.]+)sec", re.MULTILINE)


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def cli_sample(home, n: int, seed: int) -> dict:
    """`pyright --stats` on n of the snapshots the pairs stage checked, one fresh process each."""
    with Warehouse(home, read_only=True) as wh:
        keys = wh.con.execute("SELECT DISTINCT repl_id, epoch_us(ts), path FROM pairs ORDER BY ALL").fetchall()
        sample = random.Random(seed).sample(keys, min(n, len(keys)))
        snaps = []
        for repl_id, us, path in sample:
            files = read_timeline(DuckDBStore(wh.con), repl_id).states_at([us])[us]
            snaps.append(({p: c for p, c in files.items() if c is not None}, path))
    walls, checks, totals = [], [], []
    with temporary_root("otlake-bench-cli-") as root:
        (root / "pyrightconfig.json").write_text(DEFAULT_CONFIG.pyrightconfig_json())
        for i, (files, path) in enumerate(snaps):
            tree = write_tree(Snapshot(f"s{i}", files, (path,)), root / f"s-{i:04d}", DEFAULT_CONFIG)
            started = time.perf_counter()
            proc = subprocess.run([*pyright_cli_command(), "--stats", "--project", str(root),
                                   str(tree.root / path)], capture_output=True, text=True, check=False, cwd=root)
            walls.append(time.perf_counter() - started)
            stats = dict(_STAT.findall(proc.stdout))
            if "Check" not in stats:
                raise RuntimeError(f"pyright --stats printed no check time: {proc.stdout[-500:]} {proc.stderr[-500:]}")
            checks.append(float(stats["Check"]))
            totals.append(sum(float(v) for v in stats.values()))
    return {"snapshots": len(snaps), "wall_s_per_snapshot_mean": round(statistics.mean(walls), 3),
            "wall_s_per_snapshot_median": round(statistics.median(walls), 3),
            "check_s_per_snapshot_mean": round(statistics.mean(checks), 4),
            "parse_bind_check_s_per_snapshot_mean": round(statistics.mean(totals), 4)}


def run_pairs(src, dst, workers: int) -> dict:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    with Warehouse(dst) as wh:
        report = build_pairs(wh, PairsOptions(workers=workers))
    lat = report.latencies
    return {"workers": workers, "seconds": round(report.seconds, 2), "snapshots": report.snapshots,
            "snapshots_per_s": round(report.snapshots / report.seconds, 2),
            "s_per_snapshot": round(report.seconds / report.snapshots, 4),
            "latency_p50_ms": round(_pct(lat, 0.5) * 1000, 1), "latency_p99_ms": round(_pct(lat, 0.99) * 1000, 1),
            "steps_s": {k: round(v, 2) for k, v in report.step_seconds.items()},
            "peak_rss_mb_per_server": report.lsp.get("peak_rss_mb"), "servers_started": report.lsp.get("servers_started"),
            "pyright_s_in_servers": report.lsp.get("pyright_seconds"), "ruff_s": report.lsp.get("ruff_seconds"),
            "reconciliation": report.as_dict()}


def main(repls: int = 20, seed: int = 11, cli_n: int = 25) -> dict:
    tmp = OUT / "pairs"
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / f"sessions-{repls}-{seed}-meta-lsp.jsonl"
    if not log.exists():
        write_jsonl(simulate(repls, seed, linter=MetaLspLinter(workers=2)), log)
    base = tmp / "base"
    shutil.rmtree(base, ignore_errors=True)
    with Warehouse(base) as wh:
        ingest_files(wh, [log])
    runs = [run_pairs(base, tmp / f"w{w}", w) for w in (1, 2)]
    cli = cli_sample(tmp / "w1", cli_n, seed)
    best = min(runs, key=lambda r: r["s_per_snapshot"])
    result = {"repls": repls, "seed": seed, "runs": runs, "cli": cli,
              "speedup_vs_cli": round(cli["wall_s_per_snapshot_mean"] / best["s_per_snapshot"], 1),
              "stage_s_per_snapshot_over_pyright_check_s": round(best["s_per_snapshot"]
                                                                 / cli["check_s_per_snapshot_mean"], 3),
              # stricter: the whole stage against the time the warm servers themselves took (w=1: one at a time)
              "stage_s_over_pyright_s_in_warm_server": round(runs[0]["seconds"] / runs[0]["pyright_s_in_servers"], 3)}
    save("pairs", result)
    with Warehouse(tmp / "w2") as wh:
        started = time.perf_counter()
        synth = run_synth(wh, SynthOptions(workers=2))
        elapsed = time.perf_counter() - started
    user = synth.by_source["user"]
    n = len(user.verifications)
    synth_result = {"pairs": user.pairs, "candidates": n, "accepted": user.accepted,
                    "no_candidate": dict(user.no_candidate), "steps": user.as_dict()["steps"],
                    "seconds": round(elapsed, 2), "step_seconds": {k: round(v, 2) for k, v in synth.step_seconds.items()},
                    "verified_diffs_per_s": round(n / synth.verify_seconds, 1) if synth.verify_seconds else None}
    save("synth", synth_result)
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--repls", type=int, default=20)
    ap.add_argument("--cli", type=int, default=25)
    a = ap.parse_args()
    main(a.repls, cli_n=a.cli)
