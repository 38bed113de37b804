"""Ingest at size, a checkout against this tree: `python -m bench.ingest_ab --base-src DIR [--reps 3]`.

DIR is a checkout with its own environment (`DIR/.venv`), e.g. the worktree `bench.stage_speed --base
COMMIT` leaves in $TMPDIR/otlake-stage-speed. Two files from `bench.ingest`'s generators (300 simulated
repls; one 250K-edit session) are ingested into a fresh warehouse by each side in turn, alternated, each
run in a fresh process; medians of the wall time of `ingest_files`.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

HEAD = Path(__file__).resolve().parents[1]
GENERATE = """
import sys
from events.simulator import long_session, simulate, write_jsonl
write_jsonl(simulate(300, seed=3), sys.argv[1] + '/sessions.jsonl')
write_jsonl(long_session(250_000), sys.argv[1] + '/long.jsonl')
"""
RUN = """
import shutil, sys, time
from pathlib import Path
try:
    from otlake.stages import ingest_files
except ImportError:  # a checkout from before ingest ran as a pipeline stage
    from warehouse.ingest import ingest_files
from warehouse.store import Warehouse
home = Path(sys.argv[2])
shutil.rmtree(home, ignore_errors=True)
with Warehouse(home) as wh:
    start = time.perf_counter()
    report = ingest_files(wh, [Path(sys.argv[1])])
    print(report.records_in, time.perf_counter() - start)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-src", type=Path, required=True)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--files", default="sessions,long")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="otlake-ingest-ab-"))
    subprocess.run([str(HEAD / ".venv/bin/python"), "-c", GENERATE, str(tmp)], cwd=HEAD, check=True)
    names = args.files.split(",")
    times: dict[tuple[str, str], list[float]] = {}
    events: dict[str, int] = {}
    for rep in range(args.reps):
        for side in ("base", "head") if rep % 2 == 0 else ("head", "base"):
            src = args.base_src if side == "base" else HEAD
            for name in names:
                out = subprocess.run([str(src / ".venv/bin/python"), "-c", RUN, str(tmp / f"{name}.jsonl"),
                                      str(tmp / f"wh-{side}")], cwd=src, check=True, capture_output=True,
                                     text=True).stdout.split()
                events[name] = int(out[0])
                times.setdefault((name, side), []).append(float(out[1]))
                print(f"rep {rep + 1}/{args.reps} {side} {name}: {float(out[1]):.2f} s", flush=True)
    for name in names:
        base, head = (sorted(times[(name, s)])[args.reps // 2] for s in ("base", "head"))
        n = events[name]
        print(f"{name}: {n:,} events; base {base:.2f} s ({n / base:,.0f}/s), head {head:.2f} s ({n / head:,.0f}/s),"
              f" head/base rate {base / head:.2f}x")


if __name__ == "__main__":
    main()
