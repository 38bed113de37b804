"""Each stage run on the embedded defaults: the warehouse's DuckDB file as the store, the local engine.

The stage logic lives in the package that owns it (DESIGN.md); here it is only wired to run_stage.
"""

from __future__ import annotations

from collections.abc import Callable

from warehouse.store import Warehouse
from warehouse.stores import DuckDBStore
from warehouse.timetravel import require_repls
from warehouse.verify import VerifyReport, VerifyStage

from .pipeline import LocalEngine, run_stage


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
