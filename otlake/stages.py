"""Each stage run on the embedded defaults: the warehouse's DuckDB file as the store, the local engine.

The stage logic lives in the package that owns it (DESIGN.md); here it is only wired to run_stage.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from warehouse.stores import DuckDBStore, Store, StoreError, read_table

from .pipeline import LocalEngine, run_stage

if TYPE_CHECKING:
    from eval.run import RunOptions
    from eval.stage import EvalReport, ReplitSet
    from synth.pairs import PairsOptions, PairsReport
    from synth.stage import SynthOptions, SynthReport
    from train.dataset import DatasetError, DatasetOptions, DatasetReport
    from warehouse.ingest import IngestReport
    from warehouse.store import Warehouse
    from warehouse.verify import VerifyReport

__all__ = ["DatasetError", "DatasetOptions", "DatasetReport", "EvalReport", "IngestReport", "PairsOptions",
           "PairsReport", "ReplitSet", "SynthOptions", "SynthReport", "build_dataset", "build_pairs", "ingest_events",
           "ingest_files", "make_replit", "run_eval", "run_synth", "verify"]

# the stages' own modules are imported when a stage runs (or a name below is asked for), so a command pays
# only for the stage it runs (`otlake ingest` does not import DSPy)
_EXPORTS = {"DatasetError": "train.dataset", "DatasetOptions": "train.dataset", "DatasetReport": "train.dataset",
            "EvalReport": "eval.stage", "IngestReport": "warehouse.ingest", "PairsOptions": "synth.pairs",
            "PairsReport": "synth.pairs", "ReplitSet": "eval.stage", "SynthOptions": "synth.stage",
            "SynthReport": "synth.stage"}


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def ingest_files(wh: Warehouse, paths: list[Path], progress: Callable[[int], None] | None = None,
                 checkpoint_every: int | None = None, chunk_records: int | None = None) -> IngestReport:
    """Ingest event files (JSONL, JSONL.gz or Parquet) and record the run (warehouse.ingest.IngestStage);
    progress(records) after each chunk. The next chunk is read while one is merged."""
    from warehouse.ingest import CHUNK_RECORDS, file_chunks

    chunks = file_chunks(paths, chunk_records or CHUNK_RECORDS)
    return _ingest(wh, chunks, {"files": [_text(str(p)) for p in paths]}, progress, checkpoint_every, ahead=True)


def ingest_events(wh: Warehouse, events, origin: str = "python", checkpoint_every: int | None = None,
                  chunk_records: int | None = None) -> IngestReport:
    """Ingest event dicts given from Python (the same checks as files). The caller's iterable is read on this
    thread, in order: it may use the connection or thread-local state."""
    from warehouse.ingest import CHUNK_RECORDS, event_chunks

    chunks = event_chunks(events, origin, chunk_records or CHUNK_RECORDS)
    return _ingest(wh, chunks, {"origin": origin}, None, checkpoint_every, ahead=False)


def _text(value: str) -> str:
    from events.validate import storable_text

    return storable_text(value)  # a file name need not be UTF-8


def _ingest(wh: Warehouse, chunks, params: dict, progress, requested_every: int | None, ahead: bool) -> IngestReport:
    from warehouse.ingest import IngestReport, IngestStage, checkpoint_every, no_gc

    store = DuckDBStore(wh.con)
    every = checkpoint_every(store, requested_every)
    with no_gc():
        run = run_stage(IngestStage(chunks, every, progress), store, LocalEngine(ahead=ahead),
                        {**params, "checkpoint_every": every})
    return IngestReport.from_run(run)


def verify(wh: Warehouse, repl_ids: list[str] | None = None,
           progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Check every snapshot event of the given repls (all by default); mismatches go to quarantine;
    progress(repls done, repls).

    UnknownRepl (before any run is recorded) if one of repl_ids has no stored event.
    """
    from warehouse.timetravel import require_repls
    from warehouse.verify import VerifyReport, VerifyStage

    if repl_ids:
        require_repls(wh.con, repl_ids)
    run = run_stage(VerifyStage(repl_ids), DuckDBStore(wh.con), LocalEngine(), {"repls": repl_ids},
                    progress=progress)
    report = VerifyReport(run.run_id, repls=run.extra.get("repls", 0), snapshots=run.extra.get("snapshots", 0),
                          matched=run.extra.get("matched", 0))
    report.mismatches = run.details.get("mismatches", [])
    report.projection_errors = run.details.get("projection_error_list", [])
    return report


def build_pairs(wh: Warehouse, options: PairsOptions | None = None,
                progress: Callable[[int, int], None] | None = None) -> PairsReport:
    """Decide every logged diagnostic not decided yet (DESIGN.md: the pairs stage); returns the reconciliation.

    The checker is a pool of `options.workers` warm pyright servers plus ruff; progress(repls done, repls)."""
    from lsp_runner.pool import LspPool
    from synth.pairs import PairsOptions, PairsReport, PairsStage

    options = options or PairsOptions()
    params = {"repls": list(options.repls), "since_us": options.since_us, "workers": options.workers,
              "stylistic": list(options.stylistic), "pyright": options.config.pyrightconfig(),
              "ruff": options.config.ruff_args(), "max_file_bytes": options.config.max_file_bytes,
              "batch_snapshots": options.batch_snapshots, "timeout_s": options.timeout_s, "now_us": options.now_us}
    stage = PairsStage(options)
    with LspPool(size=options.workers, config=options.config, timeout_s=options.timeout_s) as pool:
        run = run_stage(stage, DuckDBStore(wh.con), LocalEngine(), params, now_us=options.now_us, checker=pool,
                        progress=progress)
        stats = pool.stats.as_dict()
    report = PairsReport.from_run(run)
    report.lsp = stats
    return report


def run_synth(wh: Warehouse, options: SynthOptions, progress: Callable[[int, int], None] | None = None) -> SynthReport:
    """Make and verify diffs for every pair that lacks one from each requested source (DESIGN.md: synth).

    One run of SynthStage per source, in the order given (user fixes first: the LM's few-shot pool is read
    from them); the checker is one pool of `options.workers` warm pyright servers plus ruff, the LM
    `options.lm`. progress(repls done, repls) per source."""
    from lsp_runner.pool import LspPool
    from synth.stage import SourceReport, SynthReport, SynthStage

    stages = [SynthStage(source, options) for source in options.sources]  # unknown sources refused first
    params = {"limit": options.limit, "judge": options.judge,
              "model": getattr(options.lm, "model", None), "workers": options.workers,
              "fewshot": options.fewshot, "pairs": len(options.pair_ids) if options.pair_ids is not None else None,
              "api_base": getattr(options.lm, "api_base", None),
              "temperature": getattr(options.lm, "temperature", None),
              "max_tokens": getattr(options.lm, "max_tokens", None)}
    report = SynthReport("")
    run_ids = []
    with LspPool(size=options.workers, config=options.config) as pool:
        for stage in stages:
            run = run_stage(stage, DuckDBStore(wh.con), LocalEngine(), {"sources": [stage.source], **params},
                            checker=pool, lm=options.lm, progress=progress)
            run_ids.append(run.run_id)
            report.already_done += run.extra.get("already_done", 0)
            report.seconds += run.seconds
            report.step_seconds.update(run.steps)
            report.by_source[stage.source] = SourceReport(
                pairs=run.count_in, accepted=run.extra.get("accepted", 0),
                no_candidate=Counter(run.extra.get("no_candidate", {})), deferred=Counter(run.dropped),
                verifications=list(run.details.get("verifications", [])),
                prompt_tokens=run.extra.get("prompt_tokens", 0),
                completion_tokens=run.extra.get("completion_tokens", 0))
    report.run_id = ", ".join(run_ids)
    report.verify_seconds = report.step_seconds.get("verify", 0.0)
    return report


def build_dataset(wh: Warehouse, name: str, out: str | os.PathLike, options: DatasetOptions | None = None,
                  progress: Callable[[int, int], None] | None = None) -> DatasetReport:
    """Build dataset `name` into folder `out` and register it (DESIGN.md: the dataset stage).

    ConfigError/DatasetError before any run is recorded for a build that cannot be done as asked. The eval
    sets frozen in this warehouse (`otlake eval make-replit`) are always decontaminated against. With
    `options.workers` > 1, big builds run the per-example steps in a process pool (the local engine's)."""
    from synth.hygiene.decontam import load_eval_set
    from train.dataset import DatasetOptions, DatasetStage, check_build
    from train.export import staging_folder
    from warehouse.dataset_schema import create_dataset_tables

    options = options or DatasetOptions()
    create_dataset_tables(wh.con)
    store = DuckDBStore(wh.con)
    out = Path(out).absolute()
    selected = check_build(store, name, options)
    frozen = _frozen_eval_sets(store)
    if frozen:
        options = dataclasses.replace(options, eval_sets=tuple(dict.fromkeys([*options.eval_sets, *frozen])))
    eval_sets = [load_eval_set(p) for p in options.eval_sets]
    params = {**options.params(), "eval_sets": [{"name": s.name, "path": str(Path(p).absolute()),
                                                  "sha256": s.sha256} for s, p in zip(eval_sets, options.eval_sets)]}
    tmp = staging_folder(out, options.overwrite)
    stage = DatasetStage(name, out, tmp, options, eval_sets, params)
    stage.selected = selected
    engine = LocalEngine(options.workers, task_rows=options.batch, inline_rows=4 * options.batch)
    try:
        run = run_stage(stage, store, engine, {"name": name, "out": str(out), **params}, progress=progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # moved into place when the build succeeded
    stage.report.run_id, stage.report.seconds = run.run_id, run.seconds
    return stage.report


def _frozen_eval_sets(store: Store) -> list[str]:
    """The files of every frozen eval set that still exists."""
    try:
        sets = read_table(store, "eval_sets", columns=["name", "path"]).sort_by("name")
    except StoreError:  # a warehouse that never froze one has no eval tables
        return []
    return [p for p in sets.column("path").to_pylist() if Path(p).is_file()]


def run_eval(wh: Warehouse, bench: str, data: list[str], model, options: RunOptions, seed: int, check,
             progress: Callable[[int, int], None] | None = None, out: str | os.PathLike | None = None,
             fewshot: int = 0) -> EvalReport:
    """Judge `model` on a bench and store the run (eval.stage.EvalStage); `check` runs the meta-LSP on snapshots
    (a Checker, or its `check` function). progress(batches done, batches).

    With `fewshot` > 0 (DSPy models), that many items of the bench become demos (their reference diff shown
    before every prompt) and are left out of the items judged.
    """
    from eval.errors import EvalError
    from eval.run import select
    from eval.stage import EvalStage, fewshot_demos, load_bench
    from warehouse.eval_schema import create_eval_tables

    create_eval_tables(wh.con)
    store = DuckDBStore(wh.con)
    paths = list(data)
    if bench == "debugbench" and not paths:
        from .dataset_cli import DEBUGBENCH

        paths = [os.environ.get("OTLAKE_DEBUGBENCH") or str(DEBUGBENCH)]
    items, skipped, files = load_bench(store, bench, paths)
    if fewshot:
        if not hasattr(model, "fewshot"):
            raise EvalError(f"--fewshot: model {model.name} takes no demos (only DSPy models do)")
        demos = fewshot_demos(items, fewshot, getattr(check, "check", check))
        model.fewshot = demos
        taken = {d.id for d in demos}
        items = [i for i in items if i.id not in taken]
    chosen = select(items, options.limit, seed)
    stage = EvalStage(bench, files, chosen, skipped, model, options, None if out is None else str(out))
    params = {"bench": bench, "data": files, "model": model.name, "samples": options.samples, "limit": options.limit,
              "seed": seed, "fewshot": fewshot, "sampling": dataclasses.asdict(options.sampling),
              "batch": options.batch}
    run = run_stage(stage, store, LocalEngine(), params, checker=check, progress=progress)
    report = stage.report
    report.run_id, report.seconds = run.run_id, run.seconds
    return report


def make_replit(wh: Warehouse, name: str, out: str | os.PathLike, per_rule: int, seed: int = 0,
                overwrite: bool = False, extra_sets: list[str] | tuple[str, ...] = (),
                progress: Callable[[int, int], None] | None = None) -> ReplitSet:
    """Freeze a held-out Replit-style eval set from the warehouse and register it in `eval_sets`
    (eval.stage.ReplitStage): decontaminated against every dataset built so far and `extra_sets`;
    progress(repls replayed, repls)."""
    from eval.errors import EvalError
    from eval.stage import ReplitStage
    from warehouse.dataset_schema import create_dataset_tables
    from warehouse.eval_schema import create_eval_tables

    create_eval_tables(wh.con)
    create_dataset_tables(wh.con)
    store = DuckDBStore(wh.con)
    if read_table(store, "eval_sets", {"name": name}, ["name"]).num_rows and not overwrite:
        raise EvalError(f"eval set {name!r} exists: choose another name or pass --overwrite")
    out = Path(out)
    if out.exists() and not overwrite:
        raise EvalError(f"{out} exists: choose another file or pass --overwrite")
    # every training set built so far: its examples' pairs are out, and its texts decontaminate the rest
    folders = sorted(read_table(store, "datasets", columns=["out_dir"]).column("out_dir").to_pylist())
    against = [str(Path(d, f"{split}.jsonl")) for d in folders for split in ("train", "eval")
               if Path(d, f"{split}.jsonl").is_file()] + list(extra_sets)
    stage = ReplitStage(name, out, per_rule, seed, against)
    stage.choose(store)  # EvalError, before any run is recorded, when no pair qualifies
    run_stage(stage, store, LocalEngine(), {"name": name, "out": str(out.absolute()), **stage.params()},
              progress=progress)
    return stage.frozen
