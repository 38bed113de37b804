"""The dataset stage: accepted diffs from the warehouse -> hygiene -> dedup -> split -> files + `datasets` rows.

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

import multiprocessing
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow as pa

from events.errors import ConfigError, OtlakeError
from events.privacy import public_sql
from synth.hygiene.decontam import NGRAM, Contamination, load_eval_set
from synth.hygiene.decontam import THRESHOLD as DECONTAM_THRESHOLD
from synth.hygiene.dedup import THRESHOLD, MinHasher
from synth.hygiene.pipeline import BatchResult, Kept, clean_rows, deduplicate
from synth.hygiene.split import sample, split_by_group
from train.export import SPLITS, move_into_place, staging_folder, write_dataset
from warehouse.dataset_schema import create_dataset_tables
from warehouse.eval_schema import registered_eval_sets
from warehouse.runs import finish_run, start_run

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


def build_dataset(wh, name: str, out: str | os.PathLike, options: DatasetOptions = DatasetOptions(),
                  progress: Callable[[int], None] | None = None) -> DatasetReport:
    """Build dataset `name` into folder `out` and register it; DatasetError/ConfigError on bad input."""
    con = wh.con
    create_dataset_tables(con)
    out = Path(out).absolute()
    _check_name(con, name, options.overwrite)
    where, args = _selection(con, options)
    # the eval sets frozen in this warehouse (`otlake eval make-replit`) always count
    frozen = registered_eval_sets(con)
    if frozen:
        options = replace(options, eval_sets=tuple(dict.fromkeys([*options.eval_sets, *frozen])))
    eval_sets = [load_eval_set(p) for p in options.eval_sets]
    selected = _count_selected(con, where, args)
    params = {**options.params(), "eval_sets": [{"name": s.name, "path": str(Path(p).absolute()),
                                                  "sha256": s.sha256} for s, p in zip(eval_sets, options.eval_sets)]}
    tmp = staging_folder(out, options.overwrite)
    try:
        run_id = start_run(con, "dataset", {"name": name, "out": str(out), **params})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report = DatasetReport(run_id, name, str(out), selected=selected)
    started = time.perf_counter()
    try:
        clock = time.perf_counter()
        hasher = MinHasher()
        contamination = (Contamination(eval_sets, hasher, options.ngram, options.decontam_threshold)
                         if eval_sets else None)
        report.step_seconds["index_eval_sets"] += time.perf_counter() - clock
        kept = _clean(wh, where, args, options, contamination, report, progress)
        train, eval_ = _split(kept, options, report)
        if not report.balanced():  # an invariant: every selected example is written or dropped with a reason
            raise DatasetError(f"the reconciliation does not balance: {report.summary()}")
        splits = {"train": train, "eval": eval_}
        report.skipped = _empty_splits(splits, options)
        clock = time.perf_counter()
        card = build_card(con, name, options, eval_sets, contamination, report, splits, report.skipped)
        report.sha256 = write_dataset(tmp, {s: [k.line for k in splits[s]] for s in report.written}, card)
        report.seconds = time.perf_counter() - started
        _register(con, name, out, tmp, params, report, train, eval_)
        report.step_seconds["write"] += time.perf_counter() - clock
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        report.seconds = time.perf_counter() - started
        finish_run(con, run_id, "failed", report.counts(), {"seconds": round(report.seconds, 3)})
        raise
    finish_run(con, run_id, "done", report.counts(), {
        "seconds": round(report.seconds, 3), "steps": {k: round(v, 3) for k, v in report.step_seconds.items()},
        "examples_per_second": round(selected / report.seconds, 1) if report.seconds else None})
    return report


def known_rules(con) -> list[str]:
    """Every rule code among the warehouse's pairs and logged diagnostics."""
    rows = con.execute("SELECT code FROM pairs UNION SELECT code FROM diagnostics").fetchall()
    return sorted(r[0] for r in rows if r[0])


def _check_name(con, name: str, overwrite: bool) -> None:
    if not _NAME.fullmatch(name):
        raise ConfigError(f"dataset name {name!r}: use letters, digits, '.', '_' and '-' (at most 100), "
                          "starting with a letter or digit")
    row = con.execute("SELECT out_dir FROM datasets WHERE dataset_id = ?", [name]).fetchall()
    if row and not overwrite:
        raise DatasetError(f"dataset {name!r} already exists (written to {row[0][0]}): pass --overwrite to "
                           "build it again, or choose another name (`otlake dataset list`)")


def _selection(con, options: DatasetOptions) -> tuple[str, list]:
    """The WHERE clause over diffs d and pairs p, after checking rules and sources exist."""
    unknown_sources = sorted(set(options.sources) - set(SOURCES))
    if unknown_sources or not options.sources:
        raise ConfigError(f"unknown source {', '.join(unknown_sources) or '(none)'}: sources are user and lm")
    wanted = set(options.rules) | set(options.exclude_rules)
    if wanted:
        rules = known_rules(con)
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
    where = ["d.accepted", "d.diff IS NOT NULL", "d.fixed IS NOT NULL", "d.source IN (SELECT unnest(?))"]
    args: list = [list(options.sources)]
    for clause, value in (("epoch_us(p.ts) >= ?", options.since_us), ("epoch_us(p.ts) < ?", options.until_us)):
        if value is not None:
            where.append(clause)
            args.append(value)
    if options.rules:
        where.append("p.code IN (SELECT unnest(?))")
        args.append(list(options.rules))
    if options.exclude_rules:
        where.append("p.code NOT IN (SELECT unnest(?))")
        args.append(list(options.exclude_rules))
    return " AND ".join(where), args


def _count_selected(con, where: str, args: list) -> int:
    n = con.execute(f"SELECT count(*) FROM diffs d JOIN pairs p USING (pair_id) WHERE {where}", args).fetchall()[0][0]
    if n == 0:
        total = con.execute("SELECT count(*) FROM diffs WHERE accepted").fetchall()[0][0]
        raise DatasetError(f"empty selection: no accepted diff matches the filters (the warehouse has {total} "
                           "accepted diffs in all; see `otlake synth` and the --since/--until/--rules/--sources "
                           "options); nothing was written")
    return n


def _clean(wh, where: str, args: list, options: DatasetOptions, contamination: Contamination | None,
           report: DatasetReport, progress) -> list[Kept]:
    """Steps 1-3: read the selection, run the per-example hygiene, dedup; returns the kept examples in order."""
    clock = time.perf_counter()
    cur = wh.con.cursor()
    try:
        base = f"""SELECT p.pair_id, d.source, d.model, p.repl_id, epoch_us(p.ts) AS us, p.path, p.code, p.message,
                          p.start_line, r.is_private,
                          row_number() OVER (PARTITION BY p.pair_id ORDER BY d.source <> 'user', d.source,
                                             d.model) AS rank
                   FROM diffs d JOIN pairs p USING (pair_id) LEFT JOIN repls r ON r.repl_id = p.repl_id
                   WHERE {where}"""
        private, unknown, other = cur.execute(
            f"""SELECT count(*) FILTER (is_private), count(*) FILTER (is_private IS NULL),
                       count(*) FILTER ({public_sql("is_private")} AND rank > 1) FROM ({base})""", args).fetchall()[0]
        n = report.selected
        report.steps.append(("private repls", n, n - private - unknown,
                             {"private_repl": private, "privacy_unknown": unknown}))
        n -= private + unknown
        report.steps.append(("one diff per pair", n, n - other, {"other_diff_of_same_pair": other}))
        # private repls' code is never read: the join below fetches content only for public ones. No ORDER
        # BY (it would hold every file in DuckDB's memory): dedup sorts what is kept.
        cur.execute(f"""SELECT s.pair_id, s.source, s.model, s.repl_id, s.us, s.path, s.code, s.message,
                               s.start_line, p.content, d.diff, d.fixed
                        FROM ({base}) s JOIN pairs p USING (pair_id)
                        JOIN diffs d ON d.pair_id = s.pair_id AND d.source = s.source AND d.model = s.model
                        WHERE {public_sql("s.is_private")} AND s.rank = 1""", args)
        result = _run_hygiene(cur, options, contamination, n - other, progress)
    finally:
        cur.close()
    report.step_seconds["hygiene"] += time.perf_counter() - clock
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
    return kept


def _run_hygiene(cur, options: DatasetOptions, contamination: Contamination | None, rows: int,
                 progress) -> BatchResult:
    """Per-example steps over the cursor's rows, in batches, in a process pool for big selections."""
    total = BatchResult()

    def batches():
        while batch := cur.fetchmany(options.batch):
            yield batch

    # a pool costs a second or two to start (spawn: DuckDB's threads make fork unsafe); small builds run inline
    workers = options.workers if rows >= 4 * options.batch else 1
    pool = None
    if workers <= 1:
        hasher = MinHasher()
        results = (clean_rows(batch, options.seed, hasher, contamination) for batch in batches())
    else:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(options.seed, contamination))
        results = _bounded_map(pool, batches(), 2 * workers)
    try:
        for result in results:
            total.merge(result)
            if progress:
                progress(len(result.kept) + sum(result.dropped.values()))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return total


_WORKER: dict = {}


def _init_worker(seed: int, contamination) -> None:
    _WORKER.update(seed=seed, hasher=MinHasher(), contamination=contamination)


def _clean_in_worker(rows: list[tuple]) -> BatchResult:
    return clean_rows(rows, _WORKER["seed"], _WORKER["hasher"], _WORKER["contamination"])


def _bounded_map(pool, items, window: int):
    """pool.map over a generator with at most `window` batches in flight (Executor.map reads all at once)."""
    pending = []
    for rows in items:
        pending.append(pool.submit(_clean_in_worker, rows))
        if len(pending) >= window:
            yield pending.pop(0).result()
    for future in pending:
        yield future.result()


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


def _register(con, name: str, out: Path, tmp: Path, params: dict, report: DatasetReport,
              train: list[Kept], eval_: list[Kept]) -> None:
    """One transaction: the dataset's rows, and the folder moved into place (the old one removed)."""
    rows = [(k, "train", i) for i, k in enumerate(train, 1)] + [(k, "eval", i) for i, k in enumerate(eval_, 1)]
    table = pa.table({"pair_id": [k.pair_id for k, _, _ in rows], "source": [k.source for k, _, _ in rows],
                      "model": [k.model for k, _, _ in rows], "split": [s for _, s, _ in rows],
                      "line": pa.array([i for _, _, i in rows], pa.int32())})
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM dataset_examples WHERE dataset_id = ?", [name])
        con.execute("DELETE FROM datasets WHERE dataset_id = ?", [name])
        con.execute(
            "INSERT INTO datasets VALUES (?, now(), ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [name, orjson.dumps(params).decode(), orjson.dumps(report.counts()).decode(), str(out),
             report.train, report.eval, report.sha256.get("train.jsonl"), report.sha256.get("eval.jsonl"),
             report.sha256["README.md"], report.run_id])
        con.register("new_examples", table)
        con.execute("INSERT INTO dataset_examples SELECT ?, pair_id, source, model, split, line FROM new_examples",
                    [name])
        con.unregister("new_examples")
        old = move_into_place(tmp, out)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
