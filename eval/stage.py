"""Eval as stages of the pipeline contract: `eval run` (EvalStage) and `eval make-replit` (ReplitStage).

EvalStage judges a model on a bench's items. Its partitions are batches of
items (RunOptions.batch, in the order chosen), not repls: the items come from
the bench's files, chosen before the run; each batch has its targets checked,
its reference tests derived, its answers asked for and scored (eval.run).
Nothing is committed per batch: `reduce` writes every `eval_items` row and the
`eval_runs` row in one commit, so a failed or killed run leaves no half run
(its `runs` row says failed or interrupted, and `otlake eval list` shows it).

ReplitStage freezes a held-out set: the pairs are chosen first (`choose`, on
the driver: public repls, accepted fixes, user fixes first, decontaminated
against every training set), each chosen pair's repl is a partition that
replays the pair's other files, and `reduce` writes the JSONL file and the
`eval_sets` row.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC
from pathlib import Path

import orjson
import pyarrow as pa

from events.privacy import is_public
from events.stages import Context, Partition, StageResult, StoreError, add_counts, read_table

from .errors import EvalError
from .items import EvalItem, Skipped, item_part, load_debugbench, load_jsonl
from .run import EvalResult, RunOptions, coverage, evaluate, skipped_rows

BENCHES = ("debugbench", "replit", "jsonl")

_TS = pa.timestamp("us", "UTC")
ITEMS_SCHEMA = pa.schema([  # eval_items as a stage writes it (run_id is stamped by the pipeline)
    ("item_id", pa.string()), ("sample", pa.int32()), ("status", pa.string()), ("skip_reason", pa.string()),
    ("category", pa.string()), ("subtype", pa.string()), ("rule", pa.string()), ("target_line", pa.int32()),
    ("target_message", pa.string()), ("answer", pa.string()), ("error", pa.string()), ("diff", pa.string()),
    ("extracted", pa.bool_()), ("applies", pa.bool_()), ("apply_error", pa.string()), ("changes", pa.bool_()),
    ("target_gone", pa.bool_()), ("target_detail", pa.string()), ("functional", pa.bool_()),
    ("tests", pa.int32()), ("tests_reason", pa.string()), ("cases_passed", pa.int32()),
    ("test_detail", pa.string()), ("ast_exact", pa.bool_()), ("ast_or_string", pa.bool_()),
    ("target_as_reference", pa.bool_()), ("deletes_only", pa.bool_()), ("seconds", pa.float64()),
    ("prompt_tokens", pa.int32()), ("completion_tokens", pa.int32()), ("prompt_hash", pa.string())])
RUNS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("bench", pa.string()), ("model", pa.string()), ("status", pa.string()),
    ("started_at", _TS), ("finished_at", _TS), ("data", pa.string()), ("items_sha256", pa.string()),
    ("model_settings", pa.string()), ("prompt_hash", pa.string()), ("sampling", pa.string()),
    ("samples", pa.int32()), ("items", pa.int32()), ("skipped", pa.int32()), ("metrics", pa.string()),
    ("by_category", pa.string()), ("counts", pa.string()), ("timings", pa.string())])
SETS_SCHEMA = pa.schema([("name", pa.string()), ("created_at", _TS), ("path", pa.string()), ("sha256", pa.string()),
                         ("items", pa.int32()), ("params", pa.string()), ("counts", pa.string())])


def _json(value) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _has(store, table: str) -> bool:
    try:
        store.schema(table)
    except StoreError:
        return False
    return True


# ---- eval run ----------------------------------------------------------------------------------------------

@dataclass
class EvalReport:
    """What one `otlake eval run` did: its run id, rows and summary."""

    run_id: str
    bench: str
    model: str
    result: EvalResult
    samples: int
    metrics: dict = field(default_factory=dict)
    by_category: dict = field(default_factory=dict)
    by_subtype: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    not_scored: dict = field(default_factory=dict)
    seconds: float = 0.0

    def as_json(self) -> dict:
        """The object `--format json` prints."""
        return {"run_id": self.run_id, "bench": self.bench, "model": self.model,
                "items": self.metrics.get("items", 0), "samples": self.samples, "metrics": self.metrics,
                "by_category": self.by_category, "by_subtype": self.by_subtype, "skipped": self.skipped,
                "not_scored": self.not_scored, "tests": self.result.tests, "seconds": round(self.seconds, 2)}


def prompt_hash() -> str:
    """sha256 of what every prompt of a run shares: the repair instructions and the sentinel schema."""
    from synth import schema
    from synth.program import INSTRUCTIONS

    return hashlib.sha256((INSTRUCTIONS + "\0" + (schema.__doc__ or "")).encode()).hexdigest()


def load_bench(store, bench: str, paths: Sequence[str]) -> tuple[list[EvalItem], list[Skipped], list[dict]]:
    """The items of a bench and the files they came from (path, sha256); replit sets by name or path."""
    if bench not in BENCHES:
        raise EvalError(f"bench {bench!r}: use one of {', '.join(BENCHES)}")
    paths = list(paths)
    if bench == "replit":
        paths = [_eval_set_path(store, p) for p in paths] or _all_eval_sets(store)
    if not paths:
        raise EvalError(f"bench {bench}: give the data with --data FILE")
    if bench == "debugbench":
        items, skipped = load_debugbench(paths)
    else:
        items, skipped = load_jsonl(paths, bench)
    return items, skipped, [_file_info(p) for p in paths]


def _eval_sets(store) -> dict[str, str]:
    if not _has(store, "eval_sets"):
        return {}
    sets = read_table(store, "eval_sets", columns=["name", "path"])
    return dict(sorted(zip(sets.column("name").to_pylist(), sets.column("path").to_pylist(), strict=True)))


def _eval_set_path(store, name_or_path: str) -> str:
    if Path(name_or_path).exists():
        return name_or_path
    sets = _eval_sets(store)
    if name_or_path not in sets:
        raise EvalError(f"no eval set or file {name_or_path!r} (frozen sets: {', '.join(sets) or 'none yet'}; "
                        "freeze one with `otlake eval make-replit NAME`)")
    return sets[name_or_path]


def _all_eval_sets(store) -> list[str]:
    sets = _eval_sets(store)
    if not sets:
        raise EvalError("no frozen Replit-style eval set: freeze one with `otlake eval make-replit NAME`, "
                        "or pass --data FILE")
    return list(sets.values())


def _file_info(path: str) -> dict:
    p = Path(path)
    files = sorted(x for x in p.iterdir() if x.is_file()) if p.is_dir() else [p]
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    return {"path": str(p.absolute()), "sha256": digest.hexdigest()}


def fewshot_demos(items: Sequence[EvalItem], n: int, check) -> list:
    """n demos from the bench: the items with the shortest reference diffs, one subtype after another."""
    from synth.linediff import render
    from synth.program import FewShotExample

    from .run import prepare_targets

    def size(item: EvalItem) -> tuple:
        return (len(render(item.code, item.reference).splitlines()), item.id)

    by_subtype: dict[str, list[EvalItem]] = {}
    for item in sorted(items, key=size):
        by_subtype.setdefault(item.subtype or item.category, []).append(item)
    # a few candidates per subtype: some have no target diagnostic
    candidates = [i for group in by_subtype.values() for i in group[:3]]
    ready, _ = prepare_targets(candidates, check)
    ready_by: dict[str, list[EvalItem]] = {}
    for item in sorted(ready, key=size):
        ready_by.setdefault(item.subtype or item.category, []).append(item)
    demos: list = []
    while len(demos) < n and any(ready_by.values()):
        for group in ready_by.values():
            if group and len(demos) < n:
                item = group.pop(0)
                demos.append(FewShotExample(item.id, item.prompt(), render(item.code, item.reference)))
    return demos


class EvalStage:
    """Judge `model` on the chosen items, a batch of `options.batch` items per partition; see the module."""

    name = "eval"
    reads: tuple[str, ...] = ()
    writes = ("eval_items", "eval_runs")
    commit_partitions = False  # a run's rows are committed whole, in reduce

    def __init__(self, bench: str, files: list[dict], items: Sequence[EvalItem], skipped: Sequence[Skipped],
                 model, options: RunOptions, out: str | None = None) -> None:
        self.bench, self.files, self.model, self.options, self.out = bench, files, model, options, out
        self.skipped = list(skipped)
        size = max(1, options.batch)
        self.batches = {f"items-{n:05d}": list(items[start:start + size])
                        for n, start in enumerate(range(0, len(items), size))}
        self.report: EvalReport | None = None

    def pending(self, store, params: Mapping) -> list[str]:
        return list(self.batches)

    def process(self, part: Partition, ctx: Context) -> StageResult:
        items = self.batches[part.key]
        check = getattr(ctx.checker, "check", ctx.checker)
        result = evaluate(items, self.model, self.options, check)
        scored = {r["item_id"] for r in result.scored()}
        dropped = Counter(r["skip_reason"].split(":")[0] for r in result.rows if r["status"] == "skipped")
        return StageResult(count_in=len(items), count_out=len(scored), dropped=dropped,
                           seconds=Counter(result.seconds),
                           extra={"rows": result.rows, "tests": result.test_counts,
                                  "scored": [item_part(i) for i in items if i.id in scored]})

    def reduce(self, results: Sequence[StageResult], ctx: Context) -> StageResult:
        scored_rows = [r for res in results for r in res.extra["rows"] if r["status"] == "scored"]
        no_target = [r for res in results for r in res.extra["rows"] if r["status"] != "scored"]
        rows = scored_rows + skipped_rows(self.skipped) + no_target
        steps: Counter = Counter()
        tests: dict | None = None
        digest = hashlib.sha256()
        for res in results:
            steps.update(res.seconds)
            tests = add_counts(tests, res.extra["tests"])
            for part in res.extra["scored"]:  # the items as the bench gave them (a target only where it did)
                digest.update(part)
        result = EvalResult(rows, coverage(tests or {}), dict(steps))
        opts = self.options
        k = opts.samples if opts.samples > 1 else None
        report = EvalReport(ctx.run_id, self.bench, self.model.name, result, opts.samples)
        report.metrics = result.summary((), k).get((), {"items": 0})
        report.by_category = {key[0] or "-": v for key, v in result.summary(("category",), k).items()}
        report.by_subtype = {key[0] or "-": v for key, v in result.summary(("subtype",), k).items()}
        report.skipped = dict(Counter(r["skip_reason"].split(":")[0] for r in rows
                                      if r["status"] == "skipped").most_common())
        report.not_scored = result.not_scored()
        now_us = time.time_ns() // 1000
        report.seconds = (now_us - ctx.now_us) / 1e6
        timings = {**{k_: round(v, 3) for k_, v in steps.items()}, "total": round(report.seconds, 3)}
        scored_items = {r["item_id"] for r in scored_rows}
        counts = {"tests": result.tests, "skipped_by_reason": report.skipped, "not_scored": report.not_scored,
                  "out": str(Path(self.out).absolute()) if self.out is not None else None}
        run = {"run_id": ctx.run_id, "bench": self.bench, "model": self.model.name, "status": "done",
               "started_at": ctx.now_us, "finished_at": now_us, "data": _json(self.files),
               "items_sha256": digest.hexdigest(), "model_settings": _json(self.model.settings()),
               "prompt_hash": prompt_hash(), "sampling": _json(asdict(opts.sampling)), "samples": opts.samples,
               "items": len(scored_items), "skipped": sum(report.skipped.values()), "metrics": _json(report.metrics),
               "by_category": _json(report.by_category), "counts": _json(counts), "timings": _json(timings)}
        self.report = report
        # the records that could not be read are counted here; the batches counted their own items
        unreadable = Counter(s.reason.split(":")[0] for s in self.skipped)
        return StageResult(outputs={"eval_items": pa.Table.from_pylist(rows, ITEMS_SCHEMA),
                                    "eval_runs": pa.Table.from_pylist([run], RUNS_SCHEMA)},
                           count_in=len(self.skipped), dropped=unreadable)


def list_runs(store) -> tuple[list[str], list[tuple]]:
    """Past runs, newest first: id, bench, model, status, items, the main metrics (None: not in that run), when.

    Runs that did not finish (failed, interrupted, still running) come from the run log: they have no
    eval_runs row."""
    columns = ["run_id", "bench", "model", "status", "items", "samples", "target_as_reference", "deletes_only",
               "applies", "target_gone", "functional", "ast_exact", "started"]
    rows = []
    done = set()
    if _has(store, "eval_runs"):
        for r in read_table(store, "eval_runs", columns=["run_id", "bench", "model", "status", "items", "samples",
                                                    "metrics", "started_at"]).to_pylist():
            metrics = _loads(r["metrics"]) or {}
            done.add(r["run_id"])
            rows.append((r["started_at"], r["run_id"], r["bench"], r["model"], r["status"], r["items"], r["samples"],
                         *(_float(metrics.get(m)) for m in columns[6:12])))
    for r in read_table(store, "runs", {"stage": "eval"}, ["run_id", "status", "started_at", "params"]).to_pylist():
        if r["run_id"] not in done:
            params = _loads(r["params"]) or {}
            rows.append((r["started_at"], r["run_id"], params.get("bench"), params.get("model"), r["status"], None,
                         params.get("samples"), *([None] * 6)))
    rows.sort(key=lambda r: (-r[0].timestamp(), r[1]))
    return columns, [(*r[1:], r[0].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")) for r in rows]


def baseline_folders(store, run_ids: Sequence[str]) -> list[tuple[str, str, str]]:
    """(model, bench, --out folder) of the newest done oracle and noop runs over the same items as run_ids."""
    if not _has(store, "eval_runs"):
        return []
    runs = read_table(store, "eval_runs", {"status": "done"},
                 ["run_id", "model", "bench", "items_sha256", "counts", "started_at"]).to_pylist()
    items = {r["items_sha256"] for r in runs if r["run_id"] in set(run_ids)}
    newest: dict[tuple[str, str], dict] = {}
    for r in runs:
        key = (r["model"], r["bench"])
        if r["model"] in ("oracle", "noop") and r["items_sha256"] in items and (
                key not in newest or r["started_at"] > newest[key]["started_at"]):
            newest[key] = r
    return [(m, b, (_loads(r["counts"]) or {}).get("out")) for (m, b), r in sorted(newest.items())]


def _loads(text):
    return orjson.loads(text) if isinstance(text, str | bytes) else text


def _float(value):
    return None if value is None else float(value)


# ---- make-replit -------------------------------------------------------------------------------------------

@dataclass
class ReplitSet:
    """What `otlake eval make-replit` froze."""

    name: str
    path: Path
    sha256: str
    counts: dict
    against: list[str]


class ReplitStage:
    """Freeze a held-out Replit-style eval set; `choose` first, then one partition per chosen pair's repl."""

    name = "make-replit"
    reads = ("path_events", "ot_ops", "file_breaks")
    writes = ("eval_sets",)
    commit_partitions = False  # the file and its eval_sets row are written whole, in reduce

    def __init__(self, name: str, out: Path, per_rule: int, seed: int, against: list[str]) -> None:
        self.set_name, self.out, self.per_rule, self.seed, self.against = name, Path(out), per_rule, seed, against
        self.chosen = None
        self.seqs: dict[str, int] = {}
        self.frozen: ReplitSet | None = None

    def params(self) -> dict:
        return {"per_rule": self.per_rule, "seed": self.seed, "decontaminated_against": self.against}

    def choose(self, store) -> None:
        """Choose the pairs (EvalError when none qualifies): verified fixes of public repls, a pair at most once
        (its user fix first, else the first LM's), none in a training set built so far."""
        from ot_replay.timeline import timestamps_us
        from synth.hygiene.decontam import Contamination, load_eval_set
        from synth.hygiene.dedup import MinHasher
        from synth.hygiene.example import Example

        from .replit import choose_items

        sets = [load_eval_set(p) for p in self.against]
        contamination = Contamination(sets, MinHasher()) if sets else None
        in_datasets = set(read_table(store, "dataset_examples", columns=["pair_id"]).column("pair_id").to_pylist()) \
            if _has(store, "dataset_examples") else set()
        repls = read_table(store, "repls", columns=["repl_id", "is_private"])
        public = {r for r, p in zip(repls.column("repl_id").to_pylist(), repls.column("is_private").to_pylist(),
                                    strict=True) if is_public(p)}
        diffs = read_table(store, "diffs", {"accepted": True}, ["pair_id", "source", "model", "diff", "fixed"])
        best: dict[str, dict] = {}
        for d in diffs.to_pylist():
            if d["diff"] is None or d["fixed"] is None:
                continue
            rank = (d["source"] != "user", d["model"] is None, d["model"] or "")
            if d["pair_id"] not in best or rank < best[d["pair_id"]]["rank"]:
                best[d["pair_id"]] = {**d, "rank": rank}
        pairs = read_table(store, "pairs", {"pair_id": sorted(best)},
                      ["pair_id", "repl_id", "ts", "path", "code", "message", "start_line", "content", "seq"])
        us = timestamps_us(pairs.column("ts"))
        rows = [(p, u) for p, u in zip(pairs.to_pylist(), us, strict=True) if p["repl_id"] in public]
        rows.sort(key=lambda r: r[0]["pair_id"])
        candidates = []
        for p, u in rows:
            if p["pair_id"] in in_datasets:
                continue
            d = best[p["pair_id"]]
            candidates.append(Example(p["pair_id"], d["source"], d["model"], p["repl_id"], u, p["path"], p["code"],
                                      p["message"], p["start_line"] + 1, p["content"], d["diff"], d["fixed"]))
        chosen = choose_items(candidates, self.per_rule, self.seed, contamination)
        if len(rows) - len(candidates):
            chosen.candidates += len(rows) - len(candidates)
            chosen.dropped["in_a_dataset"] += len(rows) - len(candidates)
        if not chosen.records:
            raise EvalError(f"no pair qualifies for an eval set ({_dropped(chosen.counts())}): mine verified fixes "
                            "first with `otlake synth`")
        self.chosen = chosen
        self.seqs = {p["pair_id"]: p["seq"] for p, _u in rows}

    def pending(self, store, params: Mapping) -> list[str]:
        return sorted({r["repl_id"] for r in self.chosen.records})

    def process(self, part: Partition, ctx: Context) -> StageResult:
        """The files beside each chosen pair's file at its instant (imports resolve)."""
        from ot_replay.timeline import Timeline

        t = part.tables
        history = Timeline.from_partition(part.key, t)
        records = [r for r in self.chosen.records if r["repl_id"] == part.key]
        steps = {r["id"]: history.steps_before(self.seqs[r["id"]]) for r in records}
        states = history.states_after(list(steps.values()))
        files = {r["id"]: {k: v for k, v in states[steps[r["id"]]].items() if v is not None and k != r["path"]}
                 for r in records}
        return StageResult(extra={"files": [files]})

    def reduce(self, results: Sequence[StageResult], ctx: Context) -> StageResult:
        files = {k: v for res in results for got in res.extra["files"] for k, v in got.items()}
        records = [{**r, "files": files[r["id"]]} for r in self.chosen.records]
        data = b"".join(orjson.dumps(rec) + b"\n" for rec in records)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_name(self.out.name + ".partial")
        tmp.write_bytes(data)
        tmp.replace(self.out)
        digest = hashlib.sha256(data).hexdigest()
        counts = self.chosen.counts()
        row = {"name": self.set_name, "created_at": time.time_ns() // 1000, "path": str(self.out.absolute()),
               "sha256": digest, "items": len(records), "params": _json(self.params()), "counts": _json(counts)}
        self.frozen = ReplitSet(self.set_name, self.out, digest, counts, self.against)
        return StageResult(outputs={"eval_sets": pa.Table.from_pylist([row], SETS_SCHEMA)},
                           count_in=counts["candidates"], count_out=counts["kept"], dropped=Counter(counts["dropped"]))


def _dropped(counts: dict) -> str:
    return f"{counts['candidates']} candidates; " + (", ".join(f"{k} {v}" for k, v in counts["dropped"].items())
                                                     or "none dropped")
