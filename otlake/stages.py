"""Each stage run on the embedded defaults: the warehouse's DuckDB file as the store, the local engine.

The stage logic lives in the package that owns it (DESIGN.md); here it is only wired to run_stage.
"""

from __future__ import annotations

from collections.abc import Callable

from lsp_runner.pool import LspPool
from synth.pairs import PairsOptions, PairsReport, PairsStage
from warehouse.store import Warehouse
from warehouse.stores import DuckDBStore
from warehouse.timetravel import require_repls
from warehouse.verify import VerifyReport, VerifyStage

from .pipeline import LocalEngine, run_stage

__all__ = ["PairsOptions", "PairsReport", "build_pairs", "verify"]


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
