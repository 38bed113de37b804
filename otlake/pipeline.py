"""One pipeline contract: stages, engines and the one run lifecycle (DESIGN.md, "Stages, stores and engines").

A `Stage` is pure over partitions: `pending(store, params)` names the partitions still to do (those
without the stage's marker), the engine hands `process` one partition's rows as Arrow (the stage's
`reads` tables, filtered to that partition's repl) with a `Context` (the instant, the parameters, the
checker, the LM endpoint), and `process` returns a `StageResult`: output rows by table, drops counted by
reason, quarantine rows, marker rows, the count in. `reduce` sees every result at the end (dedup, split,
few-shot pools) and may return one more result to commit; a stage whose output is decided only there
(`commit_partitions = False`) has its partitions' rows held for `reduce` instead of committed one by one.
An `Engine` only decides where partitions run.

`run_stage` is the one lifecycle: a `runs` row with the parameters and timings; each partition's outputs
and quarantine rows committed, then its markers in a second commit, so a killed run redoes only the
partitions without a marker; a reconciliation (in = out + dropped by reason + quarantined) that must
balance; the run marked failed, with what it had counted, on any error.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import multiprocessing
import os
import pickle
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from events.errors import OtlakeError
from events.stages import (
    Context,
    Engine,
    Partition,
    Stage,
    StageResult,
    add_counts,
    stamp_quarantine,
)
from warehouse.stores import Store, read_table

__all__ = [
    "Context",
    "Engine",
    "LocalEngine",
    "Partition",
    "Partitions",
    "PipelineError",
    "RunReport",
    "Stage",
    "StageResult",
    "run_stage",
]

Progress = Callable[[int, int], None]  # partitions done, partitions in all


class PipelineError(OtlakeError):
    """A stage broke the contract: a reconciliation that does not balance, a partition it did not ask for."""


@dataclass
class Chunk:
    """Rows of several repls, one table each, as read: `owners[table]` names each row's repl."""

    keys: list[str]
    tables: dict[str, pa.Table]
    owners: dict[str, list[str]]

    @property
    def rows(self) -> int:
        return max((t.num_rows for t in self.tables.values()), default=0)

    def partitions(self) -> Iterator[Partition]:
        """One Partition per key, in order, each table's rows in their order."""
        split = {table: _split(rows, self.owners[table], self.keys) for table, rows in self.tables.items()}
        for key in self.keys:
            yield Partition(key, {table: split[table][key] for table in self.tables})


class Partitions:
    """The partitions of a run, read a chunk of repls at a time (iterate for Partitions, or `chunks()`)."""

    def __init__(self, store: Store, stage: Stage, keys: Sequence[str], chunk: int = 256) -> None:
        self.store, self.stage, self.keys, self.chunk = store, stage, list(keys), chunk

    def __iter__(self) -> Iterator[Partition]:
        for chunk in self.chunks():
            yield from chunk.partitions()

    def chunks(self) -> Iterator[Chunk]:
        stage, store = self.stage, self.store
        columns = getattr(stage, "columns", {})
        filters = getattr(stage, "filters", {})
        through = getattr(stage, "through", {})
        for start in range(0, len(self.keys), self.chunk):
            some = self.keys[start:start + self.chunk]
            tables, owners = {}, {}
            for table in stage.reads:
                if table in through:
                    continue
                cols = columns.get(table)
                rows = read_table(store, table, {**filters.get(table, {}), "repl_id": some},
                                  None if cols is None else list(dict.fromkeys(["repl_id", *cols])))
                owners[table] = rows.column("repl_id").to_pylist()
                tables[table] = rows if cols is None else rows.select(list(cols))
            for table, (column, parent) in through.items():
                owner = dict(zip(tables[parent].column(column).to_pylist(), owners[parent], strict=True))
                cols = columns.get(table)
                rows = read_table(store, table, {**filters.get(table, {}), column: sorted(owner)},
                                  None if cols is None else list(dict.fromkeys([column, *cols])))
                owners[table] = [owner[v] for v in rows.column(column).to_pylist()]
                tables[table] = rows if cols is None else rows.select(list(cols))
            yield Chunk(some, {t: tables[t] for t in stage.reads}, {t: owners[t] for t in stage.reads})


def _split(rows: pa.Table, owners: list[str], keys: list[str]) -> dict[str, pa.Table]:
    """rows by owner (a key of `keys`), each in their order: one take puts them in key order, then slices."""
    if len(keys) == 1:
        return {keys[0]: rows}
    position = {key: n for n, key in enumerate(keys)}
    ranks = [position[o] for o in owners]
    order = sorted(range(len(ranks)), key=ranks.__getitem__)  # stable: rows keep their order within a key
    grouped = rows.take(pa.array(order, pa.int64())) if order != list(range(len(order))) else rows
    counts = [0] * len(keys)
    for r in ranks:
        counts[r] += 1
    out, start = {}, 0
    for key, n in zip(keys, counts, strict=True):
        out[key] = grouped.slice(start, n)
        start += n
    return out


class LocalEngine:
    """Runs partitions on this machine: in this process, or with `workers` > 1 in a pool of spawned processes.

    Pooled, the stage and the context go to each process once, and whole chunks of partitions (as read, about
    `task_rows` rows a task) go to a process that splits them, so this process only reads. Below `inline_rows`
    rows in all the pool is not worth its start (a second or two) and partitions run here. Results come back
    in the order of the partitions."""

    def __init__(self, workers: int = 1, task_rows: int = 2000, inline_rows: int = 8000, ahead: bool = False) -> None:
        self.workers, self.task_rows, self.inline_rows = workers, task_rows, inline_rows
        self.ahead = ahead  # in process: the next partition is read and processed in a thread meanwhile

    def map(self, stage: Stage, parts: Iterable[Partition], ctx: Context) -> Iterator[StageResult]:
        if self.workers <= 1:
            yield from (_ahead if self.ahead else _process_all)(stage, parts, ctx)
            return
        chunks = parts.chunks() if isinstance(parts, Partitions) else (
            Chunk([p.key], dict(p.tables), {t: [p.key] * rows.num_rows for t, rows in p.tables.items()})
            for p in parts)
        held, rows = [], 0
        for chunk in chunks:  # hold chunks until the pool is worth starting
            held.append(chunk)
            rows += chunk.rows
            if rows >= self.inline_rows:
                break
        else:
            yield from _process_all(stage, (part for chunk in held for part in chunk.partitions()), ctx)
            return
        yield from self._pooled(stage, itertools.chain(held, chunks), ctx)

    def _pooled(self, stage: Stage, chunks: Iterator[Chunk], ctx: Context) -> Iterator[StageResult]:
        # the stage goes through a file: as an initarg it would be written down each new process's pipe while
        # that process starts, one process after another (a big stage, e.g. a decontamination index, made
        # the second process start seconds after the first)
        with tempfile.NamedTemporaryFile(prefix="otlake-stage-", suffix=".pickle", delete=False) as f:
            pickle.dump((stage, ctx), f, protocol=pickle.HIGHEST_PROTOCOL)
        pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(f.name,))
        try:
            order: collections.deque = collections.deque()  # futures in the order of their partitions
            for task in _tasks(chunks, self.task_rows):
                order.append(pool.submit(_process_task, task))
                # keep every process busy: wait for any task, not the oldest, before sending the next
                while sum(not f.done() for f in order) >= 2 * self.workers:
                    concurrent.futures.wait([f for f in order if not f.done()],
                                            return_when=concurrent.futures.FIRST_COMPLETED)
                while order and order[0].done():
                    yield from order.popleft().result()
            while order:
                yield from order.popleft().result()
        finally:
            pool.shutdown(cancel_futures=True)
            os.unlink(f.name)


def _tasks(chunks: Iterator[Chunk], task_rows: int) -> Iterator[list[Chunk]]:
    task, rows = [], 0
    for chunk in chunks:
        task.append(chunk)
        rows += chunk.rows
        if rows >= task_rows:
            yield task
            task, rows = [], 0
    if task:
        yield task


_WORKER: dict = {}


def _init_worker(path: str) -> None:
    with open(path, "rb") as f:
        stage, ctx = pickle.load(f)
    _WORKER.update(stage=stage, ctx=ctx)


def _process_task(chunks: list[Chunk]) -> list[StageResult]:
    return list(_process_all(_WORKER["stage"], (part for chunk in chunks for part in chunk.partitions()),
                             _WORKER["ctx"]))


def _ahead(stage: Stage, parts: Iterable[Partition], ctx: Context) -> Iterator[StageResult]:
    """Each partition's result, in order; the next partition is read and processed in a worker thread while
    the caller commits this one (ingest: the scanner and DuckDB release the GIL, so reading chunk n+1
    overlaps merging chunk n)."""
    results = _process_all(stage, parts, ctx)  # one call at a time, so one generator serves the thread

    def next_result() -> StageResult | None:
        return next(results, None)

    with ThreadPoolExecutor(1, thread_name_prefix="otlake-ahead") as pool:
        pending = pool.submit(next_result)
        try:
            while (result := pending.result()) is not None:
                pending = pool.submit(next_result)
                yield result
        finally:
            pending.cancel()


def _process_all(stage: Stage, parts: Iterable[Partition], ctx: Context) -> Iterator[StageResult]:
    """Each partition's result, in order: through the stage's process_many where it has one (it may work on
    several partitions at once, e.g. one checker call for the snapshots of many repls), else process."""
    many = getattr(stage, "process_many", None)
    if many is not None:
        yield from many(iter(parts), ctx)
    else:
        for part in parts:
            yield stage.process(part, ctx)


@dataclass
class RunReport:
    """How a run ended: its id, the reconciliation, timings and what the stage reported beside them."""

    run_id: str
    stage: str
    partitions: int = 0
    count_in: int = 0
    count_out: int = 0
    dropped: Counter = field(default_factory=Counter)
    quarantined: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)  # counts a stage reports beside the reconciliation (stored)
    steps: Counter = field(default_factory=Counter)  # seconds per step, summed over partitions (stored in timings)
    details: dict = field(default_factory=dict)  # lists a stage reports (not stored), e.g. what mismatched

    def reconciliation(self) -> dict:
        return {"in": self.count_in, "out": self.count_out, "dropped": dict(self.dropped),
                "quarantined": self.quarantined, "partitions": self.partitions, **self.extra}

    def balanced(self) -> bool:
        return self.count_in == self.count_out + sum(self.dropped.values()) + self.quarantined

    def add(self, result: StageResult) -> None:
        self.count_in += result.count_in
        self.count_out += result.count_out
        self.dropped.update(result.dropped)
        self.quarantined += result.quarantined
        self.steps.update(result.seconds)
        for k, v in result.extra.items():
            if isinstance(v, list):
                self.details.setdefault(k, []).extend(v)
            else:
                self.extra[k] = add_counts(self.extra.get(k), v)

    def timings(self, checker: Any = None) -> dict:
        """What the runs row stores as timings: the run's seconds, per step, and the checker's counters."""
        out: dict = {"seconds": round(self.seconds, 3)}
        if self.steps:
            out["steps"] = {k: round(v, 3) for k, v in sorted(self.steps.items())}
        stats = getattr(checker, "stats", None)
        if stats is not None and hasattr(stats, "as_dict"):
            out["checker"] = stats.as_dict()
        return out


def run_stage(stage: Stage, store: Store, engine: Engine, params: Mapping[str, Any], *, now_us: int | None = None,
              checker: Any = None, lm: Any = None, progress: Progress | None = None) -> RunReport:
    """Run `stage` over its pending partitions on `engine`, committing into `store`; the one run lifecycle."""
    started = time.perf_counter()
    runs = store.runs()
    runs.interrupt_dead()  # runs whose process died (SIGKILL, a crash) stop saying `running`
    run_id = runs.start(stage.name, dict(params))
    ctx = Context(now_us=int(time.time() * 1e6) if now_us is None else now_us, params=dict(params),
                  checker=checker, lm=lm, run_id=run_id)
    report = RunReport(run_id, stage.name)
    try:
        keys = stage.pending(store, params)
        wanted = set(keys)
        own = getattr(stage, "partitions", None)  # a stage whose input is not in the store makes its own
        parts = own(store, params) if own is not None else Partitions(store, stage, keys)
        merge = getattr(stage, "commit", None)  # a stage whose output is merged against what is stored
        per_partition = getattr(stage, "commit_partitions", True)
        columns: dict[str, list[str]] = {}  # each written table's columns, looked up once
        results = []
        for result in engine.map(stage, parts, ctx):
            part_key = result.extra.pop("partition", None)
            if part_key is not None and part_key not in wanted:
                raise PipelineError(f"{stage.name}: a result for partition {part_key!r}, which was not pending")
            report.partitions += 1
            if merge is not None:
                result = merge(store, run_id, result, ctx)
                report.add(result)
                results.append(_summary(result))
            elif per_partition:
                _commit(store, run_id, result, ctx, columns)
                report.add(result)
                results.append(_summary(result))
            else:
                results.append(result)
            if progress:
                progress(report.partitions, len(keys))
        final = stage.reduce(results, ctx)
        if not per_partition:
            for result in results:
                report.add(_summary(result))
        if final is not None:
            _commit(store, run_id, final, ctx, columns)
            report.add(final)
        if not report.balanced():
            raise PipelineError(f"{stage.name}: records in ({report.count_in}) != out ({report.count_out}) + "
                                f"dropped ({sum(report.dropped.values())}) + quarantined ({report.quarantined})")
    except BaseException:
        report.seconds = time.perf_counter() - started
        runs.finish(run_id, "failed", report.reconciliation(), report.timings(checker))
        raise
    report.seconds = time.perf_counter() - started
    runs.finish(run_id, "done", report.reconciliation(), report.timings(checker))
    return report


def _commit(store: Store, run_id: str, result: StageResult, ctx: Context, columns: dict[str, list[str]]) -> None:
    """Outputs and quarantine in one commit, then the markers: a kill between them redoes the partition.

    Rows of a table with a `run_id` column get this run's id where the stage left it out. The one quarantine
    writer: each row gets the run's id and the run's instant (events.stages.stamp_quarantine)."""
    def stamped(table: str, rows: pa.Table) -> pa.Table:
        if table not in columns:
            columns[table] = store.schema(table).names
        if "run_id" in columns[table] and "run_id" not in rows.column_names:
            rows = rows.append_column("run_id", pa.array([run_id] * rows.num_rows, pa.string()))
        return rows

    upserts = {table: stamped(table, rows) for table, rows in result.outputs.items()}
    if result.quarantine is not None and result.quarantine.num_rows:
        upserts["quarantine"] = stamp_quarantine(result.quarantine, run_id, ctx.now_us)
    if upserts or result.deletes:
        store.commit(run_id, upserts, result.deletes)
    if result.markers:
        store.commit(run_id, {table: stamped(table, rows) for table, rows in result.markers.items()})


def _summary(result: StageResult) -> StageResult:
    """What reduce sees of a committed partition: its counts and extras, not its rows (already committed)."""
    return StageResult(count_in=result.count_in, count_out=result.count_out, dropped=Counter(result.dropped),
                       extra=dict(result.extra), quarantined_records=result.quarantined,
                       seconds=Counter(result.seconds))
