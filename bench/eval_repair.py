"""Repair evals on the shared DebugBench subsets: oracle, noop and the local 0.5B model, every metric per subtype.

Runs `otlake.stages.run_eval` (what `otlake eval run` calls) into one
fresh warehouse under bench-data/eval_repair/: `oracle` and `noop` on every
record, then the local model (`otlake lm serve`'s Qwen2.5-Coder 0.5B,
started here on its own port) on a seeded sample of --limit items taken
round robin over the subtypes, once per few-shot count (demos: the bench's
items with the shortest reference diffs, left out of the judged items).
Per run: every metric overall, per category and per subtype; items/s and
seconds per item (wall, whole run: targets, model, checks and tests); the
share of items with derived tests and the reference's pass rate on them.

`python -m bench.eval_repair --limit 100 --fewshot 0,3`; results in bench-data/eval_repair.json.
"""

from __future__ import annotations

import argparse
import json
import shutil

from eval.metrics import METRICS
from eval.models import resolve_model
from eval.run import RunOptions
from local_lm.launcher import LocalServer, resolve
from lsp_runner.pool import LspPool
from otlake.stages import run_eval
from synth.lm import LmSettings
from warehouse.store import Warehouse

from .common import OUT, save

PORT = 8793


def one(home, model, options: RunOptions, pool: LspPool, fewshot: int = 0) -> dict:
    with Warehouse(home) as wh:
        report = run_eval(wh, "debugbench", [], model, options, 0, pool.check, out=None, fewshot=fewshot)
    items = report.metrics.get("items", 0)
    got = {"model": report.model, "run_id": report.run_id, "fewshot": fewshot, "items": items,
           "skipped": report.skipped, "seconds": round(report.seconds, 1),
           "seconds_per_item": round(report.seconds / max(items, 1), 3),
           "items_per_s": round(items / max(report.seconds, 1e-9), 3), "timings": report.result.seconds,
           "tests": report.result.tests, "metrics": report.metrics, "by_category": report.by_category,
           "by_subtype": report.by_subtype}
    print(json.dumps({k: got[k] for k in ("model", "fewshot", "items", "seconds_per_item")}), flush=True)
    return got




def markdown(results: dict) -> str:
    """Tables for BENCHMARKS.md: every run overall, then every metric per subtype for each run."""
    def pct(v) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    def head(first: str, extra: tuple[str, ...] = ()) -> str:
        columns = (first, "items", *METRICS, *extra)
        return "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns)

    out = [head("run", ("s per item", "items/s"))]
    for r in results["runs"]:
        name = f"{r['model']}" + (f", {r['fewshot']}-shot" if r["fewshot"] else "")
        m = r["metrics"]
        out.append(f"| {name} | {m.get('items', 0)} | " + " | ".join(
            pct(m.get(k)) + (f" ({m.get('functional_items')})" if k == "functional" else "") for k in METRICS)
            + f" | {r['seconds_per_item']} | {r['items_per_s']} |")
    for r in results["runs"]:
        name = f"{r['model']}" + (f", {r['fewshot']}-shot" if r["fewshot"] else "")
        out += ["", f"**{name}** per subtype", "", head("subtype")]
        for subtype, m in sorted(r["by_subtype"].items()):
            out.append(f"| {subtype} | {m['items']} | " + " | ".join(pct(m.get(k)) for k in METRICS) + " |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.eval_repair")
    parser.add_argument("--limit", type=int, default=100, help="items for the local model (all for oracle/noop)")
    parser.add_argument("--fewshot", default="0,3")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--no-lm", action="store_true")
    args = parser.parse_args(argv)
    home = OUT / "eval_repair"
    shutil.rmtree(home, ignore_errors=True)
    results: dict = {"limit": args.limit, "runs": []}
    with LspPool(size=1) as pool:
        for name in ("oracle", "noop"):
            results["runs"].append(one(home, resolve_model(name), RunOptions(), pool))
        if not args.no_lm:
            record = resolve(args.model)
            results.update(lm=record.name, lm_sha256=record.sha256)
            with LocalServer(record, port=PORT, parallel=1, ctx=16384, startup_s=300) as server:
                for k in (int(x) for x in args.fewshot.split(",")):
                    settings = LmSettings(model=f"openai/{record.name}", api_base=server.api_base, concurrency=1,
                                          timeout_s=300.0, cache=False)
                    results["runs"].append(one(home, resolve_model(settings.model, settings),
                                               RunOptions(limit=args.limit), pool, fewshot=k))
    save("eval_repair", results)
    (OUT / "eval_repair.md").write_text(markdown(results))
    return results


if __name__ == "__main__":
    main()
