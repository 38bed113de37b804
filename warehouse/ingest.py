"""Ingest event files into the warehouse: validate, dedup, project, write through Arrow.

Work goes in chunks of records; each chunk is one transaction, so a killed
run leaves whole chunks, and a rerun skips what is stored (same key, same
content) and resumes each repl's file state from the warehouse.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import orjson
import pyarrow as pa

from events.errors import BadEvent
from events.readers import Record, read_events
from events.validate import check_strings, validate_event
from ot_replay.state import FileState, ReplFiles
from ot_replay.buffer import TextBuffer

from .projector import (
    COLUMNS, STREAM_ERRORS, Projector, Rows, canonical, content_hash, quarantine_event, quarantine_key,
)
from .runs import finish_run, start_run
from .store import Warehouse
from .timetravel import TimeTravel

CHUNK_RECORDS = 200_000
DEFAULT_CHECKPOINT_EVERY = 256

_TYPES = {
    "ts": pa.timestamp("us", tz="UTC"), "seq": pa.int64(), "user_id": pa.int64(), "file_id": pa.int64(),
    "version": pa.int64(), "crc32": pa.uint64(), "event_hash": pa.uint64(), "start_line": pa.int32(),
    "start_character": pa.int32(), "end_line": pa.int32(), "end_character": pa.int32(),
    "severity": pa.int8(), "is_private": pa.bool_(), "has_code_action": pa.bool_(),
}


@dataclass
class IngestReport:
    """Reconciliation of one ingest run: records in = stored + duplicates + quarantined."""

    run_id: str
    records_in: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    already_quarantined: int = 0
    repls_rebuilt: int = 0
    by_error: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    seconds: float = 0.0

    def balanced(self) -> bool:
        return self.records_in == self.stored + self.duplicates + self.quarantined + self.already_quarantined

    def as_dict(self) -> dict:
        return {
            "records_in": self.records_in, "stored": self.stored, "duplicates": self.duplicates,
            "quarantined": self.quarantined, "already_quarantined": self.already_quarantined,
            "repls_rebuilt": self.repls_rebuilt, "quarantined_by_kind": dict(sorted(self.by_error.items())),
            "balanced": self.balanced(),
        }

    def summary(self) -> str:
        line = (f"in {self.records_in} = stored {self.stored} + duplicates {self.duplicates} "
                f"+ quarantined {self.quarantined} + already quarantined {self.already_quarantined}")
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.by_error.items()))
        return line + (f"  (quarantined: {kinds})" if kinds else "")


def _checkpoint_every(wh: Warehouse, requested: int | None) -> int:
    """K is fixed per warehouse at first ingest: file_at relies on checkpoints being K apart."""
    row = wh.con.execute("SELECT value FROM meta WHERE key = 'checkpoint_every'").fetchone()
    if row is not None:
        return int(row[0])
    every = requested or DEFAULT_CHECKPOINT_EVERY
    wh.con.execute("INSERT INTO meta VALUES ('checkpoint_every', ?)", [str(every)])
    return every


def ingest_files(wh: Warehouse, paths: list[Path], progress: Callable[[int], None] | None = None,
                 checkpoint_every: int | None = None, chunk_records: int = CHUNK_RECORDS) -> IngestReport:
    """Ingest event files (JSONL or Parquet) and record the run."""
    records = (r for p in paths for r in read_events(p))
    params = {"files": [str(p) for p in paths]}
    return ingest_records(wh, records, params, progress, checkpoint_every, chunk_records)


def ingest_events(wh: Warehouse, events: Iterable[dict], origin: str = "python", **kw) -> IngestReport:
    """Ingest event dicts given from Python (same checks as files)."""
    def records() -> Iterator[Record]:
        for i, ev in enumerate(events, 1):
            try:
                check_strings(ev)
            except BadEvent as e:
                yield Record(f"{origin}:{i}", None, e, repr(ev)[:10_000].encode("utf-8", "replace"))
                continue
            yield Record(f"{origin}:{i}", dict(ev), None, None)
    return ingest_records(wh, records(), {"origin": origin}, **kw)


def ingest_records(wh: Warehouse, records: Iterable[Record], params: dict,
                   progress: Callable[[int], None] | None = None, checkpoint_every: int | None = None,
                   chunk_records: int = CHUNK_RECORDS) -> IngestReport:
    """Ingest decoded records in chunks, one transaction per chunk."""
    every = _checkpoint_every(wh, checkpoint_every)
    run_id = start_run(wh.con, "ingest", {**params, "checkpoint_every": every})
    report = IngestReport(run_id)
    started = time.perf_counter()
    try:
        chunk: list[Record] = []
        for record in records:
            chunk.append(record)
            if len(chunk) >= chunk_records:
                _ingest_chunk(wh, chunk, report, every)
                if progress:
                    progress(len(chunk))
                chunk = []
        if chunk:
            _ingest_chunk(wh, chunk, report, every)
            if progress:
                progress(len(chunk))
    except BaseException:
        report.seconds = time.perf_counter() - started
        finish_run(wh.con, run_id, "failed", report.as_dict(), {"seconds": report.seconds})
        raise
    report.seconds = time.perf_counter() - started
    finish_run(wh.con, run_id, "done", report.as_dict(),
               {"seconds": round(report.seconds, 3),
                "records_per_second": round(report.records_in / report.seconds) if report.seconds else None})
    return report


def _ingest_chunk(wh: Warehouse, chunk: list[Record], report: IngestReport, every: int) -> None:
    rows = Rows()
    report.records_in += len(chunk)
    by_repl: dict[str, list[tuple[dict, str, str, int]]] = defaultdict(list)
    for record in chunk:
        raw = record.raw if record.raw is not None else _dumps(record.event)
        if record.error is not None:
            _quarantine_unidentified(rows, record.error, record.origin, raw)
            continue
        try:
            ev = validate_event(record.event, record.trusted)
        except BadEvent as e:
            if e.repl_id is not None and e.seq is not None:
                quarantine_event(rows, e, record.origin, raw.decode("utf-8", "replace"),
                                 quarantine_key(e.repl_id, e.seq, content_hash(raw)))
            else:
                _quarantine_unidentified(rows, e, record.origin, raw)
            continue
        by_repl[ev["repl_id"]].append((ev, record.origin, raw.decode("utf-8", "replace"), content_hash(raw)))

    con = wh.con
    con.execute("BEGIN TRANSACTION")
    try:
        known = _known(con, by_repl)
        for repl_id, items in by_repl.items():
            _ingest_repl(con, repl_id, items, known, rows, report, every)
        _write(con, rows, report)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _dumps(event) -> bytes:
    try:
        return orjson.dumps(event)
    except TypeError:  # e.g. an integer too large for JSON's usual range
        return repr(event)[:100_000].encode("utf-8", "replace")


def _quarantine_unidentified(rows: Rows, error: BadEvent, origin: str, raw: bytes) -> None:
    # no repl/seq to key on: the content hash keeps a re-ingest of the same line idempotent
    quarantine_event(rows, error, origin, raw.decode("utf-8", "replace"), f"line/{content_hash(raw):016x}")


def _known(con, by_repl: dict) -> dict:
    """What the warehouse already has for the chunk's repls: stored hashes, quarantine keys, last seq/ts."""
    keys = pa.table({
        "repl_id": pa.array([r for r, items in by_repl.items() for _ in items], pa.string()),
        "seq": pa.array([it[0]["seq"] for items in by_repl.values() for it in items], pa.int64()),
    })
    repls = pa.table({"repl_id": pa.array(list(by_repl), pa.string())})
    con.register("k", keys)
    con.register("r", repls)
    try:
        stored = con.execute(
            "SELECT e.repl_id, e.seq, e.event_hash FROM events e SEMI JOIN k ON e.repl_id = k.repl_id AND e.seq = k.seq"
        ).fetchall()
        qkeys = con.execute(
            "SELECT q.key FROM quarantine q SEMI JOIN k ON q.repl_id = k.repl_id AND q.seq = k.seq "
            "WHERE q.source = 'ingest'"
        ).fetchall()
        heads = con.execute(
            "SELECT e.repl_id, max(e.seq), max(epoch_us(e.ts)) FROM events e SEMI JOIN r ON e.repl_id = r.repl_id "
            "GROUP BY e.repl_id"
        ).fetchall()
    finally:
        con.unregister("k")
        con.unregister("r")
    return {
        "stored": {(r, s): h for r, s, h in stored},
        "quarantined": {q for (q,) in qkeys},
        "heads": {r: (s, u) for r, s, u in heads},
    }


def _ingest_repl(con, repl_id: str, items: list, known: dict, rows: Rows, report: IngestReport, every: int) -> None:
    stored, quarantined = known["stored"], known["quarantined"]
    fresh: dict[int, tuple] = {}
    for item in items:
        ev, origin, text, h = item
        seq = ev["seq"]
        qkey = quarantine_key(repl_id, seq, h)
        if stored.get((repl_id, seq)) == h or (seq in fresh and fresh[seq][3] == h) or (
            _same_content(con, repl_id, seq, ev, fresh.get(seq), (repl_id, seq) in stored)
        ):
            report.duplicates += 1
        elif qkey in quarantined:
            report.already_quarantined += 1
        elif (repl_id, seq) in stored or seq in fresh:
            error = BadEvent("duplicate_seq", "another event with this seq and different content came first",
                             repl_id=repl_id, seq=seq, path=ev.get("path"))
            quarantine_event(rows, error, origin, text, qkey)
            quarantined.add(qkey)
        else:
            fresh[seq] = item
    if not fresh:
        return
    ordered = [fresh[s] for s in sorted(fresh)]
    head = known["heads"].get(repl_id)
    if head is None:
        projector = Projector(repl_id, rows, checkpoint_every=every)
    elif ordered[0][0]["seq"] > head[0]:
        projector = Projector(repl_id, rows, _resume_files(con, repl_id), head[1], every)
    else:
        # an event older than what is stored: rebuild the repl's projections from all its events
        ordered = _rebuild_inputs(con, repl_id, ordered)
        projector = Projector(repl_id, rows, checkpoint_every=every)
        report.repls_rebuilt += 1
    for ev, origin, text, h in ordered:
        projector.feed(ev, origin, text, h)
    if head is None:
        rows.add("repls", repl_id, None, None, None, None, None, None)


def _same_content(con, repl_id: str, seq: int, ev: dict, earlier: tuple | None, is_stored: bool) -> bool:
    """Different bytes can still be the same event (key order, spacing, ts spelling): compare canonically."""
    if earlier is not None:
        return canonical(earlier[0]) == canonical(ev)
    if not is_stored:
        return False
    (text,) = con.execute("SELECT event FROM events WHERE repl_id = ? AND seq = ?", [repl_id, seq]).fetchone()
    try:
        return canonical(validate_event(orjson.loads(text))) == canonical(ev)
    except (BadEvent, orjson.JSONDecodeError):
        return False


def _resume_files(con, repl_id: str) -> ReplFiles:
    """The repl's live files at the end of what is stored: lineage, path, version, content."""
    live = con.execute(
        """SELECT path, file_id FROM path_events WHERE repl_id = ?
           QUALIFY row_number() OVER (PARTITION BY path ORDER BY seq DESC) = 1 AND file_id IS NOT NULL""",
        [repl_id],
    ).fetchall()
    files = ReplFiles(repl_id)
    if not live:
        return files
    heads = dict(con.execute(
        "SELECT file_id, max(version) FROM ot_ops WHERE repl_id = ? GROUP BY file_id", [repl_id]
    ).fetchall())
    breaks = dict(con.execute(
        "SELECT file_id, error_kind FROM file_breaks WHERE repl_id = ?", [repl_id]
    ).fetchall())
    cur = con.cursor()
    try:
        texts = TimeTravel(cur).contents([(repl_id, f, heads.get(f, 0)) for _, f in live])
    finally:
        cur.close()
    for (path, file_id), text in zip(live, texts):
        state = FileState(file_id=file_id, path=path, buffer=TextBuffer(text), version=heads.get(file_id, 0))
        if file_id in breaks:
            state.broken = BadEvent(breaks[file_id], "stored break", repl_id=repl_id, path=path)
        files.files[path] = state
    return files


def _rebuild_inputs(con, repl_id: str, new: list) -> list:
    """All of a repl's events (stored, stream-quarantined, new) in seq order; its projections are deleted."""
    stored = con.execute("SELECT event, event_hash FROM events WHERE repl_id = ? ORDER BY seq", [repl_id]).fetchall()
    placeholders = ",".join("?" * len(STREAM_ERRORS))
    requeue = con.execute(
        f"SELECT raw, origin FROM quarantine WHERE source = 'ingest' AND repl_id = ? AND error_kind IN ({placeholders})",
        [repl_id, *STREAM_ERRORS],
    ).fetchall()
    for table in ("events", "ot_ops", "path_events", "file_breaks", "checkpoints", "diagnostics"):
        con.execute(f"DELETE FROM {table} WHERE repl_id = ?", [repl_id])
    con.execute(
        f"DELETE FROM quarantine WHERE source = 'ingest' AND repl_id = ? AND error_kind IN ({placeholders})",
        [repl_id, *STREAM_ERRORS],
    )
    items = {it[0]["seq"]: it for it in new}
    for text, origin in [(t, None) for t, _ in stored] + requeue:
        ev = validate_event(orjson.loads(text), trusted_text=True)
        items.setdefault(ev["seq"], (ev, origin, text, content_hash(text.encode())))
    return [items[s] for s in sorted(items)]


def _write(con, rows: Rows, report: IngestReport) -> None:
    for table, columns in COLUMNS.items():
        n = rows.count(table)
        if not n:
            continue
        data = rows.columns(table)
        arrays = {c: pa.array(data[c], _TYPES.get(c)) if c in _TYPES else pa.array(data[c]) for c in columns}
        tbl = pa.table(arrays)
        con.register("batch", tbl)
        try:
            cols = ", ".join(columns)
            if table == "repls":
                con.execute(
                    f"""INSERT INTO repls ({cols})
                        SELECT {cols} FROM batch QUALIFY row_number() OVER (
                            PARTITION BY repl_id ORDER BY seq DESC NULLS LAST) = 1
                        ON CONFLICT (repl_id) DO UPDATE SET
                          language = excluded.language, is_private = excluded.is_private, owner = excluded.owner,
                          title = excluded.title, seq = excluded.seq, ts = excluded.ts
                        WHERE excluded.seq IS NOT NULL AND (repls.seq IS NULL OR excluded.seq > repls.seq)"""
                )
            elif table == "quarantine":
                fresh = con.execute(
                    """SELECT count(*) FROM (SELECT DISTINCT source, key FROM batch) b
                       ANTI JOIN quarantine q ON q.source = b.source AND q.key = b.key"""
                ).fetchone()[0]
                existing = {k for (k,) in con.execute(
                    "SELECT q.key FROM quarantine q SEMI JOIN batch b ON q.source = b.source AND q.key = b.key"
                ).fetchall()}
                con.execute(
                    f"""INSERT INTO quarantine ({cols}, run_id, quarantined_at)
                        SELECT DISTINCT ON (source, key) {cols}, ?, now() FROM batch
                        ON CONFLICT DO NOTHING""",
                    [report.run_id],
                )
                seen = set()
                for key, kind in zip(data["key"], data["error_kind"]):
                    if key in existing or key in seen:
                        continue
                    seen.add(key)
                    report.by_error[kind] += 1
                report.quarantined += fresh
                report.already_quarantined += n - fresh
            else:
                con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM batch")
                if table == "events":
                    report.stored += n
        finally:
            con.unregister("batch")
