"""The types every stage speaks (DESIGN.md, "Stages, stores and engines"): a partition in, a result out, and
the Store a stage's `pending` reads (its backends are in warehouse/stores.py).

They live here, in the lowest package, so the stages of warehouse/, synth/ and eval/ implement the
contract without importing otlake/, which runs them (otlake.pipeline.run_stage) on an engine.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from events.errors import OtlakeError


@dataclass(frozen=True)
class Partition:
    """One repl's rows: table name -> Arrow rows of that repl, for each table the stage reads. A stage whose
    input is not in the store yet (ingest: files) makes its own partitions, the input in `payload`."""

    key: str
    tables: Mapping[str, pa.Table]
    payload: Any = None


@dataclass(frozen=True)
class Context:
    """What a stage may not fetch itself: the instant it runs at, its parameters, the checker, the LM."""

    now_us: int
    params: Mapping[str, Any] = field(default_factory=dict)
    checker: Any = None
    lm: Any = None
    run_id: str = ""  # the run the partition is part of (e.g. for a dataset card's lineage)


@dataclass
class StageResult:
    """What one partition (or a reduce step) gives: rows by table, drops by reason, quarantine, markers."""

    outputs: dict[str, pa.Table] = field(default_factory=dict)
    deletes: dict[str, pa.Table] = field(default_factory=dict)
    quarantine: pa.Table | None = None
    markers: dict[str, pa.Table] = field(default_factory=dict)
    count_in: int = 0
    count_out: int = 0
    dropped: Counter = field(default_factory=Counter)
    extra: dict = field(default_factory=dict)  # counts (stored) and lists (reported) beside the reconciliation
    quarantined_records: int | None = None  # records quarantined, when not one per quarantine row
    seconds: Counter = field(default_factory=Counter)  # time per step (summed into the run's timings)
    payload: Any = None  # what a stage's own `commit` needs of the result (never stored as it is)

    @property
    def quarantined(self) -> int:
        if self.quarantined_records is not None:
            return self.quarantined_records
        return 0 if self.quarantine is None else self.quarantine.num_rows


def add_counts(a, b):
    """Counts add; mappings of counts add key by key (at any depth); None is nothing yet."""
    if a is None:
        return b
    if isinstance(b, Mapping):
        return {k: add_counts(a.get(k), b.get(k)) if k in a and k in b else a.get(k, b.get(k)) for k in {**a, **b}}
    return a + b


def stamp_quarantine(rows: pa.Table, run_id: str, now_us: int) -> pa.Table:
    """Quarantine rows as the one writer stores them: the run's id and instant (µs) where the stage left them
    out. run_stage writes every stage's rows through it; ingest's merge writes its own in its transaction."""
    for column, value, kind in (("run_id", run_id, pa.string()),
                                ("quarantined_at", now_us, pa.timestamp("us", "UTC"))):
        if column not in rows.column_names:
            rows = rows.append_column(column, pa.array([value] * rows.num_rows, kind))
    return rows


class Stage(Protocol):
    """A stage may also declare, as class attributes: `columns` (table -> the columns it reads, when not all),
    `filters` (table -> a Store `where` every read of that table adds), `through` (table -> (column, parent
    table): a table without repl_id, read by the values of that column in the partition's parent rows) and
    `commit_partitions = False` (its outputs are decided in reduce; partitions' results are held for it); and
    the method `process_many(parts, ctx)`: the results of several partitions, in their order (an iterator),
    where working on them together pays (pairs: one checker call for the snapshots of many repls). An engine
    calls it, where the stage has it, with the partitions it runs in one place.

    A stage whose input is not the store's tables, or whose output must be merged against what is stored
    rather than upserted by key, may also have `partitions(store, params)` (its partitions, made from its
    input; `pending` then names none) and `commit(store, run_id, result, ctx) -> StageResult` (the merge of
    one partition's result, in partition order, returning what it counted). Ingest has both: its partitions
    are chunks of the input files, parsed and validated anywhere, and its commit classifies each event
    against the stored ones (new, duplicate, conflict) and folds the new ones on from each repl's stored
    state."""

    name: str
    reads: tuple[str, ...]  # tables a partition holds, each filtered to the partition's repl
    writes: tuple[str, ...]

    def pending(self, store: Any, params: Mapping[str, Any]) -> list[str]: ...
    def process(self, part: Partition, ctx: Context) -> StageResult: ...
    def reduce(self, results: Sequence[StageResult], ctx: Context) -> StageResult | None: ...


class Engine(Protocol):
    def map(self, stage: Stage, parts: Iterable[Partition], ctx: Context) -> Iterator[StageResult]: ...


# ---- the store a stage reads and the run log (backends: warehouse/stores.py) ----------------------------------

RUN_STATUSES = ("running", "done", "failed", "interrupted")  # interrupted: its process died without finishing it
Where = Mapping[str, Any]  # column -> a value, or a list/tuple/set of values (IN); every condition must hold


class StoreError(OtlakeError):
    """A store cannot read or commit what was asked (unknown table or column, rows without their key)."""


class RunLog(Protocol):
    """The `runs` table: one row per stage run. A run's timings hold the process (pid, host) until it finishes,
    so a later run can tell a run whose process died (SIGKILL, a crash) from one still going."""

    def start(self, stage: str, params: Mapping[str, Any]) -> str: ...
    def interrupt_dead(self) -> list[str]: ...
    def finish(self, run_id: str, status: str, reconciliation: Mapping[str, Any],
               timings: Mapping[str, Any]) -> None: ...
    def get(self, run_id: str) -> dict | None: ...


class Store(Protocol):
    """Where tables live: read by table, commit a run's output by key (DESIGN.md)."""

    def read(self, table: str, where: Where | None = None,
             columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]: ...
    def commit(self, run_id: str, upserts: Mapping[str, pa.Table],
               deletes: Mapping[str, pa.Table] | None = None) -> None: ...
    def runs(self) -> RunLog: ...
    def schema(self, table: str, columns: Sequence[str] | None = None) -> pa.Schema: ...


def read_table(store: Store, table: str, where: Where | None = None,
               columns: Sequence[str] | None = None) -> pa.Table:
    """All of `store.read(...)` as one Arrow table (empty, with the table's columns, when nothing matches)."""
    batches = list(store.read(table, where, columns))
    if not batches:
        return store.schema(table, columns).empty_table()
    return pa.Table.from_batches(batches)


def new_run_id(stage: str) -> str:
    return f"{stage}-{uuid.uuid4().hex[:12]}"


def stage_of(run_id: str | None) -> str:
    """The stage a run id names (new_run_id's scheme: STAGE-12 hex digits); '?' for none."""
    return run_id.rsplit("-", 1)[0] if run_id else "?"
