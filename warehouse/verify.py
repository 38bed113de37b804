"""`verify`: replay every repl from its stored events and compare with its snapshot events.

The replay folds the `events` table (the source of truth) with ot_replay; at
each repl's end it also checks the derived tables (checkpoints + ot_ops, as
file_at reads them) against the replay, so a bad projection shows up too.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from events.errors import BadEvent
from events.validate import validate_event
from ot_replay.replay import apply_event
from ot_replay.state import ReplFiles

from .runs import finish_run, start_run
from .schema import KEYS
from .store import Warehouse
from .timetravel import require_repls


@dataclass
class VerifyReport:
    """Snapshots checked = matched + mismatched; repls whose derived tables disagree with the replay."""

    run_id: str
    repls: int = 0
    snapshots: int = 0
    matched: int = 0
    mismatches: list[dict] = field(default_factory=list)
    projection_errors: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"repls": self.repls, "snapshots": self.snapshots, "matched": self.matched,
                "mismatched": len(self.mismatches), "projection_errors": len(self.projection_errors)}

    def ok(self) -> bool:
        return not self.mismatches and not self.projection_errors


def _describe(expected: dict[str, str], actual: dict[str, str | None]) -> str:
    parts = []
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    if missing:
        parts.append(f"missing after replay: {', '.join(missing[:5])}")
    if extra:
        parts.append(f"only in replay: {', '.join(extra[:5])}")
    for path in sorted(set(expected) & set(actual)):
        got = actual[path]
        if got is None:
            parts.append(f"{path}: content unknown (its stream broke; see quarantine)")
        elif got != expected[path]:
            a, b = expected[path].splitlines(), got.splitlines()
            line = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            diff = list(difflib.unified_diff(a[line:line + 1], b[line:line + 1], lineterm="", n=0))[2:]
            parts.append(f"{path}: differs from line {line + 1}: " + " | ".join(diff)[:200])
    return "; ".join(parts)


def verify(wh: Warehouse, repl_ids: list[str] | None = None,
           progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Check every snapshot event of the given repls (all by default); mismatches go to quarantine.

    UnknownRepl (before any run is recorded) if one of repl_ids has no stored event.
    """
    con = wh.con
    if repl_ids:
        require_repls(con, repl_ids)
    run_id = start_run(con, "verify", {"repls": repl_ids})
    report = VerifyReport(run_id)
    if repl_ids is None:
        repl_ids = [r for (r,) in con.execute("SELECT DISTINCT repl_id FROM events ORDER BY 1").fetchall()]
    travel = wh.travel()
    try:
        for repl_id in repl_ids:
            _verify_repl(wh, travel, repl_id, report)
            report.repls += 1
            if progress:
                progress(1)
    finally:
        travel.cur.close()
    _check_keys(con, repl_ids, report)
    con.execute("BEGIN TRANSACTION")
    if repl_ids:
        con.execute("DELETE FROM quarantine WHERE source = 'verify' AND list_contains(?, repl_id)", [repl_ids])
    for m in report.mismatches + report.projection_errors:
        con.execute(
            """INSERT INTO quarantine (source, key, repl_id, seq, origin, error_kind, message, raw, run_id,
                                      quarantined_at)
               VALUES ('verify', ?, ?, ?, 'events', ?, ?, NULL, ?, now()) ON CONFLICT DO NOTHING""",
            [f"{m['repl_id']}/{m['seq']}/{m['kind']}", m["repl_id"], m["seq"], m["kind"], m["message"], run_id],
        )
    con.execute("COMMIT")
    finish_run(con, run_id, "done", report.as_dict(), {})
    return report


def _check_keys(con, repl_ids: list[str], report: VerifyReport) -> None:
    """Every key of schema.KEYS unique: ingest keeps them so (they are not DuckDB constraints), checked here."""
    if not repl_ids:
        return
    for table, key in KEYS.items():
        cols = ", ".join(key)
        for repl_id, first, n in con.execute(
                f"""SELECT repl_id, min({key[1]}), count(*) FROM (
                      SELECT {cols} FROM {table} WHERE list_contains(?, repl_id) GROUP BY {cols} HAVING count(*) > 1)
                    GROUP BY repl_id ORDER BY repl_id""", [repl_ids]).fetchall():
            report.projection_errors.append({
                "repl_id": repl_id, "seq": first if key[1] == "seq" else None, "kind": f"duplicate_key_{table}",
                "message": f"{n} keys ({cols}) of {table} occur more than once (the first {key[1]} is {first})"})


def _verify_repl(wh: Warehouse, travel, repl_id: str, report: VerifyReport) -> None:
    files = ReplFiles(repl_id)
    last_us = None
    last_seq = None
    rows = wh.con.execute(
        "SELECT seq, event, epoch_us(ts) FROM events WHERE repl_id = ? ORDER BY seq", [repl_id]
    ).fetchall()
    breaks = wh.con.execute(
        "SELECT seq, file_id, path, error_kind, epoch_us(ts) FROM file_breaks WHERE repl_id = ? ORDER BY seq",
        [repl_id],
    ).fetchall()
    checkpoints = {(f, v): c for f, v, c in wh.con.execute(
        "SELECT file_id, version, content FROM checkpoints WHERE repl_id = ?", [repl_id]).fetchall()}
    for seq, text, us in rows:
        while breaks and breaks[0][0] < seq:  # a quarantined bad packet came before this event
            bseq, file_id, path, kind, _ = breaks.pop(0)
            files.mark_broken(file_id, path, BadEvent(kind, "quarantined packet", repl_id=repl_id, seq=bseq))
        ev = orjson.loads(text)
        kind = ev["kind"]
        last_seq, last_us = seq, us if last_us is None or us > last_us else last_us
        if kind == "snapshot":
            report.snapshots += 1
            actual = files.snapshot()
            if actual == ev["files"]:
                report.matched += 1
            else:
                report.mismatches.append({"repl_id": repl_id, "seq": seq, "kind": "snapshot_mismatch",
                                          "message": _describe(ev["files"], actual)})
            continue
        if kind not in ("ot", "file"):
            continue
        try:
            state = apply_event(files, validate_event(ev))
        except BadEvent as e:  # stored events were checked at ingest; this means the store is damaged
            report.projection_errors.append({"repl_id": repl_id, "seq": seq, "kind": "replay_error",
                                             "message": str(e)})
            return
        stored = checkpoints.get((state.file_id, state.version)) if state is not None else None
        if stored is not None and stored != state.buffer.text():
            report.projection_errors.append({
                "repl_id": repl_id, "seq": seq, "kind": "checkpoint_mismatch",
                "message": f"checkpoint of {state.path} (file {state.file_id}) at version {state.version} "
                           "differs from the replay of events"})
    for bseq, file_id, path, kind, bus in breaks:
        files.mark_broken(file_id, path, BadEvent(kind, "quarantined packet", repl_id=repl_id, seq=bseq))
        last_us = bus if last_us is None or bus > last_us else last_us
    if last_us is None:
        return
    replayed = files.snapshot()
    derived = travel.files_at(repl_id, last_us)
    if derived != replayed:
        report.projection_errors.append({
            "repl_id": repl_id, "seq": last_seq, "kind": "projection_mismatch",
            "message": "derived tables (checkpoints + ot_ops) disagree with the replay of events: "
                       + _describe({p: t for p, t in replayed.items() if t is not None}, derived),
        })
