"""Eval runs wired to the warehouse: load a bench, judge a model with eval/, store `eval_runs` and `eval_items`."""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from eval.errors import EvalError
from eval.items import EvalItem, Skipped, item_digest, load_debugbench, load_jsonl
from eval.run import EvalResult, RunOptions, evaluate, select
from events.privacy import public_sql
from warehouse.eval_schema import ITEM_COLUMNS, create_eval_tables, has_eval_tables
from warehouse.stores import DuckDBRunLog

BENCHES = ("debugbench", "replit", "jsonl")


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


def load_bench(con, bench: str, data: Sequence[str]) -> tuple[list[EvalItem], list[Skipped], list[dict]]:
    """The items of a bench and the files they came from (path, sha256)."""
    if bench not in BENCHES:
        raise EvalError(f"bench {bench!r}: use one of {', '.join(BENCHES)}")
    paths = list(data)
    if bench == "debugbench" and not paths:
        from .dataset_cli import DEBUGBENCH

        paths = [os.environ.get("OTLAKE_DEBUGBENCH") or str(DEBUGBENCH)]
    if bench == "replit":
        paths = [_eval_set_path(con, p) for p in paths] or _all_eval_sets(con)
    if not paths:
        raise EvalError(f"bench {bench}: give the data with --data FILE")
    if bench == "debugbench":
        items, skipped = load_debugbench(paths)
    else:
        items, skipped = load_jsonl(paths, bench)
    return items, skipped, [_file_info(p) for p in paths]


def run_eval(wh, bench: str, data: Sequence[str], model, options: RunOptions, seed: int, check,
             progress: Callable[[str], None] | None = None, out: str | os.PathLike | None = None,
             fewshot: int = 0) -> EvalReport:
    """Judge `model` on a bench and store the run; `check` runs the meta-LSP on snapshots.

    With `fewshot` > 0 (DSPy models), that many items of the bench become demos (their reference diff shown
    before every prompt) and are left out of the items judged.
    """
    start = time.perf_counter()
    con = wh.con
    create_eval_tables(con)
    items, skipped, files = load_bench(con, bench, data)
    if fewshot:
        if not hasattr(model, "fewshot"):
            raise EvalError(f"--fewshot: model {model.name} takes no demos (only DSPy models do)")
        demos = fewshot_demos(items, fewshot, check)
        model.fewshot = demos
        taken = {d.id for d in demos}
        items = [i for i in items if i.id not in taken]
    chosen = select(items, options.limit, seed)
    sampling = asdict(options.sampling)
    runs = DuckDBRunLog(con)  # the one run log and run-id scheme of every stage
    run_id = runs.start("eval", {"bench": bench, "data": files, "model": model.name, "samples": options.samples,
                                 "limit": options.limit, "seed": seed, "fewshot": fewshot, "sampling": sampling})
    con.execute("""INSERT INTO eval_runs (run_id, bench, model, status, started_at, data, model_settings, prompt_hash,
                                          sampling, samples)
                   VALUES (?, ?, ?, 'running', now(), ?, ?, ?, ?, ?)""",
                [run_id, bench, model.name, _json(files), _json(model.settings()), prompt_hash(), _json(sampling),
                 options.samples])
    try:
        result = evaluate(chosen, model, options, check, skipped, progress)
    except BaseException:
        con.execute("UPDATE eval_runs SET status = 'failed', finished_at = now() WHERE run_id = ?", [run_id])
        runs.finish(run_id, "failed", {"in": len(chosen) + len(skipped)},
                    {"seconds": round(time.perf_counter() - start, 3)})
        raise
    k = options.samples if options.samples > 1 else None
    report = EvalReport(run_id, bench, model.name, result, options.samples)
    report.metrics = result.summary((), k).get((), {"items": 0})
    report.by_category = {key[0] or "-": v for key, v in result.summary(("category",), k).items()}
    report.by_subtype = {key[0] or "-": v for key, v in result.summary(("subtype",), k).items()}
    report.skipped = dict(Counter(r["skip_reason"].split(":")[0] for r in result.rows
                                  if r["status"] == "skipped").most_common())
    report.not_scored = result.not_scored()
    report.seconds = time.perf_counter() - start
    timings = {**{k_: round(v, 3) for k_, v in result.seconds.items()}, "total": round(report.seconds, 3)}
    scored_items = {r["item_id"] for r in result.scored()}
    counts = {"tests": result.tests, "skipped_by_reason": report.skipped, "not_scored": report.not_scored,
              "out": str(Path(out).absolute()) if out is not None else None}
    ready = [i for i in chosen if i.id in scored_items]
    con.execute("BEGIN")
    try:
        rows = [tuple(({**r, "run_id": run_id}).get(c) for c in ITEM_COLUMNS) for r in result.rows]
        if rows:
            con.executemany(f"INSERT INTO eval_items ({', '.join(ITEM_COLUMNS)}) VALUES "
                            f"({', '.join('?' * len(ITEM_COLUMNS))})", rows)
        con.execute("""UPDATE eval_runs SET status = 'done', finished_at = now(), items_sha256 = ?, items = ?,
                       skipped = ?, metrics = ?, by_category = ?, counts = ?, timings = ? WHERE run_id = ?""",
                    [item_digest(ready), len(scored_items), sum(report.skipped.values()), _json(report.metrics),
                     _json(report.by_category), _json(counts), _json(timings), run_id])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        runs.finish(run_id, "failed", {"in": len(chosen) + len(skipped)}, timings)
        raise
    # records in: the items chosen and the records that could not be read; out: the items scored; the rest
    # skipped by reason (no target diagnostic, unreadable)
    runs.finish(run_id, "done", {"in": len(chosen) + len(skipped), "out": len(scored_items),
                                 "dropped": report.skipped, "quarantined": 0}, timings)
    return report


def fewshot_demos(items: Sequence[EvalItem], n: int, check) -> list:
    """n demos from the bench: the items with the shortest reference diffs, one subtype after another."""
    from eval.run import prepare_targets
    from synth.linediff import render
    from synth.program import FewShotExample

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


def list_runs(con) -> tuple[list[str], list[tuple]]:
    """Past runs, newest first: id, bench, model, items, the main metrics, when (NULL: not in that run)."""
    if not has_eval_tables(con):
        return [], []
    cur = con.execute("""
        SELECT run_id, bench, model, status, items, samples,
               CAST(metrics->>'target_as_reference' AS DOUBLE) AS target_as_reference,
               CAST(metrics->>'deletes_only' AS DOUBLE) AS deletes_only,
               CAST(metrics->>'applies' AS DOUBLE) AS applies, CAST(metrics->>'target_gone' AS DOUBLE) AS target_gone,
               CAST(metrics->>'functional' AS DOUBLE) AS functional, CAST(metrics->>'ast_exact' AS DOUBLE) AS ast_exact,
               strftime(started_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ') AS started
        FROM eval_runs ORDER BY started_at DESC, run_id""")
    columns = [d[0] for d in cur.description]
    return columns, cur.fetchall()


def _eval_set_path(con, name_or_path: str) -> str:
    if Path(name_or_path).exists():
        return name_or_path
    rows = con.execute("SELECT path FROM eval_sets WHERE name = ?", [name_or_path]).fetchall()
    if not rows:
        names = [r[0] for r in con.execute("SELECT name FROM eval_sets ORDER BY 1").fetchall()]
        raise EvalError(f"no eval set or file {name_or_path!r} (frozen sets: {', '.join(names) or 'none yet'}; "
                        "freeze one with `otlake eval make-replit NAME`)")
    return rows[0][0]


def _all_eval_sets(con) -> list[str]:
    rows = con.execute("SELECT path FROM eval_sets ORDER BY name").fetchall()
    if not rows:
        raise EvalError("no frozen Replit-style eval set: freeze one with `otlake eval make-replit NAME`, "
                        "or pass --data FILE")
    return [r[0] for r in rows]


def _file_info(path: str) -> dict:
    p = Path(path)
    files = sorted(x for x in p.iterdir() if x.is_file()) if p.is_dir() else [p]
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    return {"path": str(p.absolute()), "sha256": digest.hexdigest()}


def _json(value) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


@dataclass
class ReplitSet:
    """What `otlake eval make-replit` froze."""

    name: str
    path: Path
    sha256: str
    counts: dict
    against: list[str]


def make_replit(wh, name: str, out: str | os.PathLike, per_rule: int, seed: int = 0, overwrite: bool = False,
                extra_sets: Sequence[str] = ()) -> ReplitSet:
    """Freeze a held-out Replit-style eval set from the warehouse and register it in `eval_sets`."""
    from eval.replit import choose_items
    from synth.hygiene.decontam import Contamination, load_eval_set
    from synth.hygiene.dedup import MinHasher
    from synth.hygiene.example import Example
    from warehouse.dataset_schema import create_dataset_tables
    from warehouse.history import ReplHistory

    con = wh.con
    create_eval_tables(con)
    create_dataset_tables(con)
    if con.execute("SELECT count(*) FROM eval_sets WHERE name = ?", [name]).fetchall()[0][0] and not overwrite:
        raise EvalError(f"eval set {name!r} exists: choose another name or pass --overwrite")
    out = Path(out)
    if out.exists() and not overwrite:
        raise EvalError(f"{out} exists: choose another file or pass --overwrite")
    # every training set built so far: its examples' pairs are out, and its texts decontaminate the rest
    in_datasets = {r[0] for r in con.execute("SELECT DISTINCT pair_id FROM dataset_examples").fetchall()}
    against = [str(Path(d, f"{split}.jsonl")) for (d,) in con.execute("SELECT out_dir FROM datasets ORDER BY 1")
               .fetchall() for split in ("train", "eval") if Path(d, f"{split}.jsonl").is_file()]
    against += list(extra_sets)
    sets = [load_eval_set(p) for p in against]
    contamination = Contamination(sets, MinHasher()) if sets else None
    rows = con.execute(f"""
        SELECT p.pair_id, d.source, d.model, p.repl_id, epoch_us(p.ts), p.path, p.code, p.message, p.start_line,
               p.content, d.diff, d.fixed, p.seq
        FROM pairs p JOIN diffs d USING (pair_id) JOIN repls r USING (repl_id)
        WHERE d.accepted AND d.diff IS NOT NULL AND d.fixed IS NOT NULL AND {public_sql("r.is_private")}
        QUALIFY row_number() OVER (PARTITION BY p.pair_id ORDER BY d.source = 'user' DESC, d.model) = 1
        ORDER BY p.pair_id""").fetchall()
    candidates = [Example(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8] + 1, r[9], r[10], r[11])
                  for r in rows if r[0] not in in_datasets]
    chosen = choose_items(candidates, per_rule, seed, contamination)
    chosen.candidates += len(rows) - len(candidates)
    if len(rows) - len(candidates):
        chosen.dropped["in_a_dataset"] += len(rows) - len(candidates)
    seq_of = {r[0]: (r[3], r[12], r[5]) for r in rows}
    by_repl: dict[str, list[dict]] = {}
    for record in chosen.records:
        by_repl.setdefault(record["repl_id"], []).append(record)
    for repl_id, records in by_repl.items():
        history = ReplHistory(con, repl_id)
        steps = {rec["id"]: history.steps_before(seq_of[rec["id"]][1]) for rec in records}
        states = history.states_after(list(steps.values()))
        for rec in records:
            rec["files"] = {k: v for k, v in states[steps[rec["id"]]].items() if v is not None and k != rec["path"]}
    if not chosen.records:
        raise EvalError(f"no pair qualifies for an eval set ({_dropped(chosen.counts())}): mine verified fixes "
                        "first with `otlake synth`")
    data = b"".join(orjson.dumps(rec) + b"\n" for rec in chosen.records)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_bytes(data)
    tmp.replace(out)
    digest = hashlib.sha256(data).hexdigest()
    params = {"per_rule": per_rule, "seed": seed, "decontaminated_against": against}
    runs = DuckDBRunLog(con)
    run_id = runs.start("make-replit", {"name": name, "out": str(out.absolute()), **params})
    counts = chosen.counts()
    runs.finish(run_id, "done", {"in": counts["candidates"], "out": counts["kept"], "dropped": counts["dropped"],
                                 "quarantined": 0}, {})
    con.execute("DELETE FROM eval_sets WHERE name = ?", [name])
    con.execute("INSERT INTO eval_sets VALUES (?, now(), ?, ?, ?, ?, ?)",
                [name, str(out.absolute()), digest, len(chosen.records), _json(params), _json(chosen.counts())])
    return ReplitSet(name, out, digest, chosen.counts(), against)


def _dropped(counts: dict) -> str:
    return f"{counts['candidates']} candidates; " + (", ".join(f"{k} {v}" for k, v in counts["dropped"].items())
                                                     or "none dropped")


@dataclass
class Injected:
    """What `otlake eval inject` planted and kept, per subtype, and the files written."""

    records: dict[str, list[dict]] = field(default_factory=dict)
    counts: dict[str, Counter] = field(default_factory=dict)
    bad: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


CODE_FIELDS = ("oracle_code", "code", "solution", "fixed_code")


def read_solutions(path: str | os.PathLike) -> tuple[list[dict], list[str]]:
    """Correct solutions from a JSON list or JSONL file: each needs its code under one of CODE_FIELDS."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise EvalError(f"{path}: not readable ({e.strerror})") from e
    try:
        records = orjson.loads(data) if data.lstrip()[:1] == b"[" else [
            orjson.loads(line) for line in data.splitlines() if line.strip()]
    except orjson.JSONDecodeError as e:
        raise EvalError(f"{path}: not a JSON list or JSONL ({e})") from e
    good, bad = [], []
    for n, record in enumerate(records, 1):
        code = next((record.get(f) for f in CODE_FIELDS if isinstance(record, dict)
                     and isinstance(record.get(f), str)), None)
        if code is None:
            bad.append(f"{path.name}: record {n}: no code (one of {', '.join(CODE_FIELDS)})")
            continue
        rid = str(record.get("slug") or record.get("id") or record.get("name") or f"solution-{n}")
        good.append({**record, "slug": rid, "oracle_code": code})
    return good, bad


def inject_bugs(solutions: Sequence[dict], subtypes: Sequence[str], seed: int, pool, out: str | os.PathLike,
                bad: Sequence[str] = (), injectors: Sequence[str] = ("rules",), lm=None) -> Injected:
    """Plant one bug per (solution, subtype, injector), keep what the meta-LSP flags, write DebugBench files.

    Injectors: 'rules' (eval.inject, deterministic) and 'lm' (eval.inject_lm, through DSPy with `lm`).
    """
    from eval.inject import CATEGORY, inject, keep_flagged
    from lsp_runner.syntax import python_parses

    result = Injected(bad=list(bad))
    planted = []
    asks = []
    for subtype in subtypes:
        counts = result.counts.setdefault(subtype, Counter())
        for record in solutions:
            if not python_parses(record["oracle_code"]):
                counts["solutions"] += len(injectors)
                counts["dropped:solution_does_not_parse"] += len(injectors)
                continue
            for injector in injectors:
                counts["solutions"] += 1
                if injector == "lm":
                    asks.append((subtype, record))
                    continue
                injection = inject(record["oracle_code"], subtype, seed)
                if injection is None:
                    counts["dropped:no_site"] += 1
                    continue
                planted.append((f"{subtype}\0{record['slug']}\0rules", injection, record))
    if asks:
        from eval.inject_lm import lm_inject

        answers = lm_inject([(r["slug"], r["oracle_code"], st) for st, r in asks], lm)
        for (subtype, record), got in zip(asks, answers):
            if got.injection is None:
                result.counts[subtype][f"dropped:lm_{got.reason.split(':')[0]}"] += 1
            else:
                planted.append((f"{subtype}\0{record['slug']}\0lm", got.injection, record))
    verdicts = keep_flagged([(key, injection) for key, injection, _r in planted], pool)
    for (key, injection, record), (_key, _inj, diagnostic, reason) in zip(planted, verdicts):
        subtype = key.split("\0")[0]
        if reason:
            result.counts[subtype][f"dropped:{reason.split(':')[0]}"] += 1
            continue
        result.counts[subtype]["kept"] += 1
        result.records.setdefault(subtype, []).append({
            **{k: v for k, v in record.items() if k not in CODE_FIELDS}, "oracle_code": record["oracle_code"],
            "injector": key.split("\0")[2],
            "buggy_code": injection.buggy_code, "explanations": injection.explanation, "subtype": subtype,
            "category": CATEGORY[subtype], "planted_line": injection.line,
            "diagnostic": {"code": diagnostic.code, "message": diagnostic.message, "line": diagnostic.start_line + 1}
            if diagnostic else None, "seed": seed})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for subtype, records in sorted(result.records.items()):
        path = out / f"python3_{subtype}.json"
        path.write_bytes(orjson.dumps(records, option=orjson.OPT_INDENT_2))
        result.files.append(path)
    return result
