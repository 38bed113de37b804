"""Ingest event files into the warehouse: the ingest stage (IngestStage; otlake.stages runs it).

Per chunk of records (a partition), read and validated in `process`, then merged in one transaction:
1. stage: JSON lines are parsed and checked by DuckDB in bulk (fast lane);
   anything else is validated in Python (slow lane), see stage.py;
2. classify each staged event against the warehouse: new, duplicate
   (same key, same content), conflict (same key, other content), or
   already quarantined; a late event (older than what a repl has stored)
   makes that repl rebuild from all its events;
3. fold each repl's new ot/file events in seq order (ot_replay's compiled fold);
4. write events, diagnostics and repls straight from the staged rows in SQL,
   and the fold's rows through Arrow.
A killed run leaves whole chunks; a rerun finds them stored and goes on.
"""

from __future__ import annotations

import gc
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from events.errors import BadEvent, OtlakeError
from events.readers import LineBlock, Record, iter_line_blocks, raw_of, read_events
from events.stages import Context, Partition, StageResult, stamp_quarantine
from events.validate import check_strings, located_in, storable_text
from ot_replay.fold import COLUMNS
from ot_replay.fold_native import ResumeFile, fold_rows

from .classify import classify, rebuild_late_repls
from .stage import Staged, decode_record, quarantine_row, scan_rows, stage_records
from .store import ROW_GROUP_SIZE

CHUNK_RECORDS = 200_000
DEFAULT_CHECKPOINT_EVERY = 256


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

    @classmethod
    def from_run(cls, run) -> IngestReport:
        """The report of a pipeline run of IngestStage (otlake.pipeline.RunReport)."""
        extra = run.extra
        report = cls(run.run_id, records_in=run.count_in, stored=run.count_out,
                     duplicates=run.dropped.get("duplicates", 0), quarantined=run.quarantined,
                     already_quarantined=run.dropped.get("already_quarantined", 0),
                     repls_rebuilt=extra.get("repls_rebuilt", 0), rebuilt_stored=extra.get("rebuilt_stored", 0),
                     rebuilt_quarantined=extra.get("rebuilt_quarantined", 0), slow_lane=extra.get("slow_lane", 0),
                     seconds=run.seconds, step_seconds=dict(run.steps))
        report.by_error.update(extra.get("quarantined_by_kind", {}))
        return report

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
    """Either JSON lines of one file (fast lane first) or decoded records (slow lane): a partition of ingest."""

    origin: str = ""
    lines: LineBlock | None = None
    records: list[Record] = field(default_factory=list)

    def __len__(self) -> int:
        return (len(self.lines) if self.lines is not None else 0) + len(self.records)


@contextmanager
def no_gc():
    """The cyclic GC off for a run: ingest makes millions of short-lived containers and no cycles; the GC only
    costs time here."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def checkpoint_every(store, requested: int | None) -> int:
    """K is fixed per warehouse at its first ingest: file_at relies on checkpoints K versions apart."""
    con = _con(store)
    rows = con.execute("SELECT value FROM meta WHERE key = 'checkpoint_every'").fetchall()
    if rows:
        return int(rows[0][0])
    every = requested or DEFAULT_CHECKPOINT_EVERY
    con.execute("INSERT INTO meta VALUES ('checkpoint_every', ?)", [str(every)])
    return every


def _jsonl_chunks(path: Path, size: int) -> Iterator[Chunk]:
    for block in iter_line_blocks(path, size):
        yield Chunk(origin=storable_text(str(path)), lines=block)  # a file name need not be UTF-8


def _record_chunks(records: Iterable[Record], size: int) -> Iterator[Chunk]:
    chunk = Chunk()
    for record in records:
        chunk.records.append(record)
        if len(chunk.records) >= size:
            yield chunk
            chunk = Chunk()
    if chunk.records:
        yield chunk


def file_chunks(paths: list[Path], chunk_records: int = CHUNK_RECORDS) -> Iterator[Chunk]:
    """The input of ingesting files (JSONL, JSONL.gz or Parquet), a chunk of records at a time."""
    for p in paths:
        if p.suffix.lower() == ".parquet":
            yield from _record_chunks(read_events(p), chunk_records)
        else:
            read_events(p)  # refuses unknown suffixes up front
            yield from _jsonl_chunks(p, chunk_records)


def event_chunks(events: Iterable[dict], origin: str = "python", chunk_records: int = CHUNK_RECORDS) -> Iterator[Chunk]:
    """The input of ingesting event dicts given from Python (the same checks as files)."""
    def records() -> Iterator[Record]:
        for i, ev in enumerate(events, 1):
            try:
                check_strings(ev)
            except BadEvent as e:
                yield Record(f"{origin}:{i}", None, located_in(e, ev), raw_of(ev))
                continue
            yield Record(f"{origin}:{i}", dict(ev) if isinstance(ev, dict) else ev, None, None)
    return _record_chunks(records(), chunk_records)


def _con(store):
    con = getattr(store, "con", None)
    if con is None:
        raise OtlakeError(f"ingest writes into the warehouse's DuckDB file; {type(store).__name__} has no merge for "
                          "events yet")
    return con


class IngestStage:
    """The ingest stage (events.stages contract): its partitions are chunks of the input (`chunks`, an
    iterable of Chunk made when the run starts), not repls.

    `process` reads and validates a chunk (pure: the compiled scanner first, Python for the rest); `commit`
    merges it into the warehouse in one transaction: each event classified against the stored ones (new,
    duplicate, conflict, already quarantined; a late event makes its repl rebuild), the new ot/file events
    folded on from each repl's stored state (ot_replay's compiled fold), then written with its quarantine
    rows. Records in = stored + duplicates + quarantined + already quarantined, per chunk and per run. A killed
    run leaves whole chunks; a rerun finds them stored and goes on.
    """

    name = "ingest"
    reads: tuple[str, ...] = ()
    writes = ("events", "ot_ops", "path_events", "file_breaks", "checkpoints", "diagnostics", "repls", "quarantine")

    def __init__(self, chunks: Iterable[Chunk], every: int, progress: Callable[[int], None] | None = None) -> None:
        self.chunks, self.every, self.progress = chunks, every, progress

    def pending(self, store, params) -> list[str]:
        return []  # the input is not in the store: `partitions` makes them

    def partitions(self, store, params) -> Iterator[Partition]:
        for n, chunk in enumerate(self.chunks):
            yield Partition(f"{chunk.origin or 'records'}#{n}", {}, chunk)

    def process(self, part: Partition, ctx: Context) -> StageResult:
        prepared = _prepare(part.payload)
        return StageResult(payload=prepared)

    def commit(self, store, run_id: str, result: StageResult, ctx: Context) -> StageResult:
        prepared: Prepared = result.payload
        report = IngestReport(run_id)
        _ingest_chunk(store, prepared, report, self.every, ctx.now_us)
        if self.progress:
            self.progress(prepared.size)
        dropped = Counter({k: v for k, v in (("duplicates", report.duplicates),
                                             ("already_quarantined", report.already_quarantined)) if v})
        return StageResult(count_in=report.records_in, count_out=report.stored, dropped=dropped,
                           quarantined_records=report.quarantined, seconds=Counter(report.step_seconds),
                           extra={"repls_rebuilt": report.repls_rebuilt, "rebuilt_stored": report.rebuilt_stored,
                                  "rebuilt_quarantined": report.rebuilt_quarantined, "slow_lane": report.slow_lane,
                                  "quarantined_by_kind": dict(sorted(report.by_error.items()))})

    def reduce(self, results, ctx) -> None:
        return None


@dataclass
class Prepared:
    """A chunk read and staged: everything that needs only the input, not the warehouse."""

    size: int                # records in
    origin: str
    fast: pa.Table | None    # the scanner's staged rows
    rows: list[dict]         # slow-lane rows that passed validation
    bad: list[tuple]         # (BadEvent, origin, raw, hash) of the records that did not
    slow_lane: int
    seconds: float           # time spent preparing (in the worker thread)


def _prepare(chunk: Chunk) -> Prepared:
    """Read (JSON lines: compiled scanner first, Python for the rest) and validate one chunk."""
    started = time.perf_counter()
    fast = None
    if chunk.lines is not None:
        block = chunk.lines
        fast, slow_nos = scan_rows(_lines_table(block), chunk.origin)
        slow = [(n, decode_record(block.line(int(np.searchsorted(block.numbers, n))), f"{chunk.origin}:{n}"))
                for n in slow_nos]
    else:
        slow = list(enumerate(chunk.records))
    rows, bad = stage_records(slow)
    return Prepared(len(chunk), chunk.origin, fast, rows, bad, len(slow), time.perf_counter() - started)


def _lines_table(block: LineBlock) -> pa.Table:
    """Arrow (line_no, line) of the block, without a copy and without UTF-8 validation: the scanner accepts
    only valid UTF-8 (bytes >= 0x80 only inside strings, checked there), the rest goes to the slow lane,
    which reads the bytes and names what is wrong. Only the scanner reads this table."""
    line = pa.LargeStringArray.from_buffers(len(block), pa.py_buffer(block.offsets), pa.py_buffer(block.data))
    return pa.table({"line_no": pa.array(block.numbers, pa.int64()), "line": line})


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


def _ingest_chunk(store, prepared: Prepared, report: IngestReport, every: int, now_us: int) -> None:
    con = _con(store)
    clock = _StepClock(report.step_seconds)
    before = _counts(report)
    report.records_in += prepared.size
    report.slow_lane += prepared.slow_lane
    report.step_seconds["stage"] = report.step_seconds.get("stage", 0.0) + prepared.seconds
    con.execute("BEGIN TRANSACTION")
    staged = None
    try:
        staged = Staged(con)
        staged.add_table(prepared.fast)
        staged.add_rows(prepared.rows)
        staged.register()
        quarantine = [quarantine_row(e, origin, raw, h, None) for e, origin, raw, h in prepared.bad]
        rebuild_late_repls(con, report, staged, quarantine)
        classify(con, report, quarantine)
        clock.lap("classify")
        folded = _fold(con, staged, every, quarantine)
        clock.lap("fold")
        _write(con, staged, quarantine, folded, report)
        _write_quarantine(store, con, quarantine, report, now_us)
        con.execute("DROP VIEW cv; DROP TABLE cls")
        after = _counts(report)
        if after[0] - before[0] != after[1] - before[1]:
            # never commit a chunk whose records do not all land somewhere
            raise OtlakeError(
                f"ingest of {prepared.origin or 'records'} does not reconcile: {after[0] - before[0]} records in, "
                f"{after[1] - before[1]} stored, duplicate or quarantined; the chunk was rolled back")
        con.execute("COMMIT")
        clock.lap("write")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        if staged is not None:
            staged.close()


@dataclass
class Folded:
    """What the fold made of a chunk: the derived tables, and which staged rows it refused."""

    tables: dict[str, pa.Table]
    rejected: list[tuple[str, int]]  # (repl_id, seq)
    stored: np.ndarray               # bool per staged row: new and not refused, so it is written
    us_eff: np.ndarray               # int64 per staged row: effective time (µs) where new


def _fold(con, staged: Staged, every: int, quarantine: list[tuple]) -> Folded:
    """Fold the new ot/file events of each repl (compiled, fold_native), in (repl_id, seq) order.

    The staged rows stay in Arrow: cls gives each row's status and effective time by position (rix).
    """
    table = staged.table
    n = table.num_rows
    cls = con.sql("SELECT rix, status = 'new' AS new, us_eff FROM cls").to_arrow_table()
    rix = cls.column("rix").to_numpy()
    new = np.zeros(n, dtype=bool)
    new[rix] = cls.column("new").to_numpy(zero_copy_only=False)
    us_eff = np.zeros(n, dtype=np.int64)
    us_eff[rix] = cls.column("us_eff").fill_null(0).to_numpy()
    folding = new & pc.is_in(table.column("kind"), pa.array(["ot", "file"])).fill_null(False).to_numpy(
        zero_copy_only=False)
    at = np.flatnonzero(folding)
    keys = table.select(["repl_id", "seq"]).take(at)
    at = at[pc.sort_indices(keys, [("repl_id", "ascending"), ("seq", "ascending")]).to_numpy()]
    rows = table.select(["repl_id", "seq", "kind", "path", "version", "ops", "crc32", "author", "op", "dest"]).take(at)
    rows = rows.add_column(2, "us", pa.array(us_eff[at]))
    repl_ids = pc.unique(rows.column("repl_id"))
    con.register("folded_repls", pa.table({"repl_id": repl_ids}))
    try:
        resumed = [r for (r,) in con.execute(
            "SELECT DISTINCT repl_id FROM path_events WHERE repl_id IN (SELECT repl_id FROM folded_repls)").fetchall()]
    finally:
        con.unregister("folded_repls")
    tables, errors = fold_rows(rows, every, resume_states(con, resumed))
    stored = new.copy()
    rejected = []
    for i, error in errors:  # the source rows of refused events, looked up only for them
        pos = int(at[i])
        stored[pos] = False
        row = {c: table.column(c)[pos].as_py() for c in ("repl_id", "seq", "origin", "raw", "h", "us", "line_no")}
        rejected.append((row["repl_id"], row["seq"]))
        quarantine.append(quarantine_row(error, row["origin"], row["raw"], row["h"], row["us"], row["line_no"] < 0))
    return Folded(tables, rejected, stored, us_eff)


def _insert(con, table: str, data: pa.Table, select: str) -> None:
    """INSERT INTO table SELECT select FROM data (Arrow), in batches of a row group: DuckDB inserts them in
    parallel, straight into the file."""
    if not data.num_rows:
        return
    con.register("batch", pa.Table.from_batches(data.to_batches(max_chunksize=ROW_GROUP_SIZE), data.schema))
    try:
        con.execute(f"INSERT INTO {table} SELECT {select} FROM batch")
    finally:
        con.unregister("batch")


def _write(con, staged: Staged, quarantine: list[tuple], folded: Folded, report: IngestReport) -> None:
    for table, columns in COLUMNS.items():
        _insert(con, f"{table} ({', '.join(columns)})", folded.tables[table],
                ", ".join("make_timestamp(ts)::TIMESTAMPTZ" if c == "ts" else c for c in columns))
    if folded.rejected:
        con.register("rejected", pa.table({"repl_id": pa.array([r for r, _ in folded.rejected], pa.string()),
                                           "seq": pa.array([s for _, s in folded.rejected], pa.int64())}))
        con.execute("UPDATE cls SET status = 'rejected' FROM rejected r WHERE cls.repl_id = r.repl_id "
                    "AND cls.seq = r.seq AND cls.status = 'new'")
        con.unregister("rejected")
    table, stored = staged.table, folded.stored
    restaged = table.column("line_no").to_numpy() < 0
    report.stored += int(np.count_nonzero(stored & ~restaged))
    report.rebuilt_stored += int(np.count_nonzero(stored & restaged))
    rows = table if stored.all() else table.filter(pa.array(stored))
    _insert(con, "events", rows.select(["repl_id", "seq", "us", "kind", "session_id", "user_id", "path", "raw", "h"]),
            "repl_id, seq, make_timestamp(us)::TIMESTAMPTZ, kind, session_id, user_id, path, raw, h")
    diagnostics = stored & pc.equal(table.column("kind"), "lsp_diagnostic").fill_null(False).to_numpy(
        zero_copy_only=False)
    at = np.flatnonzero(diagnostics)
    rows = table.select(["repl_id", "seq", "path", "start_line", "start_character", "end_line", "end_character",
                         "severity", "code", "message", "has_code_action"]).take(at)
    _insert(con, "diagnostics", rows.add_column(2, "us_eff", pa.array(folded.us_eff[at])),
            "repl_id, seq, make_timestamp(us_eff)::TIMESTAMPTZ, path, start_line, start_character, end_line, "
            "end_character, severity, code, message, has_code_action")
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


def _text_column(values: list) -> pa.Array:
    """A string column of quarantine rows. Bad input may carry text that is not valid UTF-8 into any of them
    (a lone surrogate in a repl_id lands in the key, the location and the message): it is stored with
    backslash escapes, so writing quarantine never fails."""
    try:
        return pa.array(values, pa.string())
    except UnicodeEncodeError:
        return pa.array([None if v is None else storable_text(v) for v in values], pa.string())


def _write_quarantine(store, con, quarantine: list[tuple], report: IngestReport, now_us: int) -> None:
    """The chunk's quarantine rows through the one writer (events.stages.stamp_quarantine, the store's upsert),
    in the chunk's transaction. The first row of a key stands: a key already quarantined (by an earlier run, or
    earlier in this chunk) is counted, not written again."""
    if not quarantine:
        return
    names = ("source", "key", "repl_id", "seq", "path", "version", "origin", "error_kind", "message", "raw", "us",
             "restaged")
    cols = {n: list(v) for n, v in zip(names, zip(*quarantine))}
    table = pa.table({n: pa.array(cols[n], pa.int64()) if n in ("seq", "version", "us") else _text_column(cols[n])
                      for n in names[:-1]})
    keys = table.column("key").to_pylist()  # the keys as stored
    con.register("q", table.select(["key"]))
    existing = {k for (k,) in con.execute(
        "SELECT key FROM quarantine WHERE source = 'ingest' AND key IN (SELECT key FROM q)").fetchall()}
    con.unregister("q")
    written: set[str] = set()
    first: list[int] = []  # the rows written: the first of each key not stored yet
    seen: set[str] = set()
    for n, (row, key) in enumerate(zip(quarantine, keys, strict=True)):
        if key not in existing and key not in written:
            written.add(key)
            first.append(n)
        if row[-1]:  # a restaged event refused again: not a record of this run
            report.rebuilt_quarantined += 1
            continue
        if key in existing or key in seen:
            report.already_quarantined += 1
            continue
        seen.add(key)
        report.quarantined += 1
        report.by_error[row[7]] += 1
    rows = table.take(pa.array(first, pa.int64()))
    rows = rows.append_column("ts", pc.cast(rows.column("us"), pa.timestamp("us", "UTC"))).drop_columns("us")
    store.commit_in(con, report.run_id, {"quarantine": stamp_quarantine(rows, report.run_id, now_us)})


def resume_states(con, repl_ids: list[str]) -> dict[str, list]:
    """For each repl, its live files at the end of what is stored (fold_native.ResumeFile), in one pass."""
    from .timetravel import TimeTravel

    if not repl_ids:
        return {}
    cur = con.cursor()
    try:
        live = TimeTravel(cur).live_paths(repl_ids)
    finally:
        cur.close()
    con.register("resume_repls", pa.table({"repl_id": pa.array(repl_ids, pa.string())}))
    try:
        heads = {(r, f): v for r, f, v in con.execute(
            """SELECT repl_id, file_id, max(version) FROM ot_ops WHERE repl_id IN (SELECT repl_id FROM resume_repls)
               GROUP BY repl_id, file_id""").fetchall()}
        breaks = {(r, f): (kind, seq) for r, f, kind, seq in con.execute(
            """SELECT repl_id, file_id, error_kind, seq FROM file_breaks
               WHERE repl_id IN (SELECT repl_id FROM resume_repls)""").fetchall()}
    finally:
        con.unregister("resume_repls")
    cur = con.cursor()
    try:
        texts = TimeTravel(cur).contents([(r, f, heads.get((r, f), 0)) for r, _, f in live])
    finally:
        cur.close()
    states: dict[str, list] = {r: [] for r in repl_ids}
    for (repl_id, path, file_id), text in zip(live, texts):
        states[repl_id].append(ResumeFile(path, file_id, heads.get((repl_id, file_id), 0), text,
                                          breaks.get((repl_id, file_id))))
    return states
