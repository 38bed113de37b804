"""The `runs` table: one row per stage run, with parameters, reconciliation and timings."""

from __future__ import annotations

import uuid

import orjson


def start_run(con, stage: str, params: dict) -> str:
    """Record a run as started; returns its id."""
    run_id = f"{stage}-{uuid.uuid4().hex[:12]}"
    con.execute(
        "INSERT INTO runs (run_id, stage, status, started_at, params) VALUES (?, ?, 'running', now(), ?)",
        [run_id, stage, orjson.dumps(params).decode()],
    )
    return run_id


def finish_run(con, run_id: str, status: str, reconciliation: dict, timings: dict) -> None:
    """Record how a run ended."""
    con.execute(
        "UPDATE runs SET status = ?, finished_at = now(), reconciliation = ?, timings = ? WHERE run_id = ?",
        [status, orjson.dumps(reconciliation).decode(), orjson.dumps(timings).decode(), run_id],
    )
