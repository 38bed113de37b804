"""The synth stage: a verified numbered line diff for each pair, from the user's own fix or from an LM.

Each pair gets at most one row per (source, model) in `diffs`, accepted or
not, with every verification result; pairs that already have one are
skipped, so a killed run resumes. A stage of the pipeline contract
(`SynthStage`, one source per run, one repl per partition; otlake.stages.run_synth
runs it): a repl's diffs are one commit, and its pairs go to the checker in
chunks of `batch_pairs` (one pool call, one ruff process each). Which pairs a
run does (`limit`, `pair_ids`, public repls only) and the LM's few-shot pool
(verified user fixes, read once before the partitions) are decided on the
driver, in `pending`; `process` reads nothing else.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import ClassVar

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from events.privacy import is_public
from events.stages import Context, Partition, StageResult, read_table
from lsp_runner.config import DEFAULT_CONFIG, LspConfig
from lsp_runner.diagnostic import Diagnostic
from lsp_runner.snapshot import Snapshot
from lsp_runner.syntax import prefetch_syntax_errors
from ot_replay.timeline import Timeline, timestamps_us
from synth.attribution import line_map, target_still_reported
from synth.linediff import render
from synth.usermine import (
    adds_no_syntax_error,
    candidate_prefixes,
    is_syntax_target,
    pause_points,
    unresolved_names,
    windowed_candidates,
)
from synth.verify import Verification, count_steps, lsp_snapshots, lsp_verdict, verify_static

SOURCES = ("user", "lm")
# failures of the machinery, not verdicts on a diff: nothing is stored, so the next run tries again
RETRYABLE = ("lsp_failed", "judge_error")
RETRYABLE_LM = ("rate_limited", "timeout", "server_error", "connection_error")
USER_MODEL = "user"
ROUND = 4  # later states per pair checked in one round of user-fix mining


@dataclass(frozen=True)
class SynthOptions:
    """Which diffs to make and how."""

    sources: tuple[str, ...] = ("user",)
    lm: object | None = None          # synth.lm.LmSettings, for source lm
    limit: int | None = None          # pairs per source, at most
    pair_ids: frozenset[str] | None = None  # only these pairs (None: every pair)
    judge: bool = False               # ask an LM judge after the LSP steps (needs lm)
    fewshot: int = 3                  # verified examples shown to the LM
    workers: int = 1
    batch_pairs: int = 32             # pairs per checker call (one ruff process each)
    config: LspConfig = DEFAULT_CONFIG


@dataclass
class SourceReport:
    pairs: int = 0
    accepted: int = 0
    no_candidate: Counter = field(default_factory=Counter)
    deferred: Counter = field(default_factory=Counter)  # infrastructure failures: no row, the next run retries
    verifications: list[Verification] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict:
        return {"pairs": self.pairs, "accepted": self.accepted, "no_candidate": dict(self.no_candidate),
                "deferred": dict(self.deferred),
                "candidates": len(self.verifications), "steps": count_steps(self.verifications),
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass
class SynthReport:
    run_id: str  # the runs' ids, one per source (comma-separated)
    already_done: int = 0
    by_source: dict[str, SourceReport] = field(default_factory=lambda: defaultdict(SourceReport))
    seconds: float = 0.0
    verify_seconds: float = 0.0
    step_seconds: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"already_done": self.already_done, "by_source": {s: r.as_dict() for s, r in self.by_source.items()}}

    def summary(self) -> list[str]:
        lines = []
        for source, r in self.by_source.items():
            none = sum(r.no_candidate.values())
            later = sum(r.deferred.values())
            lines.append(f"{source}: pairs {r.pairs} = accepted {r.accepted} + rejected "
                         f"{len(r.verifications) - r.accepted} + no candidate {none}"
                         + (f" ({', '.join(f'{k} {v}' for k, v in sorted(r.no_candidate.items()))})" if none else "")
                         + (f" + deferred to the next run {later} ({', '.join(f'{k} {v}' for k, v in sorted(r.deferred.items()))})"
                            if later else ""))
        return lines


@dataclass
class _Pair:
    pair_id: str
    repl_id: str
    seq: int
    path: str
    us: int
    target: Diagnostic
    content: str


class SynthStage:
    """The synth stage for one source (events.stages contract): one repl per partition.

    Records: the pairs this run makes a diff for. Each gives a `diffs` row (out: accepted, rejected, or no
    candidate) or is deferred (the checker, the LM or the judge failed: no row, the next run retries). The
    diffs rows are the markers. `pending` picks the pairs (public repls, no diff from this source and model
    yet, `pair_ids`, `limit` in the order repl, instant, pair) and, for the LM, the few-shot pool.
    """

    name = "synth"
    reads = ("pairs", "path_events", "ot_ops", "file_breaks")
    columns: ClassVar[dict[str, tuple[str, ...]]] = {}
    writes = ("diffs",)

    def __init__(self, source: str, options: SynthOptions) -> None:
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; use user, lm or both")
        self.source, self.options = source, options
        self.model = USER_MODEL if source == "user" else options.lm.model
        self.todo: frozenset[str] = frozenset()
        self.already_done = 0
        self.fewshot: _FewShotPool | None = None

    def pending(self, store, params) -> list[str]:
        pairs = read_table(store, "pairs", columns=["pair_id", "repl_id", "ts"])
        repls = read_table(store, "repls", columns=["repl_id", "is_private"])
        public = {r for r, private in zip(repls.column("repl_id").to_pylist(), repls.column("is_private").to_pylist(),
                                          strict=True) if is_public(private)}
        done = set(read_table(store, "diffs", {"source": self.source, "model": self.model},
                              ["pair_id"]).column("pair_id").to_pylist())
        order = sorted(zip(pairs.column("repl_id").to_pylist(), timestamps_us(pairs.column("ts")),
                           pairs.column("pair_id").to_pylist(), strict=True))
        only, limit = self.options.pair_ids, self.options.limit
        todo, repl_ids = [], set()
        for repl_id, _, pid in order:
            if repl_id not in public or (only is not None and pid not in only):
                continue
            if pid in done:
                self.already_done += 1
            elif limit is None or len(todo) < limit:
                todo.append(pid)
                repl_ids.add(repl_id)
        self.todo = frozenset(todo)
        if self.source == "lm" and self.options.fewshot and todo:
            self.fewshot = _FewShotPool.read(store, self.options.fewshot)
        return sorted(repl_ids)

    def process(self, part: Partition, ctx: Context) -> StageResult:
        rows = part.tables["pairs"]
        rows = rows.filter(pc.is_in(rows.column("pair_id"), pa.array(sorted(self.todo), pa.string())))
        todo = sorted(_pairs(rows), key=lambda p: (p.us, p.pair_id))
        t = part.tables
        history = Timeline.from_partition(part.key, t)
        report = SynthReport("")
        out = []
        for start in range(0, len(todo), self.options.batch_pairs):
            batch = todo[start:start + self.options.batch_pairs]
            if self.source == "user":
                out += _user_batch(history, ctx.checker, batch, report)
            else:
                out += _lm_batch(history, ctx.checker, batch, self.options, self.fewshot, report)
        stats = report.by_source[self.source]
        clock = time.perf_counter()
        markers = {"diffs": _table(out)} if out else {}
        report.step_seconds["write"] += time.perf_counter() - clock
        return StageResult(
            markers=markers, count_in=stats.pairs, count_out=len(out), dropped=Counter(stats.deferred),
            seconds=Counter(report.step_seconds),
            extra={"accepted": stats.accepted, "rejected": len(stats.verifications) - stats.accepted,
                   "no_candidate": dict(stats.no_candidate), "candidates": len(stats.verifications),
                   "prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
                   "verifications": stats.verifications})

    def reduce(self, results, ctx) -> StageResult:
        verifications = [v for r in results for v in r.extra.get("verifications", [])]
        return StageResult(extra={"already_done": self.already_done, "steps": count_steps(verifications)})


def _pairs(rows: pa.Table) -> list[_Pair]:
    cols = {c: rows.column(c).to_pylist() for c in ("pair_id", "repl_id", "seq", "path", "code", "start_line",
                                                    "start_character", "end_line", "end_character", "severity",
                                                    "message", "content")}
    out = []
    for n, us in enumerate(timestamps_us(rows.column("ts"))):
        c = {k: v[n] for k, v in cols.items()}
        target = Diagnostic(c["path"], c["code"], c["start_line"], c["start_character"], c["end_line"],
                            c["end_character"], c["severity"], c["message"])
        out.append(_Pair(c["pair_id"], c["repl_id"], c["seq"], c["path"], us, target, c["content"]))
    return out


@dataclass
class _FewShotPool:
    """Verified user fixes the LM may be shown, read once: per rule its shortest, and the shortest of any rule.

    For a pair of rule R the demos are the n shortest fixes of R, then of any other rule (ties by pair id),
    never the pair's own fix. Each rule keeps its n + 1 shortest: enough with one left out."""

    n: int
    by_rule: dict[str, list[tuple]]
    any_rule: list[tuple]

    @classmethod
    def read(cls, store, n: int) -> _FewShotPool:
        diffs = read_table(store, "diffs", {"source": "user", "accepted": True}, ["pair_id", "diff"])
        fixes = dict(zip(diffs.column("pair_id").to_pylist(), diffs.column("diff").to_pylist(), strict=True))
        by_rule: dict[str, list[tuple]] = defaultdict(list)
        if fixes:
            pairs = read_table(store, "pairs", {"pair_id": sorted(fixes)},
                               ["pair_id", "path", "content", "code", "message", "start_line"])
            for row in pairs.to_pylist():
                diff = fixes[row["pair_id"]]
                by_rule[row["code"]].append((len(diff), row["pair_id"], row, diff))
        for rule in by_rule:
            by_rule[rule] = sorted(by_rule[rule], key=lambda e: e[:2])[:n + 1]
        any_rule = sorted((e for entries in by_rule.values() for e in entries), key=lambda e: e[:2])
        return cls(n, dict(by_rule), any_rule)

    def demos(self, rule: str | None, own: str) -> list:
        """The few-shot examples for one pair: FewShotExample list (a fix that breaks the prompt is left out)."""
        from synth.program import FewShotExample
        from synth.schema import Prompt, SchemaError

        same = [e for e in self.by_rule.get(rule, []) if e[1] != own]
        rest = [e for e in self.any_rule if e[2]["code"] != rule and e[1] != own]
        out = []
        for _, pid, row, diff in (same + rest)[:self.n]:
            try:
                out.append(FewShotExample(pid, Prompt(row["path"], row["content"], row["code"], row["message"],
                                                      row["start_line"] + 1), diff))
            except SchemaError:
                continue
        return out


def _reproduces(result, target: Diagnostic, content: str, candidate: str) -> bool:
    """Whether the candidate still has the target where the target's line went."""
    if target.path in result.skipped:  # not checked at all: it cannot count as fixed
        return True
    found = target_still_reported(target, list(result.diagnostics.get(target.path, ())), line_map(content, candidate))
    return found is not None


def _user_batch(history: Timeline, pool, batch: list[_Pair], report: SynthReport) -> list[dict]:
    """Mine the user's fix of each pair, then verify the candidates together.

    The later states of the pair's file (where the user paused) each give a
    windowed candidate: the pair's code with only that state's changes near
    the error line. Distinct candidates that parse are checked in order; the
    first on which the diagnostic no longer reproduces is the user's fix.
    """
    clock = time.perf_counter()
    others, queues = _mine_candidates(history, batch)
    report.step_seconds["replay"] += time.perf_counter() - clock
    clock = time.perf_counter()
    fixes: dict[str, tuple[int, int, str] | None] = {}
    unchecked: set[str] = set()  # a candidate the servers could not check: no verdict on this pair yet
    while True:  # rounds: the next few candidates of every pair still unresolved
        snapshots, asked = [], []
        for p in batch:
            if p.pair_id in fixes:
                continue
            queue = queues[p.pair_id]
            if not queue:
                fixes[p.pair_id] = None
                continue
            for version, us, text in queue[:ROUND]:
                sid = f"{p.pair_id}:{len(asked)}"  # a state can give several candidates: one id each
                snapshots.append(Snapshot(sid, {**others[p.pair_id], p.path: text}, (p.path,)))
                asked.append((p, version, us, text, sid))
            del queue[:ROUND]
        if not snapshots:
            break
        results = {r.snapshot_id: r for r in pool.check(snapshots)}
        for p, version, us, text, sid in asked:
            result = results.get(sid)
            if p.pair_id in fixes:
                continue
            if result is None or not result.ok:
                unchecked.add(p.pair_id)
                continue
            if not _reproduces(result, p.target, p.content, text):
                fixes[p.pair_id] = (version, us, text)
    report.step_seconds["mine"] += time.perf_counter() - clock
    rows, candidates = [], []
    source = report.by_source["user"]
    for p in batch:
        source.pairs += 1
        fix = fixes.get(p.pair_id)
        if fix is None and p.pair_id in unchecked:
            source.deferred["lsp_failed"] += 1
            continue
        if fix is None:
            source.no_candidate["no_fix_near_the_error"] += 1
            rows.append(_row(p, "user", USER_MODEL, Verification(), "no_fix_near_the_error"))
            continue
        diff = render(p.content, fix[2])
        candidates.append((p, verify_static(p.content, diff, is_lm_output=False), fix, {}))
    rows += _verify_lsp(pool, candidates, others, report, "user")
    return rows


def _mine_candidates(history: Timeline, batch: list[_Pair]) -> tuple[dict, dict]:
    """Per pair: the repl's other files at its instant, and its distinct windowed candidates, in order."""
    others, queues, found = _others(history, batch), {}, []
    for p in batch:
        queues[p.pair_id] = []
        lineage = history.lineage_before(p.path, p.seq)
        if lineage is None:
            continue
        file_id, version = lineage
        later = [(v, t) for v, t in history.versions(file_id) if v > version]
        picks = [later[i] for i in pause_points([t for _, t in later])]
        texts = history.contents(file_id, [v for v, _ in picks])
        found.append((p, [(v, t, texts[v]) for v, t in picks]))
    # every text the candidates are made of and judged by, through one ruff process (then cached)
    prefetch_syntax_errors([p.content for p, _ in found])
    plans = [(p, is_syntax_target(p.target.code), unresolved_names(p.target.code, p.target.message), states)
             for p, states in found]
    prefetch_syntax_errors([c for p, syntax, names, states in plans for _, _, text in states
                            for c in candidate_prefixes(p.content, text, p.target.start_line,
                                                        syntax_target=syntax, names=names)])
    for p, syntax, names, states in plans:
        seen = {p.content}
        queue = queues[p.pair_id]
        for v, t, text in states:
            for candidate in windowed_candidates(p.content, text, p.target.start_line, syntax_target=syntax,
                                                 names=names):
                if candidate in seen:
                    continue
                seen.add(candidate)
                # one that adds a syntax error could never be accepted; other errors may stay
                if adds_no_syntax_error(p.content, candidate):
                    queue.append((v, t, candidate))
    return others, queues


def _verify_lsp(pool, candidates: list[tuple], others: dict, report: SynthReport, source: str,
                model: str = USER_MODEL, judge_settings=None) -> list[dict]:
    """The LSP steps (and the judge) for every candidate that got through the static ones; the diffs rows."""
    clock = time.perf_counter()
    snapshots = []
    for p, v, _, _ in candidates:
        if v.failed is None:
            snapshots += lsp_snapshots(p.pair_id, p.path, p.content, v.fixed, others[p.pair_id])
    results = {r.snapshot_id: r for r in pool.check(snapshots)} if snapshots else {}
    for p, v, _, _ in candidates:
        if v.failed is None:
            lsp_verdict(v, p.target, results[f"{p.pair_id}:before"], results[f"{p.pair_id}:after"], p.content)
    elapsed = time.perf_counter() - clock
    report.verify_seconds += elapsed
    report.step_seconds["verify"] += elapsed
    if judge_settings is not None:
        _judge(candidates, judge_settings, report)
    rows = []
    stats = report.by_source[source]
    for p, v, fix, extra in candidates:
        failed = v.failed
        if failed is not None and failed.reason.startswith(RETRYABLE):
            stats.deferred[failed.reason.split(":")[0]] += 1
            continue
        stats.verifications.append(v)
        stats.accepted += v.accepted
        rows.append(_row(p, source, model, v, None, fix=fix, **extra))
    return rows


def _judge(candidates: list[tuple], settings, report: SynthReport) -> None:
    from synth.judge import judge

    clock = time.perf_counter()
    todo = [(p, v) for p, v, _, _ in candidates if v.failed is None]
    verdicts = judge([(p.pair_id, _prompt(p), v.diff, v.fixed) for p, v in todo], settings) if todo else []
    for (p, v), verdict in zip(todo, verdicts):
        if verdict.error in RETRYABLE_LM:  # the judge could not be asked: decided again next run
            reason = f"judge_error: {verdict.error}"
        elif verdict.error:
            reason = f"judge_bad_answer: {verdict.error}"
        else:
            reason = verdict.reason
        v.record("judge", bool(verdict.accepted) and verdict.error is None, "" if verdict.accepted else reason)
    report.step_seconds["judge"] += time.perf_counter() - clock


def _prompt(p: _Pair):
    from synth.schema import Prompt

    return Prompt(p.path, p.content, p.target.code, p.target.message, p.target.start_line + 1)


def _others(history: Timeline, batch: list[_Pair]) -> dict[str, dict[str, str]]:
    """The repl's other files at each pair's instant (imports resolve against them)."""
    steps = {p.pair_id: history.steps_before(p.seq) for p in batch}
    states = history.states_after(list(steps.values()))
    return {p.pair_id: {k: v for k, v in states[steps[p.pair_id]].items() if v is not None and k != p.path}
            for p in batch}


def _lm_batch(history: Timeline, pool, batch: list[_Pair], options: SynthOptions, fewshot: _FewShotPool | None,
              report: SynthReport) -> list[dict]:
    """Ask the LM for a diff per pair (few-shot from verified user fixes), then verify each answer."""
    from synth.program import synthesize
    from synth.schema import SchemaError

    settings = options.lm
    stats = report.by_source["lm"]
    rows, prompts, by_id = [], [], {}
    for p in batch:
        stats.pairs += 1
        try:
            prompts.append((p.pair_id, _prompt(p)))
            by_id[p.pair_id] = p
        except SchemaError as e:  # e.g. a file too odd for the sentinel prompt
            stats.no_candidate["bad_prompt"] += 1
            rows.append(_row(p, "lm", settings.model, Verification(), "bad_prompt", reason=str(e)))
    clock = time.perf_counter()
    # one program per set of demos: fixes of the pair's rule first, never the pair's own
    by_demos: dict[tuple, tuple[list, list]] = {}
    for pid, prompt in prompts:
        examples = fewshot.demos(prompt.rule, pid) if fewshot is not None else []
        key = tuple(e.id for e in examples)
        by_demos.setdefault(key, (examples, []))[1].append((pid, prompt))
    answers = []
    for examples, group in by_demos.values():
        answers += synthesize(group, settings, fewshot=examples, k=options.fewshot)
    report.step_seconds["lm"] += time.perf_counter() - clock
    others = _others(history, batch)
    candidates = []
    for answer in answers:
        p = by_id[answer.id]
        stats.prompt_tokens += answer.prompt_tokens
        stats.completion_tokens += answer.completion_tokens
        extra = {"prompt_hash": answer.prompt_hash, "fewshot_ids": list(answer.fewshot_ids),
                 "prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
                 "raw": answer.raw or answer.text}
        if answer.error in RETRYABLE_LM:
            stats.deferred[f"lm_{answer.error}"] += 1
            continue
        if answer.error is not None and answer.error not in ("truncated", "unparseable"):
            stats.no_candidate[f"lm_{answer.error.split(':')[0]}"] += 1
            rows.append(_row(p, "lm", answer.model, Verification(), "lm_error", reason=answer.error, **extra))
            continue
        # a truncated or unparseable answer may still hold a whole diff: the chain decides
        candidates.append((p, verify_static(p.content, answer.text), None, extra))
    rows += _verify_lsp(pool, candidates, others, report, "lm", settings.model,
                        settings if options.judge else None)
    return rows


def _row(p: _Pair, source: str, model: str, v: Verification, no_candidate: str | None, fix=None,
         reason: str | None = None, **extra) -> dict:
    failed = v.failed
    return {
        "pair_id": p.pair_id, "source": source, "model": model, "diff": v.diff, "fixed": v.fixed,
        "accepted": v.accepted, "failed_step": no_candidate or (failed.step if failed else None),
        "reason": reason or (failed.reason if failed else None), "verification": orjson.dumps(v.as_list()).decode(),
        "prompt_hash": extra.get("prompt_hash"), "fewshot_ids": orjson.dumps(extra.get("fewshot_ids")).decode()
        if extra.get("fewshot_ids") is not None else None,
        "prompt_tokens": extra.get("prompt_tokens"), "completion_tokens": extra.get("completion_tokens"),
        "fix_version": fix[0] if fix else None, "fix_us": fix[1] if fix else None, "raw": extra.get("raw"),
    }


_TYPES = {"accepted": pa.bool_(), "prompt_tokens": pa.int32(), "completion_tokens": pa.int32(),
          "fix_version": pa.int64(), "fix_us": pa.int64()}


def _table(rows: list[dict]) -> pa.Table:
    """The diffs rows as Arrow, in the table's types (fix_us becomes the fix_ts instant)."""
    table = {c: pa.array([r[c] for r in rows], _TYPES.get(c, pa.string())) for c in rows[0] if c != "fix_us"}
    table["fix_ts"] = pa.array([r["fix_us"] for r in rows], pa.timestamp("us", "UTC"))
    return pa.table(table)
