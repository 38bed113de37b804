"""Ingest event files into the warehouse.

Per chunk of records, in one transaction:
1. stage: JSON lines are parsed and checked by DuckDB in bulk (fast lane);
   anything else is validated in Python (slow lane), see stage.py;
2. classify each staged event against the warehouse: new, duplicate
   (same key, same content), conflict (same key, other content), or
   already quarantined; a late event (older than what a repl has stored)
   makes that repl rebuild from all its events;
3. fold each repl's new ot/file events in seq order (projector.py);
4. write events, diagnostics and repls straight from the staged rows in SQL,
   and the fold's rows through Arrow.
A killed run leaves whole chunks; a rerun finds them stored and goes on.
"""

from __future__ import annotations

import gc
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from events.errors import BadEvent, OtlakeError
from events.readers import Record, iter_lines, read_events
from events.validate import check_strings

from .classify import classify, rebuild_late_repls
from .projector import COLUMNS, Projector, Rows, resume_files
from .runs import finish_run, start_run
from .stage import (
    create_staged,
    decode_record,
    insert_staged,
    quarantine_row,
    stage_lines,
    stage_records,
)
from .store import Warehouse

CHUNK_RECORDS = 200_000
SCAN_BATCH = 4096  # rows per Arrow record batch handed to DuckDB
DEFAULT_CHECKPOINT_EVERY = 256

_TYPES = {"ts": pa.timestamp("us", tz="UTC"), "seq": pa.int64(), "file_id": pa.int64(), "version": pa.int64(),
          "crc32": pa.uint64()}


@dataclass
class IngestReport:
    """Reconciliation of one ingest run: records in = stored + duplicates + quarantined + already quarantined."""

    run_id: str
    records_in: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    already_quarantined: int = 0
    repls_rebuilt: int = 0
    rebuilt_stored: int = 0       # events of rebuilt repls, stored again (not records of this run)
    rebuilt_quarantined: int = 0  # and refused again
    slow_lane: int = 0
    by_error: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    seconds: float = 0.0
    step_seconds: dict[str, float] = field(default_factory=dict)  # stage, classify, fold, write; the rest is reading

    def balanced(self) -> bool:
        return self.records_in == self.stored + self.duplicates + self.quarantined + self.already_quarantined

    def as_dict(self) -> dict:
        return {
            "records_in": self.records_in, "stored": self.stored, "duplicates": self.duplicates,
            "quarantined": self.quarantined, "already_quarantined": self.already_quarantined,
            "repls_rebuilt": self.repls_rebuilt, "rebuilt_stored": self.rebuilt_stored,
            "rebuilt_quarantined": self.rebuilt_quarantined, "slow_lane": self.slow_lane,
            "quarantined_by_kind": dict(sorted(self.by_error.items())), "balanced": self.balanced(),
        }

    def summary(self) -> str:
        line = (f"in {self.records_in} = stored {self.stored} + duplicates {self.duplicates} "
                f"+ quarantined {self.quarantined} + already quarantined {self.already_quarantined}")
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.by_error.items()))
        return line + (f"  (quarantined: {kinds})" if kinds else "")


@dataclass
class Chunk:
    """Either JSON lines of one file (fast lane) or decoded records (slow lane)."""

    origin: str = ""
    line_nos: list[int] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.lines) + len(self.records)


@contextmanager
def _no_gc():
    # ingest makes millions of short-lived containers and no cycles; the cyclic GC only costs time here
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _checkpoint_every(wh: Warehouse, requested: int | None) -> int:
    """K is fixed per warehouse at its first ingest: file_at relies on checkpoints K versions apart."""
    row = wh.con.execute("SELECT value FROM meta WHERE key = 'checkpoint_every'").fetchone()
    if row is not None:
        return int(row[0])
    every = requested or DEFAULT_CHECKPOINT_EVERY
    wh.con.execute("INSERT INTO meta VALUES ('checkpoint_every', ?)", [str(every)])
    return every


def _jsonl_chunks(path: Path, size: int) -> Iterator[Chunk]:
    chunk = Chunk(origin=str(path))
    for number, line in iter_lines(path):
        chunk.line_nos.append(number)
        chunk.lines.append(line)
        if len(chunk.lines) >= size:
            yield chunk
            chunk = Chunk(origin=str(path))
    if chunk.lines:
        yield chunk


def _record_chunks(records: Iterable[Record], size: int) -> Iterator[Chunk]:
    chunk = Chunk()
    for record in records:
        chunk.records.append(record)
        if len(chunk.records) >= size:
            yield chunk
            chunk = Chunk()
    if chunk.records:
        yield chunk


def ingest_files(wh: Warehouse, paths: list[Path], progress: Callable[[int], None] | None = None,
                 checkpoint_every: int | None = None, chunk_records: int = CHUNK_RECORDS) -> IngestReport:
    """Ingest event files (JSONL, JSONL.gz or Parquet) and record the run."""
    def chunks() -> Iterator[Chunk]:
        for p in paths:
            if p.suffix.lower() == ".parquet":
                yield from _record_chunks(read_events(p), chunk_records)
            else:
                read_events(p)  # refuses unknown suffixes up front
                yield from _jsonl_chunks(p, chunk_records)
    return _ingest(wh, chunks(), {"files": [str(p) for p in paths]}, progress, checkpoint_every)


def ingest_events(wh: Warehouse, events: Iterable[dict], origin: str = "python",
                  checkpoint_every: int | None = None, chunk_records: int = CHUNK_RECORDS) -> IngestReport:
    """Ingest event dicts given from Python (same checks as files)."""
    def records() -> Iterator[Record]:
        for i, ev in enumerate(events, 1):
            try:
                check_strings(ev)
            except BadEvent as e:
                yield Record(f"{origin}:{i}", None, e, repr(ev)[:10_000].encode("utf-8", "replace"))
                continue
            yield Record(f"{origin}:{i}", dict(ev), None, None)
    return _ingest(wh, _record_chunks(records(), chunk_records), {"origin": origin}, None, checkpoint_every)


def _ingest(wh: Warehouse, chunks: Iterable[Chunk], params: dict, progress, checkpoint_every) -> IngestReport:
    every = _checkpoint_every(wh, checkpoint_every)
    run_id = start_run(wh.con, "ingest", {**params, "checkpoint_every": every})
    report = IngestReport(run_id)
    started = time.perf_counter()
    try:
        with _no_gc():
            for chunk in chunks:
                _ingest_chunk(wh.con, chunk, report, every)
                if progress:
                    progress(len(chunk))
    except BaseException:
        report.seconds = time.perf_counter() - started
        finish_run(wh.con, run_id, "failed", report.as_dict(), {"seconds": round(report.seconds, 3)})
        raise
    report.seconds = time.perf_counter() - started
    steps = {k: round(v, 3) for k, v in report.step_seconds.items()}
    steps["read"] = round(report.seconds - sum(report.step_seconds.values()), 3)
    finish_run(wh.con, run_id, "done", report.as_dict(),
               {"seconds": round(report.seconds, 3), "steps": steps,
                "records_per_second": round(report.records_in / report.seconds) if report.seconds else None})
    return report


def _lines_table(chunk: Chunk) -> tuple[pa.Table, list[int]]:
    """Arrow (line_no, line) of the chunk's valid-UTF-8 lines, and the line numbers that are not."""
    blob = b"".join(chunk.lines)
    lengths = np.fromiter((len(x) for x in chunk.lines), dtype=np.int64, count=len(chunk.lines))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    arr = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(lengths),
                                           [None, pa.py_buffer(offsets), pa.py_buffer(blob)])
    nos = pa.array(chunk.line_nos, pa.int64())
    try:
        return _batched(pa.table({"line_no": nos, "line": arr.cast(pa.large_string())})), []
    except pa.ArrowInvalid:  # some line is not UTF-8: find which, the rest goes on
        good = []
        for i, line in enumerate(chunk.lines):
            try:
                line.decode("utf-8")
                good.append(i)
            except UnicodeDecodeError:
                pass
        bad = sorted(set(range(len(chunk.lines))) - set(good))
        keep = pa.array(good, pa.int64())
        return (_batched(pa.table({"line_no": nos.take(keep), "line": arr.take(keep).cast(pa.large_string())})),
                [chunk.line_nos[i] for i in bad])


def _batched(table: pa.Table) -> pa.Table:
    # DuckDB scans an Arrow table in parallel by record batch: one big batch would use one thread
    return pa.Table.from_batches(table.to_batches(max_chunksize=SCAN_BATCH))


def _counts(report: IngestReport) -> tuple[int, int]:
    return report.records_in, report.stored + report.duplicates + report.quarantined + report.already_quarantined


class _StepClock:
    """Adds the time since the last lap to a step's total (the run's `timings`)."""

    def __init__(self, totals: dict[str, float]) -> None:
        self.totals = totals
        self.last = time.perf_counter()

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.totals[step] = self.totals.get(step, 0.0) + now - self.last
        self.last = now


def _ingest_chunk(con, chunk: Chunk, report: IngestReport, every: int) -> None:
    clock = _StepClock(report.step_seconds)
    before = _counts(report)
    report.records_in += len(chunk)
    con.execute("BEGIN TRANSACTION")
    try:
        create_staged(con)
        if chunk.lines:
            table, not_utf8 = _lines_table(chunk)
            slow_nos = stage_lines(con, table, chunk.origin) + not_utf8
            by_no = dict(zip(chunk.line_nos, chunk.lines))
            slow = [(n, decode_record(by_no[n], f"{chunk.origin}:{n}")) for n in sorted(slow_nos)]
        else:
            slow = list(enumerate(chunk.records))
        report.slow_lane += len(slow)
        rows, bad = stage_records(slow)
        insert_staged(con, rows)
        clock.lap("stage")
        rebuild_late_repls(con, report)
        quarantine = [quarantine_row(e, origin, raw, h, None) for e, origin, raw, h in bad]
        classify(con, report, quarantine)
        clock.lap("classify")
        rejected = _fold(con, every, quarantine, report)
        clock.lap("fold")
        _write(con, quarantine, rejected, report)
        con.execute("DROP VIEW cv; DROP TABLE cls; DROP TABLE staged")
        after = _counts(report)
        if after[0] - before[0] != after[1] - before[1]:
            # never commit a chunk whose records do not all land somewhere
            raise OtlakeError(
                f"ingest of {chunk.origin or 'records'} does not reconcile: {after[0] - before[0]} records in, "
                f"{after[1] - before[1]} stored, duplicate or quarantined; the chunk was rolled back")
        con.execute("COMMIT")
        clock.lap("write")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _fold(con, every: int, quarantine: list[tuple], report: IngestReport) -> tuple[Rows, list[tuple]]:
    """Fold the new ot/file events of each repl; returns the rows and the (repl_id, seq) refused."""
    data = con.sql(
        """SELECT c.repl_id, c.seq, c.us_eff, c.kind, c.path, c.version, c.ops, c.crc32, c.author, c.op, c.dest,
                  c.repl_id IN (SELECT repl_id FROM path_events) AS resume
           FROM cv c WHERE c.status = 'new' AND c.kind IN ('ot', 'file') ORDER BY c.repl_id, c.seq"""
    ).to_arrow_table().to_pydict()
    rows = Rows()
    refused: list[tuple] = []
    projector = None
    resume = data.pop("resume")
    for i, (repl_id, seq, us, kind, path, version, ops, crc, author, op, dest) in enumerate(zip(*data.values())):
        if projector is None or projector.repl_id != repl_id:
            files = resume_files(con, repl_id) if resume[i] else None
            projector = Projector(repl_id, rows, files, every)
        if kind == "ot":
            error = projector.ot(seq, us, path, version, ops, crc, author)
        else:
            error = projector.file(seq, us, op, path, dest)
        if error is not None:
            refused.append((repl_id, seq, error))
    rejected = [(repl_id, seq) for repl_id, seq, _ in refused]
    if refused:  # the source rows of refused events, fetched only for them
        con.register("refused", pa.table({"repl_id": pa.array([r for r, _ in rejected], pa.string()),
                                          "seq": pa.array([s for _, s in rejected], pa.int64())}))
        try:
            source = {(r, s): rest for r, s, *rest in con.execute(
                """SELECT c.repl_id, c.seq, c.origin, c.raw, c.h, c.us, c.line_no < 0 FROM cv c
                   JOIN refused f ON f.repl_id = c.repl_id AND f.seq = c.seq WHERE c.status = 'new'""").fetchall()}
        finally:
            con.unregister("refused")
        for repl_id, seq, error in refused:
            origin, raw, h, us, restaged = source[(repl_id, seq)]
            quarantine.append(quarantine_row(error, origin, raw, h, us, restaged))
    return rows, rejected


def _write(con, quarantine: list[tuple], folded: tuple[Rows, list[tuple]], report: IngestReport) -> None:
    rows, rejected = folded
    for table, columns in COLUMNS.items():
        if not rows.count(table):
            continue
        data = rows.columns(table)
        tbl = pa.table({c: pa.array(data[c], _TYPES.get(c)) if c in _TYPES else pa.array(data[c]) for c in columns})
        if "ts" in columns:
            tbl = tbl.set_column(columns.index("ts"), "ts", pa.array(data["ts"], pa.int64()).cast(
                pa.timestamp("us", tz="UTC")))
        con.register("batch", tbl)
        con.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM batch")
        con.unregister("batch")
    con.register("rejected", pa.table({"repl_id": pa.array([r for r, _ in rejected], pa.string()),
                                       "seq": pa.array([s for _, s in rejected], pa.int64())}))
    con.execute("UPDATE cls SET status = 'rejected' FROM rejected r WHERE cls.repl_id = r.repl_id "
                "AND cls.seq = r.seq AND cls.status = 'new'")
    con.unregister("rejected")
    mine, restaged = con.execute(
        "SELECT count(*) FILTER (line_no >= 0), count(*) FILTER (line_no < 0) FROM cls WHERE status = 'new'"
    ).fetchone()
    report.stored += mine
    report.rebuilt_stored += restaged
    con.execute(
        """INSERT INTO events SELECT repl_id, seq, make_timestamp(us)::TIMESTAMPTZ, kind, session_id, user_id, path,
                  raw, h FROM cv WHERE status = 'new'""")
    con.execute(
        """INSERT INTO diagnostics SELECT repl_id, seq, make_timestamp(us_eff)::TIMESTAMPTZ, path, start_line,
                  start_character, end_line, end_character, severity, code, message, has_code_action
           FROM cv WHERE status = 'new' AND kind = 'lsp_diagnostic'""")
    con.execute(
        """INSERT INTO repls
           SELECT repl_id, language, is_private, owner, title, seq, make_timestamp(us)::TIMESTAMPTZ FROM (
             SELECT * FROM cv WHERE status = 'new' AND kind = 'repl'
             QUALIFY row_number() OVER (PARTITION BY repl_id ORDER BY seq DESC) = 1)
           ON CONFLICT (repl_id) DO UPDATE SET language = excluded.language, is_private = excluded.is_private,
             owner = excluded.owner, title = excluded.title, seq = excluded.seq, ts = excluded.ts
           WHERE repls.seq IS NULL OR excluded.seq > repls.seq""")
    con.execute(
        """INSERT INTO repls (repl_id) SELECT DISTINCT repl_id FROM cls WHERE status = 'new'
           ON CONFLICT DO NOTHING""")
    _write_quarantine(con, quarantine, report)


def _write_quarantine(con, quarantine: list[tuple], report: IngestReport) -> None:
    if not quarantine:
        return
    names = ("source", "key", "repl_id", "seq", "path", "version", "origin", "error_kind", "message", "raw", "us",
             "restaged")
    cols = {n: list(v) for n, v in zip(names, zip(*quarantine))}
    table = pa.table({n: pa.array(cols[n], pa.int64() if n in ("seq", "version", "us") else pa.string())
                      for n in names[:-1]})
    con.register("q", table)
    existing = {k for (k,) in con.execute(
        "SELECT key FROM quarantine WHERE source = 'ingest' AND key IN (SELECT key FROM q)").fetchall()}
    con.execute(
        """INSERT INTO quarantine (source, key, repl_id, seq, path, version, origin, error_kind, message, raw, ts,
                                   run_id, quarantined_at)
           SELECT DISTINCT ON (source, key) source, key, repl_id, seq, path, version, origin, error_kind, message,
                  raw, make_timestamp(us)::TIMESTAMPTZ, ?, now() FROM q
           ON CONFLICT DO NOTHING""",
        [report.run_id])
    con.unregister("q")
    seen = set()
    for row in quarantine:
        key, kind = row[1], row[7]
        if row[-1]:  # a restaged event refused again: not a record of this run
            report.rebuilt_quarantined += 1
            continue
        if key in existing or key in seen:
            report.already_quarantined += 1
            continue
        seen.add(key)
        report.quarantined += 1
        report.by_error[kind] += 1
