"""The sandbox's cost per item: `oracle` on every DebugBench record at a base commit and at this tree, same run.

Each round runs, in a fresh process per tree (PYTHONPATH = that tree, the same environment), what
`otlake eval run --bench debugbench --model oracle` does into a fresh warehouse, alternating the two trees
so the machine's drift falls on both; medians over the rounds. Reported: eval items/s, and the sandboxed
part alone (the references' tests and the candidates' tests) in ms per item. The base tree is a
`git worktree` of --base (default: the commit before the unforgeable-eval sandbox).

`python -m bench.sandbox_cost --base 02db57d --rounds 3`; results in bench-data/sandbox_cost.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from otlake.dataset_cli import DEBUGBENCH

from .common import save

REPO = Path(__file__).resolve().parent.parent
ONE_RUN = """
import json, sys, tempfile
from bench.eval_repair import one
from eval.models import resolve_model
from eval.run import RunOptions
from lsp_runner.pool import LspPool
with tempfile.TemporaryDirectory() as home, LspPool(size=1) as pool:
    got = one(home, resolve_model("oracle"), RunOptions(), pool)
print("RESULT " + json.dumps({k: got[k] for k in ("items", "seconds", "items_per_s", "timings", "metrics")}))
"""


def run_tree(tree: Path) -> dict:
    # the base worktree lives elsewhere: both read the DebugBench records of this checkout
    env = {**os.environ, "PYTHONPATH": str(tree),
           "OTLAKE_DEBUGBENCH": os.environ.get("OTLAKE_DEBUGBENCH") or str(DEBUGBENCH)}
    done = subprocess.run([sys.executable, "-c", ONE_RUN], cwd=tree, env=env, capture_output=True, text=True,
                          check=False, timeout=1800)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{tree}: the oracle run failed:\n{done.stderr[-3000:]}")
    got = json.loads(line.removeprefix("RESULT "))
    sandbox_s = got["timings"].get("reference_tests", 0) + got["timings"].get("tests", 0)
    got["sandbox_ms_per_item"] = round(1000 * sandbox_s / max(got["items"], 1), 2)
    return got


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.sandbox_cost")
    parser.add_argument("--base", default="02db57d", help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="otlake-base-")) / "tree"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), args.base], check=True,
                   capture_output=True)
    runs: dict[str, list[dict]] = {"base": [], "this": []}
    try:
        for n in range(args.rounds):
            for name, tree in (("base", base), ("this", REPO)) if n % 2 == 0 else (("this", REPO), ("base", base)):
                runs[name].append(run_tree(tree))
                print(json.dumps({"round": n, "tree": name, **{k: runs[name][-1][k] for k in
                                  ("items", "items_per_s", "sandbox_ms_per_item")}}), flush=True)
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], check=False,
                       capture_output=True)
        shutil.rmtree(base.parent, ignore_errors=True)
    summary = {name: {"items": got[0]["items"],
                      "items_per_s": statistics.median(r["items_per_s"] for r in got),
                      "sandbox_ms_per_item": statistics.median(r["sandbox_ms_per_item"] for r in got),
                      "functional": got[0]["metrics"].get("functional")} for name, got in runs.items()}
    summary["ratio_items_per_s"] = round(summary["this"]["items_per_s"] / summary["base"]["items_per_s"], 3)
    summary["ratio_sandbox_ms"] = round(summary["this"]["sandbox_ms_per_item"] / summary["base"]["sandbox_ms_per_item"],
                                        3)
    result = {"base": args.base, "rounds": args.rounds, "summary": summary, "runs": runs}
    save("sandbox_cost", result)
    print(json.dumps(summary, indent=1))
    return result


if __name__ == "__main__":
    main()
