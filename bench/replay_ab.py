"""Did replaying the derived tables get slower? Time travel and Timeline at a base commit and at the working
tree, one run.

`python -m bench.replay_ab --base COMMIT [--reps 5] [--edits 40000] [--queries 1000] [--instants 200]`

"head" is this working tree (uncommitted changes included), "base" a worktree of --base with its own locked
environment (bench.common.checkout, shared with bench.stage_speed). Each side, in a fresh process of its
own code, ingests the same logs into its own warehouse (made once per side and reused by later reps) and
times, with the warehouse open:

  file_at     `SELECT sum(length(file_at(repl_id, path, t))) FROM q`, q = --queries random instants of
              long_session(--edits, seed=1) (one file, ~8K characters), checkpoints every 256 versions
  timeline    Timeline.states_at(--instants random instants) of that repl, read once before (the replay
              pairs, synth and make-replit run)
  timeline20  the same for each repl of simulate(20, seed=11) (many small files), 50 instants each
  read20      read_timeline of those 20 repls from the warehouse (the reads the replay follows)

Each process takes the median of 3 runs of each; --reps processes per side alternate (base, head, head,
base, ...); the table gives the median over the reps and base/head (above 1: the head is faster).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from .common import OUT, ROOT, checkout, machine, run_script, save

_SCRIPT = r'''
import json, random, statistics, sys, time
from pathlib import Path

work, edits, queries, instants = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
from events.simulator import long_session, simulate
from otlake.stages import ingest_events
from warehouse.store import Warehouse
from warehouse.stores import DuckDBStore, read_timeline

def ready(name, make):
    home = work / name
    if not (home / "done").exists():
        import shutil
        shutil.rmtree(home, ignore_errors=True)
        with Warehouse(home) as wh:
            ingest_events(wh, make(), checkpoint_every=256)
        (home / "done").write_text("")
    return home

def med(fn):
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)

out = {}
with Warehouse(ready("long", lambda: long_session(edits, seed=1)), read_only=True) as wh:
    (repl_id, path, lo, hi), = wh.con.execute(
        "SELECT any_value(repl_id), any_value(path), min(epoch_us(ts)), max(epoch_us(ts)) FROM ot_ops").fetchall()
    rng = random.Random(7)
    wh.con.execute("CREATE TEMP TABLE q (repl_id VARCHAR, path VARCHAR, t TIMESTAMPTZ)")
    wh.con.executemany("INSERT INTO q VALUES (?, ?, make_timestamptz(?))",
                       [(repl_id, path, rng.randint(lo, hi)) for _ in range(queries)])
    sql = "SELECT sum(length(file_at(repl_id, path, t))) FROM q"
    out["file_at_chars"] = wh.con.execute(sql).fetchall()[0][0]
    out["file_at"] = med(lambda: wh.con.execute(sql).fetchall())
    picks = sorted(rng.randint(lo, hi) for _ in range(instants))
    store = DuckDBStore(wh.con)
    def states(timelines, asks):
        n = 0
        for tl, at in zip(timelines, asks):
            tl.__dict__.pop("_steps", None)  # what a fresh Timeline computes, each time
            tl.__dict__.pop("_step_seqs", None)
            n += sum(len(t or "") for s in tl.states_at(at).values() for t in s.values())
        return n
    one = [read_timeline(store, repl_id)]
    out["timeline_chars"] = states(one, [picks])
    out["timeline"] = med(lambda: states(one, [picks]))
with Warehouse(ready("sim", lambda: simulate(20, seed=11)), read_only=True) as wh:
    spans = wh.con.execute("SELECT repl_id, min(epoch_us(ts)), max(epoch_us(ts)) FROM ot_ops GROUP BY ALL "
                           "ORDER BY repl_id").fetchall()
    rng = random.Random(5)
    asks = [sorted(rng.randint(lo, hi) for _ in range(50)) for _, lo, hi in spans]
    store = DuckDBStore(wh.con)
    out["read20"] = med(lambda: [read_timeline(store, r) for r, _, _ in spans])
    many = [read_timeline(store, r) for r, _, _ in spans]
    out["timeline20_chars"] = states(many, asks)
    out["timeline20"] = med(lambda: states(many, asks))
print(json.dumps(out))
'''

TESTS = (("file_at", "file_at, 1000 instants of one 40K-edit file (s)"),
         ("timeline", "Timeline.states_at, 200 instants of that file (s)"),
         ("timeline20", "Timeline.states_at, 50 instants of each of 20 simulated repls (s)"),
         ("read20", "read_timeline of those 20 repls (unchanged code: the noise) (s)"))


def main(base: str, reps: int, edits: int, queries: int, instants: int, checkouts: Path) -> dict:
    import subprocess

    rev = subprocess.run(["git", "rev-parse", "--short=12", base], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout.strip()
    sides = {"base": checkout(rev, checkouts / f"src-{rev}"), "head": ROOT}
    work = OUT / "replay_ab"
    runs: dict[str, list[dict]] = {"base": [], "head": []}
    for rep in range(reps):
        for side in (("base", "head") if rep % 2 == 0 else ("head", "base")):
            python = None if side == "base" else str(ROOT / ".venv" / "bin" / "python")
            runs[side].append(run_script(sides[side], _SCRIPT, [work / side, edits, queries, instants],
                                         f"{side} rep {rep}", python=python))
    for key, _ in TESTS[:3]:  # both sides replayed the same text
        chars = {s: runs[s][0][f"{key}_chars"] for s in runs}
        if chars["base"] != chars["head"]:
            raise SystemExit(f"{key}: base and head disagree on the text replayed: {chars}")
    result = {"machine": machine(), "base": rev, "reps": reps, "edits": edits, "queries": queries,
              "instants": instants, "runs": runs, "median_s": {}}
    lines = ["| what | base (s) | head (s) | base/head |", "| --- | --- | --- | --- |"]
    for key, label in TESTS:
        b = statistics.median(r[key] for r in runs["base"])
        h = statistics.median(r[key] for r in runs["head"])
        result["median_s"][key] = {"base": b, "head": h, "speedup": b / h}
        lines.append(f"| {label} | {b:.3f} | {h:.3f} | {b / h:.2f}x |")
    save("replay_ab", result)
    print(json.dumps(result["median_s"], indent=1))
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--edits", type=int, default=40_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--instants", type=int, default=200)
    ap.add_argument("--checkouts", type=Path, default=Path(tempfile.gettempdir()) / "otlake-stage-speed")
    a = ap.parse_args()
    main(a.base, a.reps, a.edits, a.queries, a.instants, a.checkouts)
