"""Each stage run on the embedded defaults: the warehouse's DuckDB file as the store, the local engine.

The stage logic lives in the package that owns it (DESIGN.md); here it is only wired to run_stage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from lsp_runner.pool import LspPool
from synth.pairs import PairsOptions, PairsReport, PairsStage
from synth.stage import SourceReport, SynthOptions, SynthReport, SynthStage
from warehouse.store import Warehouse
from warehouse.stores import DuckDBStore
from warehouse.timetravel import require_repls
from warehouse.verify import VerifyReport, VerifyStage

from .pipeline import LocalEngine, run_stage

__all__ = ["PairsOptions", "PairsReport", "SynthOptions", "SynthReport", "build_pairs", "run_synth", "verify"]


def verify(wh: Warehouse, repl_ids: list[str] | None = None,
           progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Check every snapshot event of the given repls (all by default); mismatches go to quarantine.

    UnknownRepl (before any run is recorded) if one of repl_ids has no stored event.
    """
    if repl_ids:
        require_repls(wh.con, repl_ids)
    run = run_stage(VerifyStage(repl_ids), DuckDBStore(wh.con), LocalEngine(), {"repls": repl_ids},
                    progress=(lambda done, total: progress(1)) if progress else None)
    report = VerifyReport(run.run_id, repls=run.extra.get("repls", 0), snapshots=run.extra.get("snapshots", 0),
                          matched=run.extra.get("matched", 0))
    report.mismatches = run.details.get("mismatches", [])
    report.projection_errors = run.details.get("projection_error_list", [])
    return report


def build_pairs(wh: Warehouse, options: PairsOptions | None = None,
                progress: Callable[[int, int], None] | None = None) -> PairsReport:
    """Decide every logged diagnostic not decided yet (DESIGN.md: the pairs stage); returns the reconciliation.

    The checker is a pool of `options.workers` warm pyright servers plus ruff; progress(repls done, repls)."""
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
