"""`verify`: replay every repl from its stored events and compare with its snapshot events.

The replay folds the `events` table (the source of truth) with
ot_replay.replay.EventReplay; it also checks the derived tables (their
ot_replay.timeline.Timeline) against it: every checkpoint at its version,
and at the repl's end the op stream and path bindings (what file_at reads),
so a bad projection shows up too. A stage of the pipeline contract
(`VerifyStage`; otlake.stages.verify runs it on the embedded defaults).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from events.stages import Context, Partition, StageResult
from ot_replay.replay import EventReplay
from ot_replay.timeline import Timeline, timestamps_us

from .schema import KEYS


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


class VerifyStage:
    """The verify stage (events.stages contract): one repl per partition, its quarantine rows replaced.

    Records: each snapshot checked, and each repl's projection (checkpoints, op stream and keys against the
    replay of events); a mismatch or a projection with errors is quarantined, the rest count out.
    """

    name = "verify"
    reads = ("events", "file_breaks", "checkpoints", "path_events", "ot_ops", "quarantine")
    writes = ("quarantine",)

    def __init__(self, repl_ids: list[str] | None = None) -> None:
        self.repl_ids = repl_ids

    def pending(self, store, params) -> list[str]:
        if self.repl_ids is not None:
            return list(self.repl_ids)
        ids = pa.concat_arrays([b.column(0) for b in store.read("events", columns=["repl_id"])] or
                               [pa.array([], pa.string())])
        return sorted(pc.unique(ids).to_pylist())

    def process(self, part: Partition, ctx: Context) -> StageResult:
        report = VerifyReport("")
        t = part.tables
        _verify_repl(part.key, t, report)
        _check_keys(part.key, t, report)
        found = report.mismatches + report.projection_errors
        keys = [f"{m['repl_id']}/{m['seq']}/{m['kind']}" for m in found]
        quarantine = pa.table({
            "source": pa.array(["verify"] * len(found), pa.string()), "key": pa.array(keys, pa.string()),
            "repl_id": pa.array([m["repl_id"] for m in found], pa.string()),
            "seq": pa.array([m["seq"] for m in found], pa.int64()),
            "origin": pa.array(["events"] * len(found), pa.string()),
            "error_kind": pa.array([m["kind"] for m in found], pa.string()),
            "message": pa.array([m["message"] for m in found], pa.string())})
        quarantine = quarantine.take(pa.array(_first_per_key(keys), pa.int64()))  # the first error of a key stands
        old = t["quarantine"]
        new_keys = set(keys)
        stale = [k for s, k in zip(old.column("source").to_pylist(), old.column("key").to_pylist(), strict=True)
                 if s == "verify" and k not in new_keys]
        projection_bad = 1 if report.projection_errors else 0
        return StageResult(
            quarantine=quarantine,
            deletes={"quarantine": pa.table({"source": ["verify"] * len(stale), "key": stale})} if stale else {},
            count_in=report.snapshots + 1, count_out=report.matched + 1 - projection_bad,
            quarantined_records=len(report.mismatches) + projection_bad,
            extra={"repls": 1, "snapshots": report.snapshots, "matched": report.matched,
                   "mismatched": len(report.mismatches), "projection_errors": len(report.projection_errors),
                   "mismatches": report.mismatches, "projection_error_list": report.projection_errors})

    def reduce(self, results, ctx) -> None:
        return None


def _first_per_key(keys: list[str]) -> list[int]:
    seen: dict[str, int] = {}
    for n, key in enumerate(keys):
        seen.setdefault(key, n)
    return sorted(seen.values())


def _check_keys(repl_id: str, tables, report: VerifyReport) -> None:
    """Every key of schema.KEYS unique: ingest keeps them so (they are not DuckDB constraints), checked here."""
    for table, key in KEYS.items():
        rows = tables.get(table)
        if rows is None:
            continue
        counted = rows.select(list(key)).group_by(list(key)).aggregate([([], "count_all")])
        repeated = counted.filter(pc.greater(counted.column("count_all"), 1))
        if repeated.num_rows:
            first = pc.min(repeated.column(key[1])).as_py()
            cols = ", ".join(key)
            report.projection_errors.append({
                "repl_id": repl_id, "seq": first if key[1] == "seq" else None, "kind": f"duplicate_key_{table}",
                "message": f"{repeated.num_rows} keys ({cols}) of {table} occur more than once "
                           f"(the first {key[1]} is {first})"})


def _verify_repl(repl_id: str, tables, report: VerifyReport) -> None:
    """Replay the repl's event log (ot_replay.replay.EventReplay): each snapshot event against the files
    then, each checkpoint against its version, and the end against the derived tables' Timeline."""
    events = tables["events"].sort_by("seq")
    rows = ((seq, us, orjson.loads(text)) for seq, text, us in zip(
        events.column("seq").to_pylist(), events.column("event").to_pylist(), timestamps_us(events.column("ts")),
        strict=True))
    b = tables["file_breaks"]
    breaks = list(zip(b.column("seq").to_pylist(), b.column("file_id").to_pylist(), b.column("path").to_pylist(),
                      b.column("error_kind").to_pylist(), timestamps_us(b.column("ts")), strict=True))
    c = tables["checkpoints"]
    checkpoints = dict(zip(zip(c.column("file_id").to_pylist(), c.column("version").to_pylist(), strict=True),
                           c.column("content").to_pylist(), strict=True))
    replay = EventReplay(repl_id, rows, breaks)
    for step in replay:
        if step.error is not None:  # stored events were checked at ingest; this means the store is damaged
            report.projection_errors.append({"repl_id": repl_id, "seq": step.seq, "kind": "replay_error",
                                             "message": str(step.error)})
            return
        if step.event["kind"] == "snapshot":
            report.snapshots += 1
            actual = step.files.snapshot()
            if actual == step.event["files"]:
                report.matched += 1
            else:
                report.mismatches.append({"repl_id": repl_id, "seq": step.seq, "kind": "snapshot_mismatch",
                                          "message": _describe(step.event["files"], actual)})
            continue
        state = step.state
        stored = checkpoints.get((state.file_id, state.version)) if state is not None else None
        if stored is not None and stored != state.buffer.text():
            report.projection_errors.append({
                "repl_id": repl_id, "seq": step.seq, "kind": "checkpoint_mismatch",
                "message": f"checkpoint of {state.path} (file {state.file_id}) at version {state.version} "
                           "differs from the replay of events"})
    if replay.last_us is None:
        return
    replayed = replay.files.snapshot()
    derived = Timeline.from_partition(repl_id, tables).states_at([replay.last_us])[replay.last_us]
    if derived != replayed:
        report.projection_errors.append({
            "repl_id": repl_id, "seq": replay.last_seq, "kind": "projection_mismatch",
            "message": "derived tables (checkpoints + ot_ops) disagree with the replay of events: "
                       + _describe({p: t for p, t in replayed.items() if t is not None}, derived),
        })
