"""The types every stage speaks (DESIGN.md, "Stages, stores and engines"): a partition in, a result out.

They live here, in the lowest package, so the stages of warehouse/, synth/ and eval/ implement the
contract without importing otlake/, which runs them (otlake.pipeline.run_stage) on an engine.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa


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
