"""Did the pipeline's stages get slower? Each stage's throughput at a base commit and at the working tree, one run.

`python -m bench.stage_speed --base COMMIT [--reps 3] [--repls 20] [--seed 11]`

--base is required: the commit to compare against (any git revision: a hash, a tag, HEAD~1). "head"
is this working tree itself, uncommitted changes included, run by this Python; "base" is a worktree of
the base commit (under --checkouts, by default $TMPDIR/otlake-stage-speed/src-<hash>) with its own
locked environment (`uv sync --frozen`), made once and reused. Each side runs its own code in its own
checkout: a small script in a fresh process (bench.common.run_script), which tries each stage's newest
import location first and falls back to the older one (e.g. otlake.stages, then otlake.pairs).

One simulated log (events.simulator.simulate with the meta-LSP, --repls repls, seed --seed; cached in
bench-data/stage_speed/) goes through the stages, each on a fresh copy of the warehouse the stage
before left, in the order the pipeline runs them; each stage's wall time is taken around its call
alone (the warehouse opened before the clock starts, closed after it stops):

  ingest      events/s: records in / seconds of warehouse.ingest.ingest_files into a fresh warehouse
  pairs       diagnostics decided/s (diagnostics in, less those waiting for the next run) and
              snapshots/s (checked by the language servers) of build_pairs(wh, PairsOptions(workers=1))
  synth       pairs/s of run_synth(wh, SynthOptions()): `synth --source user`
  dataset     examples/s: selected accepted diffs / seconds of build_dataset (one worker; decontaminated
              against DebugBench when it is found, as `otlake dataset build` does)

Each side's stages run on that side's own output (base's synth on base's pairs), so the counts can
differ when a change alters what a stage keeps; the table shows them beside the rates. --reps
repetitions alternate the sides (base, head, then head, base, ...). A stage that fails on a side, or
that a checkout does not have, is reported so (and the stages after it skipped), not crashed on.

Per stage: the median rate of each side over the reps and head/base (above 1: the head is faster),
with the machine and both commits; bench-data/stage_speed.json holds every run, and the markdown
table printed last is ready for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import OUT, ROOT, checkout, machine, run_script, save

STAGES = ("ingest", "pairs", "synth", "dataset")
METRICS = (  # (stage, what the table calls it, unit, the count divided by the stage's seconds, what it counts)
    ("ingest", "ingest", "events/s", "records_in", "records"),
    ("pairs", "pairs", "diagnostics decided/s", "decided", "diagnostics"),
    ("pairs", "pairs", "snapshots/s", "snapshots", "snapshots"),
    ("synth", "synth --source user", "pairs/s", "pairs", "pairs"),
    ("dataset", "dataset build", "examples/s", "selected", "examples"),
)

# The stages, run by one checkout's own code in its own folder: argv = log, work folder, eval sets (JSON).
# Each stage's API is imported from its newest location first, then the older ones; a stage none of them
# has is "missing". Prints one JSON object: per stage, ok and its counts and seconds, or why not.
_SCRIPT = r'''
import importlib, json, shutil, sys, time, traceback
from pathlib import Path

log, work, eval_sets = Path(sys.argv[1]), Path(sys.argv[2]), tuple(json.loads(sys.argv[3]))


# where each stage's API is, newest first: the first module that has every name wins. Module names are
# strings on purpose: a repository-wide rewrite of `from otlake.x import` lines must not turn an old
# location into the new one (that broke synth's fallback once).
API = {
    "ingest": (("otlake.stages", "warehouse.ingest"), ("ingest_files",)),
    "pairs": (("otlake.stages", "otlake.pairs"), ("PairsOptions", "build_pairs")),
    "synth": (("otlake.stages", "synth.stage", "otlake.synth_stage"), ("SynthOptions", "run_synth")),
    "dataset": (("otlake.stages", "otlake.dataset"), ("DatasetOptions", "build_dataset")),
}


def load(stage):
    """The stage's API from the first of its modules that has it; ImportError (every module's why) if none."""
    import importlib

    modules, names = API[stage]
    why = []
    for module in modules:
        try:
            found = importlib.import_module(module)
        except ImportError as e:
            why.append(f"{module}: {e}")
            continue
        missing = [n for n in names if not hasattr(found, n)]
        if not missing:
            return tuple(getattr(found, n) for n in names)
        why.append(f"{module} has no {', '.join(missing)}")
    raise ImportError("; ".join(why))


def fresh(name, source=None):
    """work/name: empty, or a copy of the warehouse the stage `source` left."""
    home = work / name
    shutil.rmtree(home, ignore_errors=True)
    if source:
        shutil.copytree(work / source, home)
    return home


def timed(home, call):
    """call(wh) on the warehouse at home; its result and its seconds (opening and closing not counted)."""
    from warehouse.store import Warehouse

    with Warehouse(home) as wh:
        started = time.perf_counter()
        report = call(wh)
        return report, time.perf_counter() - started


def ingest(api):
    (ingest_files,) = api
    r, s = timed(fresh("ingest"), lambda wh: ingest_files(wh, [log]))
    return {"seconds": s, "records_in": r.records_in, "stored": getattr(r, "stored", None),
            "quarantined": getattr(r, "quarantined", None)}


def pairs(api):
    PairsOptions, build_pairs = api
    r, s = timed(fresh("pairs", "ingest"), lambda wh: build_pairs(wh, PairsOptions(workers=1)))
    return {"seconds": s, "diagnostics_in": r.diagnostics_in, "waiting": r.waiting,
            "decided": r.diagnostics_in - r.waiting, "pairs": r.pairs, "snapshots": r.snapshots,
            "report_seconds": r.seconds}


def synth(api):
    SynthOptions, run_synth = api
    r, s = timed(fresh("synth", "pairs"), lambda wh: run_synth(wh, SynthOptions()))
    user = r.by_source["user"]
    return {"seconds": s, "pairs": user.pairs, "accepted": user.accepted, "report_seconds": r.seconds}


def dataset(api):
    DatasetOptions, build_dataset = api
    out = work / "dataset-out"
    shutil.rmtree(out, ignore_errors=True)
    options = DatasetOptions(eval_sets=eval_sets, workers=1, overwrite=True)
    r, s = timed(fresh("dataset", "synth"), lambda wh: build_dataset(wh, "stage-speed", out, options))
    return {"seconds": s, "selected": r.selected, "train": r.train, "eval": r.eval, "report_seconds": r.seconds}


def native():
    import importlib.util

    # the compiled fold moved from warehouse/ to ot_replay/: either, as the checkout has it
    fold = importlib.util.find_spec("ot_replay._fold") or importlib.util.find_spec("warehouse._fold")
    return fold is not None and importlib.util.find_spec("warehouse._scan") is not None


# every stage's modules imported before any clock starts: a checkout that imports them when a stage runs
# (otlake.stages does since 2026-12) would otherwise time its imports as the stage's work
for module in ("warehouse.ingest", "synth.pairs", "synth.stage", "train.dataset", "train.export",
               "synth.hygiene.decontam", "lsp_runner.pool", "eval.stage"):
    try:
        importlib.import_module(module)
    except ImportError:
        pass
result = {"python": sys.version.split()[0], "native_ingest": native()}
after = {"pairs": "ingest", "synth": "pairs", "dataset": "synth"}
for name, run in (("ingest", ingest), ("pairs", pairs), ("synth", synth), ("dataset", dataset)):
    before = after.get(name)
    if before and not result[before]["ok"]:
        result[name] = {"ok": False, "status": "skipped", "error": f"{before} did not run"}
        continue
    try:
        found = load(name)
    except ImportError as e:
        result[name] = {"ok": False, "status": "missing", "error": f"not in this checkout ({e})"}
        continue
    try:
        result[name] = {"ok": True, **run(found)}
    except Exception as e:
        result[name] = {"ok": False, "status": "failed", "error": f"{type(e).__name__}: {e}"[:400],
                        "traceback": traceback.format_exc()[-3000:]}
print(json.dumps(result))
'''


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def _sessions(repls: int, seed: int) -> Path:
    """The simulated log (meta-LSP diagnostics), made once per repls and seed."""
    from events.simulator import simulate, write_jsonl
    from lsp_runner.linter import MetaLspLinter

    folder = OUT / "stage_speed"
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"sessions-{repls}-{seed}-meta-lsp.jsonl"
    if not log.exists():
        started = time.perf_counter()
        write_jsonl(simulate(repls, seed, linter=MetaLspLinter(workers=2)), log)
        print(f"simulated {repls} repls (seed {seed}) in {time.perf_counter() - started:.0f} s -> {log}", flush=True)
    return log.resolve()


def _eval_sets() -> list[str]:
    """What `otlake dataset build` decontaminates against by default; none when DebugBench is not found."""
    from events.errors import ConfigError
    from otlake.dataset_cli import eval_set_paths

    try:
        return [str(Path(p).resolve()) for p in eval_set_paths(None, False, ())]
    except ConfigError:
        return []


def _run(side: str, src: Path | None, python: str, log: Path, eval_sets: list[str], setup_error: str | None) -> dict:
    """One run of every stage by one side's code; a run that could not start fails each stage."""
    if src is None:
        return {s: {"ok": False, "status": "failed", "error": setup_error} for s in STAGES}
    work = (OUT / "stage_speed" / "work" / side).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.setdefault("PYRIGHT_PYTHON_IGNORE_WARNINGS", "1")
    started = time.perf_counter()
    try:
        out = run_script(src, _SCRIPT, [log, work, json.dumps(eval_sets)], f"the {side} run", python=python, env=env)
    except (RuntimeError, OSError, ValueError, IndexError) as e:  # a crash, no Python, or no JSON line
        error = str(e).strip().splitlines()
        out = {s: {"ok": False, "status": "failed", "error": error[-1][:400] if error else repr(e),
                   "traceback": str(e)[-3000:]} for s in STAGES}
    out["wall_s"] = round(time.perf_counter() - started, 1)
    return out


def _side(runs: list[dict], stage: str, count: str) -> dict:
    """Median rate (count / seconds) of the runs where the stage ran, and why it did not in the others."""
    done = [r[stage] for r in runs if r[stage]["ok"]]
    out = {"runs_ok": len(done), "runs": len(runs)}
    if done:
        rates = [d[count] / d["seconds"] if d["seconds"] else 0.0 for d in done]
        out.update(median=statistics.median(rates), rates=[round(x, 3) for x in rates],
                   count=statistics.median(d[count] for d in done),
                   seconds=round(statistics.median(d["seconds"] for d in done), 3))
    errors = sorted({f"{r[stage]['status']}: {r[stage]['error']}" for r in runs if not r[stage]["ok"]})
    if errors:
        out["errors"] = errors
    return out


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _count(side: dict) -> str:
    if "count" not in side:
        return "-"
    return f"{side['count']:,.0f}" if side["count"] == int(side["count"]) else f"{side['count']:,.1f}"


def _cell(side: dict) -> str:
    if "median" not in side:  # e.g. "missing: not in this checkout (...)", "failed: DatasetError: ..."
        why = side["errors"][0]
        return (why if len(why) <= 80 else why[:77] + "...").replace("|", "\\|")
    return _fmt(side["median"]) + (f" ({side['runs_ok']} of {side['runs']} ran)" if "errors" in side else "")


def _table(result: dict) -> str:
    base, head = result["base"], result["head"]
    lines = [f"Stage speed: base `{base['commit'][:9]}` against head `{head['commit'][:9]}`"
             + (f" + {head['uncommitted_paths']} uncommitted paths (the working tree)" if head["uncommitted_paths"]
                else " (the working tree)")
             + f"; {result['repls']} repls, seed {result['seed']}, {result['reps']} run(s) a side, alternated; medians."
             f" {result['machine']}.", "",
             f"| stage | rate | base `{base['commit'][:9]}` | head | head/base | counted (base / head) |",
             "|---|---|---:|---:|---:|---|"]
    for m in result["stages"]:
        b, h = m["base"], m["head"]
        ratio = f"{m['head_over_base']:.2f}x" if m["head_over_base"] is not None else "-"
        lines.append(f"| {m['stage']} | {m['unit']} | {_cell(b)} | {_cell(h)} | {ratio} | "
                     f"{_count(b)} / {_count(h)} {m['counts']} |")
    return "\n".join(lines)


def main(base: str, reps: int = 3, repls: int = 20, seed: int = 11, checkouts: Path | None = None) -> dict:
    try:
        base_commit = _git("rev-parse", "--verify", "--quiet", f"{base}^{{commit}}")
    except subprocess.CalledProcessError:
        raise SystemExit(f"--base {base}: not a commit of this repository") from None
    head_commit = _git("rev-parse", "HEAD")
    # --no-optional-locks: `git status` must not write the index another process may be using
    changed = _git("--no-optional-locks", "status", "--porcelain").splitlines()
    log = _sessions(repls, seed)
    eval_sets = _eval_sets()
    checkouts = Path(checkouts or Path(tempfile.gettempdir()) / "otlake-stage-speed")
    src, setup_error = None, None
    try:
        src = checkout(base_commit, checkouts / f"src-{base_commit[:12]}")
    except (subprocess.CalledProcessError, OSError) as e:
        setup_error = f"no checkout of {base} with its environment: {e}"
        print(setup_error, file=sys.stderr)
    sides = {"base": (src, str(src / ".venv" / "bin" / "python") if src else ""), "head": (ROOT, sys.executable)}
    runs: dict[str, list[dict]] = {"base": [], "head": []}
    order = []
    for rep in range(reps):
        for side in ("base", "head") if rep % 2 == 0 else ("head", "base"):
            order.append(side)
            out = _run(side, *sides[side], log, eval_sets, setup_error)
            runs[side].append(out)
            print(f"rep {rep + 1}/{reps} {side}: " + ", ".join(
                f"{s} {out[s]['seconds']:.1f} s" if out[s]["ok"] else f"{s} {out[s]['status']}" for s in STAGES),
                flush=True)
    stages = []
    for stage, name, unit, count, counts in METRICS:
        b, h = _side(runs["base"], stage, count), _side(runs["head"], stage, count)
        ratio = h["median"] / b["median"] if "median" in b and "median" in h and b["median"] else None
        stages.append({"stage": name, "unit": unit, "count": count, "counts": counts, "base": b, "head": h,
                       "head_over_base": round(ratio, 3) if ratio is not None else None})
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?") if Path("/proc/cpuinfo").exists() else "?"
    result = {"cpu": cpu, "cores": os.cpu_count(), "repls": repls, "seed": seed, "reps": reps, "order": order,
              "log": str(log), "eval_sets": eval_sets,
              "base": {"rev": base, "commit": base_commit, "checkout": str(src) if src else None},
              "head": {"commit": head_commit, "checkout": str(ROOT), "uncommitted_paths": len(changed)},
              "stages": stages, "runs": runs}
    result["table"] = _table({**result, "machine": machine()})
    save("stage_speed", result)
    print()
    print(result["table"])
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, metavar="COMMIT", help="the git revision to compare the working tree to")
    ap.add_argument("--reps", type=int, default=3, help="runs a side, alternated (base, head, head, base, ...)")
    ap.add_argument("--repls", type=int, default=20, help="simulated repls")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--checkouts", type=Path, default=None,
                    help="folder for the base's worktree (default $TMPDIR/otlake-stage-speed)")
    a = ap.parse_args()
    main(a.base, a.reps, a.repls, a.seed, a.checkouts)
