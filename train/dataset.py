"""The dataset stage: accepted diffs from the warehouse -> hygiene -> dedup -> split -> files + `datasets` rows.

A stage of the pipeline contract (`DatasetStage`; otlake.stages.build_dataset runs it): `pending` selects
(step 1, reading no code), `process` runs step 2 on one repl's examples (in a process pool for big builds:
the local engine's workers), `reduce` does steps 3-6 over every partition's result.

Steps, each counted by reason in the card and in `runs.reconciliation`
(selected = train + eval + dropped):
1. select accepted diffs by time (`since` inclusive, `until` exclusive, on
   the pair's instant), rule and source; drop private repls again (a repl
   without a `repl` event counts as private), never reading their code; keep
   one diff per pair (the user's fix over an LM's, then by model);
2. per example (`synth.hygiene.pipeline`, in a process pool): filters,
   anonymization, the prompt schema, decontamination;
3. exact, then near-duplicate dedup, earliest example first;
4. `max_examples`: a seeded sample;
5. split by repl: whole repls go to eval, in a seeded order, while they fit
   in `eval_share` of the examples, so no repl (and, after dedup, no
   near-duplicate) is on both sides;
6. write into a temporary folder beside `out`, then register the dataset
   and move the folder into place in one transaction: a failed build leaves
   neither files nor rows. A split with no example gets no file (Hugging
   Face `datasets` cannot load an empty one): the card and the report say
   why, and `empty_split="fail"` fails the build instead, before anything is
   written. An eval split that `eval_share=0` did not ask for never fails it.
"""

from __future__ import annotations

import functools
import re
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from events.errors import ConfigError, OtlakeError
from events.privacy import is_public
from events.stages import Context, Partition, StageResult, StoreError, read_table, stage_of
from ot_replay.timeline import timestamps_us
from synth.hygiene.decontam import NGRAM, Contamination
from synth.hygiene.decontam import THRESHOLD as DECONTAM_THRESHOLD
from synth.hygiene.dedup import THRESHOLD, MinHasher
from synth.hygiene.pipeline import BatchResult, Kept, clean_rows, deduplicate
from synth.hygiene.split import sample, split_by_group
from train.export import SPLITS, move_into_place, write_dataset

from .dataset_card import build_card

SOURCES = ("user", "lm")
EMPTY_SPLIT = ("skip", "fail")  # what a build does with a split that has no example
BATCH = 2000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class DatasetError(OtlakeError):
    """A dataset that cannot be built as asked (the name exists, nothing selected, ...)."""


@dataclass(frozen=True)
class DatasetOptions:
    """What goes into a dataset and how it is cleaned and split."""

    since_us: int | None = None
    until_us: int | None = None
    rules: tuple[str, ...] = ()
    exclude_rules: tuple[str, ...] = ()
    sources: tuple[str, ...] = SOURCES
    max_examples: int | None = None
    seed: int = 0
    eval_share: float = 0.05
    dedup_threshold: float = THRESHOLD
    decontam_threshold: float = DECONTAM_THRESHOLD
    ngram: int = NGRAM
    eval_sets: tuple[str, ...] = ()     # paths of evaluation sets to decontaminate against
    workers: int = 1                    # > 1: a spawn process pool (call from under `if __name__ == "__main__"`)
    overwrite: bool = False
    batch: int = BATCH                  # rows per task of the process pool
    empty_split: str = "skip"           # skip: write no file for it (the card says why); fail: build nothing

    def params(self) -> dict:
        """The parameters that decide the dataset's content (what the card and `datasets.params` show)."""
        out = asdict(self)
        for key in ("workers", "overwrite", "batch", "eval_sets", "since_us", "until_us"):
            out.pop(key)
        for key, us in (("since", self.since_us), ("until", self.until_us)):
            out[key] = None if us is None else (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
                microseconds=us)).isoformat().replace("+00:00", "Z")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


@dataclass
class DatasetReport:
    """Reconciliation of one build: selected = train + eval + dropped (by reason)."""

    run_id: str
    name: str
    out: str
    selected: int = 0
    train: int = 0
    eval: int = 0
    steps: list[tuple[str, int, int, dict]] = field(default_factory=list)
    anonymized_examples: int = 0
    anonymized_values: Counter = field(default_factory=Counter)
    rerendered: int = 0
    near_pairs: list[tuple[str, str, float]] = field(default_factory=list)  # dropped, kept, Jaccard
    sha256: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # split -> why it has no file
    seconds: float = 0.0
    step_seconds: Counter = field(default_factory=Counter)

    @property
    def dropped(self) -> Counter:
        return sum((Counter(d) for _, _, _, d in self.steps), Counter())

    def balanced(self) -> bool:
        return self.selected == self.train + self.eval + sum(self.dropped.values())

    def counts(self) -> dict:
        return {"selected": self.selected, "train": self.train, "eval": self.eval,
                "dropped": dict(sorted(self.dropped.items())), "balanced": self.balanced(),
                "steps": [{"step": s, "in": i, "out": o, "dropped": dict(sorted(d.items()))}
                          for s, i, o, d in self.steps],
                "anonymized": {"examples": self.anonymized_examples,
                               "values": dict(sorted(self.anonymized_values.items()))},
                "not_written": dict(self.skipped)}

    @property
    def written(self) -> list[str]:
        """The splits whose files were written."""
        return [s for s in SPLITS if s not in self.skipped]

    def summary(self) -> str:
        dropped = self.dropped
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(dropped.items()) if n) or "none"
        return (f"selected {self.selected} = train {self.train} + eval {self.eval} + dropped "
                f"{sum(dropped.values())} ({reasons})")


class DatasetStage:
    """The dataset build (events.stages contract): one repl per partition, outputs decided in reduce.

    Records: the selected accepted diffs. Out: the examples written (train + eval); dropped by reason at
    every step. `check(store)` refuses bad options before any run is recorded."""

    name = "dataset"
    reads = ("pairs", "diffs")
    columns: ClassVar[dict[str, tuple[str, ...]]] = {
        "pairs": ("pair_id", "repl_id", "ts", "path", "code", "message", "start_line", "content", "run_id"),
        "diffs": ("pair_id", "source", "model", "diff", "fixed", "run_id")}
    filters: ClassVar[dict[str, dict]] = {"diffs": {"accepted": True}}
    through: ClassVar[dict[str, tuple[str, str]]] = {"diffs": ("pair_id", "pairs")}
    writes = ("datasets", "dataset_examples")
    commit_partitions = False

    def __init__(self, name: str, out: Path, tmp: Path, options: DatasetOptions, eval_sets: list,
                 params: dict) -> None:
        self.dataset, self.out, self.tmp, self.options, self.eval_sets, self.params = name, out, tmp, options, eval_sets, params
        self.report = DatasetReport("", name, str(out))
        self.contamination: Contamination | None = None
        self.chosen: frozenset[tuple[str, str, str]] = frozenset()
        self.first_steps: list[tuple[str, int, int, dict]] = []
        self.old_examples: pa.Table | None = None
        self.selected: list[tuple] | None = None  # what check_build found, when it ran first

    def pending(self, store, params) -> list[str]:
        """Step 1 on the pairs' and diffs' keys and the repls' privacy (no code is read); indexes the eval sets."""
        clock = time.perf_counter()
        hasher = MinHasher()
        if self.eval_sets:
            self.contamination = Contamination(self.eval_sets, hasher, self.options.ngram,
                                               self.options.decontam_threshold)
        self.report.step_seconds["index_eval_sets"] += time.perf_counter() - clock
        rows = self.selected if self.selected is not None else _selected(store, self.options)
        n = len(rows)
        private = [r for r in rows if r[4] is True]
        unknown = [r for r in rows if r[4] is None]
        public = [r for r in rows if is_public(r[4])]
        best: dict[str, tuple] = {}
        for r in public:  # one diff per pair: the user's fix over an LM's, then by source and model
            pid, source, model = r[0], r[1], r[2]
            rank = (source != "user", source, model)
            if pid not in best or rank < best[pid][0]:
                best[pid] = (rank, r)
        self.chosen = frozenset((r[0], r[1], r[2]) for _, r in best.values())
        other = len(public) - len(best)
        self.first_steps = [("private repls", n, n - len(private) - len(unknown),
                             {"private_repl": len(private), "privacy_unknown": len(unknown)}),
                            ("one diff per pair", len(public), len(best), {"other_diff_of_same_pair": other})]
        self.report.selected = n
        # an overwritten dataset's examples go in the same commit as the new ones
        self.old_examples = read_table(store, "dataset_examples", {"dataset_id": self.dataset}, ["dataset_id", "pair_id"])
        return sorted({r[3] for _, r in best.values()})

    @functools.cached_property
    def _hasher(self) -> MinHasher:
        return MinHasher()

    def process(self, part: Partition, ctx: Context) -> StageResult:
        """Step 2 on one repl's chosen examples."""
        pairs, diffs = part.tables["pairs"], part.tables["diffs"]
        p_cols = [pairs.column(c).to_pylist() for c in ("pair_id", "repl_id", "path", "code", "message", "start_line",
                                                         "content", "run_id")]
        by_pair = {row[0]: row for row in zip(*p_cols, timestamps_us(pairs.column("ts")), strict=True)}
        rows, runs = [], {}
        for pid, source, model, diff, fixed, diff_run in zip(
                *(diffs.column(c).to_pylist() for c in ("pair_id", "source", "model", "diff", "fixed", "run_id")),
                strict=True):
            key = (pid, source, model)
            if key not in self.chosen:
                continue
            _, repl_id, path, code, message, line, content, pair_run, us = by_pair[pid]
            rows.append((pid, source, model, repl_id, us, path, code, message, line, content, diff, fixed))
            runs[key] = (pair_run, diff_run)
        clock = time.perf_counter()
        result = clean_rows(rows, self.options.seed, self._hasher, self.contamination)
        kept = [(k.pair_id, k.source, k.model) for k in result.kept]
        return StageResult(count_in=len(rows), dropped=Counter(result.dropped),
                           seconds=Counter({"hygiene": time.perf_counter() - clock}),
                           extra={"hygiene": [result], "runs": [(k, runs[k]) for k in kept]})

    def reduce(self, results, ctx) -> StageResult:
        """Steps 3-6: dedup, sample, split, write the files and move them into place; the dataset's rows."""
        report, options = self.report, self.options
        report.run_id = ctx.run_id
        result = BatchResult()
        runs: dict[tuple, tuple[str, str]] = {}
        for r in results:
            for part in r.extra.get("hygiene", []):
                result.merge(part)
            runs.update(r.extra.get("runs", []))
        report.steps = list(self.first_steps)
        report.anonymized_examples, report.anonymized_values = result.anonymized_examples, result.anonymized_values
        report.rerendered = result.rerendered
        n = report.steps[-1][2]
        for step, prefixes in (("filters", ("generated:", "minified:", "python2", "fixed_does_not_parse")),
                               ("anonymize and render", ("anonymized_", "bad_prompt")),
                               ("decontaminate", ("contaminated:",))):
            dropped = {r: c for r, c in result.dropped.items() if r.startswith(prefixes)}
            report.steps.append((step, n, n - sum(dropped.values()), dropped))
            n -= sum(dropped.values())
        clock = time.perf_counter()
        kept, exact, report.near_pairs = deduplicate(result, options.dedup_threshold)
        report.steps.append(("exact dedup", n, n - exact, {"exact_duplicate": exact}))
        report.steps.append(("near dedup", n - exact, len(kept), {"near_duplicate": n - exact - len(kept)}))
        report.step_seconds["dedup"] += time.perf_counter() - clock
        train, eval_ = _split(kept, options, report)
        if not report.balanced():  # an invariant: every selected example is written or dropped with a reason
            raise DatasetError(f"the reconciliation does not balance: {report.summary()}")
        splits = {"train": train, "eval": eval_}
        report.skipped = _empty_splits(splits, options)
        clock = time.perf_counter()
        lineage = Counter(run_id for k in train + eval_ for run_id in runs[(k.pair_id, k.source, k.model)])
        card = build_card(self.dataset, options, self.eval_sets, self.contamination, report, splits, report.skipped,
                          [(run_id, stage_of(run_id), n) for run_id, n in sorted(lineage.items())])
        report.sha256 = write_dataset(self.tmp, {s: [k.line for k in splits[s]] for s in report.written}, card)
        old = move_into_place(self.tmp, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        report.step_seconds["write"] += time.perf_counter() - clock
        pending_drops = Counter()
        for _, _, _, d in self.first_steps:
            pending_drops.update(d)
        later = Counter()
        for step, _, _, d in report.steps[len(self.first_steps) + 3:]:
            later.update(d)
        rows = [(k, "train", i) for i, k in enumerate(train, 1)] + [(k, "eval", i) for i, k in enumerate(eval_, 1)]
        examples = pa.table({"dataset_id": [self.dataset] * len(rows), "pair_id": [k.pair_id for k, _, _ in rows],
                             "source": [k.source for k, _, _ in rows], "model": [k.model for k, _, _ in rows],
                             "split": [s for _, s, _ in rows], "line": pa.array([i for _, _, i in rows], pa.int32())})
        dataset = pa.table({
            "dataset_id": [self.dataset], "created_at": pa.array([ctx.now_us], pa.timestamp("us", "UTC")),
            "params": [orjson.dumps(self.params).decode()], "counts": [orjson.dumps(report.counts()).decode()],
            "out_dir": [str(self.out)], "train_examples": pa.array([report.train], pa.int32()),
            "eval_examples": pa.array([report.eval], pa.int32()), "train_sha256": [report.sha256.get("train.jsonl")],
            "eval_sha256": [report.sha256.get("eval.jsonl")], "card_sha256": [report.sha256["README.md"]]})
        return StageResult(
            outputs={"datasets": dataset, "dataset_examples": examples},
            deletes={"dataset_examples": self.old_examples} if self.old_examples.num_rows else {},
            count_in=sum(pending_drops.values()), count_out=report.train + report.eval,
            dropped=+(pending_drops + later), seconds=Counter(report.step_seconds),
            extra={"selected": report.selected, "train": report.train, "eval": report.eval,
                   "steps": {step: {"in": i, "out": o, "dropped": dict(sorted(d.items()))}
                             for step, i, o, d in report.steps},
                   "not_written": dict(report.skipped)})


def _selected(store, options: DatasetOptions) -> list[tuple]:
    """(pair_id, source, model, repl_id, is_private) of every accepted diff the options select."""
    diffs = read_table(store, "diffs", {"accepted": True, "source": list(options.sources)},
                       ["pair_id", "source", "model"])
    if not diffs.num_rows:
        return []
    pairs = read_table(store, "pairs", columns=["pair_id", "repl_id", "ts", "code"])
    pairs = pairs.append_column("us", pa.array(timestamps_us(pairs.column("ts")), pa.int64())).drop_columns(["ts"])
    keep = None
    for cond in ((pc.greater_equal(pairs.column("us"), options.since_us) if options.since_us is not None else None),
                 (pc.less(pairs.column("us"), options.until_us) if options.until_us is not None else None),
                 (pc.is_in(pairs.column("code"), pa.array(list(options.rules), pa.string()))
                  if options.rules else None),
                 (pc.invert(pc.is_in(pairs.column("code"), pa.array(list(options.exclude_rules), pa.string())))
                  if options.exclude_rules else None)):
        if cond is not None:
            cond = pc.fill_null(cond, False)
            keep = cond if keep is None else pc.and_(keep, cond)
    if keep is not None:
        pairs = pairs.filter(keep)
    repls = read_table(store, "repls", columns=["repl_id", "is_private"])
    rows = diffs.join(pairs.select(["pair_id", "repl_id"]), "pair_id", join_type="inner", use_threads=False)
    rows = rows.join(repls, "repl_id", join_type="left outer", use_threads=False)
    return list(zip(*(rows.column(c).to_pylist() for c in ("pair_id", "source", "model", "repl_id", "is_private")),
                    strict=True))


def known_rules(store) -> list[str]:
    """Every rule code among the warehouse's pairs and logged diagnostics."""
    codes = set(read_table(store, "pairs", columns=["code"]).column("code").to_pylist())
    codes |= set(read_table(store, "diagnostics", columns=["code"]).column("code").to_pylist())
    return sorted(c for c in codes if c)


def check_build(store, name: str, options: DatasetOptions) -> list[tuple]:
    """ConfigError/DatasetError for a build that cannot be done as asked, before anything is recorded;
    what the options select (see _selected)."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"dataset name {name!r}: use letters, digits, '.', '_' and '-' (at most 100), "
                          "starting with a letter or digit")
    row = read_table(store, "datasets", {"dataset_id": name}, ["out_dir"]).column("out_dir").to_pylist()
    if row and not options.overwrite:
        raise DatasetError(f"dataset {name!r} already exists (written to {row[0]}): pass --overwrite to "
                           "build it again, or choose another name (`otlake dataset list`)")
    unknown_sources = sorted(set(options.sources) - set(SOURCES))
    if unknown_sources or not options.sources:
        raise ConfigError(f"unknown source {', '.join(unknown_sources) or '(none)'}: sources are user and lm")
    wanted = set(options.rules) | set(options.exclude_rules)
    if wanted:
        rules = known_rules(store)
        unknown = sorted(wanted - set(rules))
        if unknown:
            shown = ", ".join(rules[:40]) + (f" and {len(rules) - 40} more" if len(rules) > 40 else "")
            raise ConfigError(f"unknown rule {', '.join(unknown)}: the warehouse's pairs and diagnostics have "
                              + (f"these rules: {shown}" if rules else "no rules yet (run `otlake pairs`)"))
    if not 0 <= options.eval_share < 1:
        raise ConfigError(f"--eval-share {options.eval_share}: give a share in [0, 1), e.g. 0.05")
    if options.empty_split not in EMPTY_SPLIT:
        raise ConfigError(f"--empty-split {options.empty_split!r}: give skip (write no file for an empty split) "
                          "or fail (build nothing)")
    selected = _selected(store, options)
    if not selected:
        total = read_table(store, "diffs", {"accepted": True}, ["pair_id"]).num_rows
        raise DatasetError(f"empty selection: no accepted diff matches the filters (the warehouse has {total} "
                           "accepted diffs in all; see `otlake synth` and the --since/--until/--rules/--sources "
                           "options); nothing was written")
    return selected


def _split(kept: list[Kept], options: DatasetOptions, report: DatasetReport) -> tuple[list[Kept], list[Kept]]:
    """Steps 4-5: the --max sample, then whole repls to eval while they fit; each split in a seeded order."""
    n = len(kept)
    kept = sample(kept, options.max_examples, options.seed, key=lambda k: k.pair_id)
    report.steps.append(("--max sample", n, len(kept), {"over_max": n - len(kept)}))
    if not kept:
        raise DatasetError(f"every selected example was dropped ({report.summary()}); nothing was written")
    train, eval_ = split_by_group(kept, options.eval_share, options.seed, key=lambda k: k.pair_id,
                                  group=lambda k: k.repl_id)
    report.train, report.eval = len(train), len(eval_)
    return train, eval_


def _empty_splits(splits: dict[str, list[Kept]], options: DatasetOptions) -> dict[str, str]:
    """{split: why it is empty} for the splits with no example; DatasetError when one was asked for and fails."""
    n = sum(len(v) for v in splits.values())
    why = {"eval": "--eval-share 0 asks for no eval split" if options.eval_share == 0 else (
               f"eval is empty: no repl has few enough examples to fit in {options.eval_share:.0%} of {n} "
               "(a repl is never split between train and eval)"),
           "train": f"train is empty: every repl fit in the eval share ({options.eval_share:.0%} of {n})"}
    empty = {s: why[s] for s in SPLITS if not splits[s]}
    asked = [s for s in empty if not (s == "eval" and options.eval_share == 0)]
    if asked and options.empty_split == "fail":
        raise DatasetError(f"{'; '.join(empty[s] for s in asked)}; nothing was written. Select more examples, "
                           "change --eval-share, or pass --empty-split skip to write the other split alone")
    return empty


def datasets(store) -> list[dict]:
    """Every built dataset's row (the `datasets` table), by name; none before the first build."""

    try:
        rows = read_table(store, "datasets").sort_by("dataset_id").to_pylist()
    except StoreError:  # a warehouse that never built one has no dataset tables
        return []
    for row in rows:
        for key in ("params", "counts"):
            if isinstance(row.get(key), str):
                row[key] = orjson.loads(row[key])
    return rows


def dataset(store, name: str) -> dict:
    """One dataset's row; DatasetError naming the datasets there are when there is none by that name."""
    rows = datasets(store)
    found = [r for r in rows if r["dataset_id"] == name]
    if not found:
        names = ", ".join(r["dataset_id"] for r in rows) or "none yet"
        raise DatasetError(f"no dataset {name!r} in the warehouse (datasets: {names}): build one with "
                           "`otlake dataset build NAME --out DIR`")
    return found[0]
