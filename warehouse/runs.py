"""The `runs` table: one row per stage run, with parameters, reconciliation and timings (warehouse.stores.RunLog)."""

from __future__ import annotations

from .stores import DuckDBRunLog


def start_run(con, stage: str, params: dict) -> str:
    """Record a run as started; returns its id."""
    return DuckDBRunLog(con).start(stage, params)


def finish_run(con, run_id: str, status: str, reconciliation: dict, timings: dict) -> None:
    """Record how a run ended."""
    DuckDBRunLog(con).finish(run_id, status, reconciliation, timings)
