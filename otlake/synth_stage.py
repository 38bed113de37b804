"""The synth stage: a verified numbered line diff for each pair, from the user's own fix or from an LM.

Each pair gets at most one row per (source, model) in `diffs`, accepted or
not, with every verification result; pairs that already have one are
skipped, so a killed run resumes. Work goes in batches of pairs: one batch
is one transaction, and its language-server checks share one pool call
(and one ruff process).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import pyarrow as pa

from events.privacy import public_sql
from lsp_runner.config import DEFAULT_CONFIG, LspConfig
from lsp_runner.diagnostic import Diagnostic
from lsp_runner.pool import LspPool
from lsp_runner.snapshot import Snapshot
from lsp_runner.syntax import prefetch_syntax_errors
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
from warehouse.history import ReplHistory
from warehouse.runs import finish_run, start_run
from warehouse.store import Warehouse

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
    batch_pairs: int = 32
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
    run_id: str
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


def run_synth(wh: Warehouse, options: SynthOptions, progress: Callable[[int], None] | None = None) -> SynthReport:
    """Make and verify diffs for every pair that lacks one from each requested source."""
    con = wh.con
    for source in options.sources:
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; use user, lm or both")
    params = {"sources": list(options.sources), "limit": options.limit, "judge": options.judge,
              "model": getattr(options.lm, "model", None), "workers": options.workers,
              "fewshot": options.fewshot, "pairs": len(options.pair_ids) if options.pair_ids is not None else None,
              "api_base": getattr(options.lm, "api_base", None),
              "temperature": getattr(options.lm, "temperature", None),
              "max_tokens": getattr(options.lm, "max_tokens", None)}
    run_id = start_run(con, "synth", params)
    report = SynthReport(run_id)
    started = time.perf_counter()
    try:
        with LspPool(size=options.workers, config=options.config) as pool:
            for source in options.sources:
                model = USER_MODEL if source == "user" else options.lm.model
                todo, done = _pending(con, source, model, options.limit, options.pair_ids)
                report.already_done += done
                for start in range(0, len(todo), options.batch_pairs):
                    batch = todo[start : start + options.batch_pairs]
                    if source == "user":
                        rows = _user_batch(wh, pool, batch, report)
                    else:
                        rows = _lm_batch(wh, pool, batch, options, report)
                    _write(con, rows, run_id)
                    if progress:
                        progress(len(batch))
    except BaseException:
        report.seconds = time.perf_counter() - started
        finish_run(con, run_id, "failed", report.as_dict(), {"seconds": round(report.seconds, 3)})
        raise
    report.seconds = time.perf_counter() - started
    n = sum(len(r.verifications) for r in report.by_source.values())
    finish_run(con, run_id, "done", report.as_dict(), {
        "seconds": round(report.seconds, 3), "steps": {k: round(v, 3) for k, v in report.step_seconds.items()},
        "verified_per_second": round(n / report.verify_seconds, 2) if report.verify_seconds else None})
    return report


def _pending(con, source: str, model: str, limit: int | None,
             only: frozenset[str] | None = None) -> tuple[list[_Pair], int]:
    rows = con.execute(
        f"""SELECT p.pair_id, p.repl_id, p.seq, p.path, epoch_us(p.ts), p.code, p.start_line, p.start_character,
                  p.end_line, p.end_character, p.severity, p.message, p.content, d.pair_id IS NOT NULL
           FROM pairs p LEFT JOIN diffs d ON d.pair_id = p.pair_id AND d.source = ? AND d.model = ?
           JOIN repls r ON r.repl_id = p.repl_id AND {public_sql("r.is_private")}
           ORDER BY p.repl_id, p.ts, p.pair_id""", [source, model]).fetchall()
    todo, done = [], 0
    for pid, repl_id, seq, path, us, code, sl, sc, el, ec, sev, msg, content, has in rows:
        if only is not None and pid not in only:
            continue
        if has:
            done += 1
        elif limit is None or len(todo) < limit:
            todo.append(_Pair(pid, repl_id, seq, path, us, Diagnostic(path, code, sl, sc, el, ec, sev, msg), content))
    return todo, done


def _reproduces(result, target: Diagnostic, content: str, candidate: str) -> bool:
    """Whether the candidate still has the target where the target's line went."""
    if target.path in result.skipped:  # not checked at all: it cannot count as fixed
        return True
    found = target_still_reported(target, list(result.diagnostics.get(target.path, ())), line_map(content, candidate))
    return found is not None


def _user_batch(wh: Warehouse, pool: LspPool, batch: list[_Pair], report: SynthReport) -> list[dict]:
    """Mine the user's fix of each pair, then verify the candidates together.

    The later states of the pair's file (where the user paused) each give a
    windowed candidate: the pair's code with only that state's changes near
    the error line. Distinct candidates that parse are checked in order; the
    first on which the diagnostic no longer reproduces is the user's fix.
    """
    clock = time.perf_counter()
    others, queues = _mine_candidates(wh, batch)
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


def _mine_candidates(wh: Warehouse, batch: list[_Pair]) -> tuple[dict, dict]:
    """Per pair: the repl's other files at its instant, and its distinct windowed candidates, in order."""
    by_repl: dict[str, list[_Pair]] = defaultdict(list)
    for p in batch:
        by_repl[p.repl_id].append(p)
    others, queues, found = {}, {}, []
    for repl_id, pairs in by_repl.items():
        history = ReplHistory(wh.con, repl_id)
        steps = {p.pair_id: history.steps_before(p.seq) for p in pairs}
        states = history.states_after(list(steps.values()))
        for p in pairs:
            files = states[steps[p.pair_id]]
            others[p.pair_id] = {k: v for k, v in files.items() if v is not None and k != p.path}
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


def _verify_lsp(pool: LspPool, candidates: list[tuple], others: dict, report: SynthReport, source: str,
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


def _others(wh: Warehouse, batch: list[_Pair]) -> dict[str, dict[str, str]]:
    """The repl's other files at each pair's instant (imports resolve against them)."""
    by_repl: dict[str, list[_Pair]] = defaultdict(list)
    for p in batch:
        by_repl[p.repl_id].append(p)
    out = {}
    for repl_id, pairs in by_repl.items():
        history = ReplHistory(wh.con, repl_id)
        steps = {p.pair_id: history.steps_before(p.seq) for p in pairs}
        states = history.states_after(list(steps.values()))
        for p in pairs:
            out[p.pair_id] = {k: v for k, v in states[steps[p.pair_id]].items() if v is not None and k != p.path}
    return out


def _fewshot(con, exclude: set[str], n: int, rule: str | None = None) -> list:
    """Verified user fixes to show the LM, deterministic: of the target's rule first, then any, shortest first.

    Demos of the same rule show the kind of fix the error needs: with the
    shortest fixes of any rule alone, a small model copies them (the 0.5B
    model answered `+8 import sys` to most errors, BENCHMARKS.md).
    """
    from synth.program import FewShotExample
    from synth.schema import Prompt, SchemaError

    rows = con.execute(
        """SELECT p.pair_id, p.path, p.content, p.code, p.message, p.start_line, d.diff
           FROM diffs d JOIN pairs p USING (pair_id)
           WHERE d.source = 'user' AND d.accepted AND p.pair_id NOT IN (SELECT unnest(?::VARCHAR[]))
           ORDER BY p.code IS DISTINCT FROM ?, length(d.diff), p.pair_id LIMIT ?""",
        [sorted(exclude), rule, n]).fetchall()
    out = []
    for pid, path, content, code, message, line, diff in rows:
        try:
            out.append(FewShotExample(pid, Prompt(path, content, code, message, line + 1), diff))
        except SchemaError:
            continue
    return out


def _lm_batch(wh: Warehouse, pool: LspPool, batch: list[_Pair], options: SynthOptions,
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
    by_rule: dict[str, list] = defaultdict(list)
    for pid, prompt in prompts:
        by_rule[prompt.rule].append((pid, prompt))
    answers = []
    for rule, group in by_rule.items():  # one program per rule: its demos are fixes of that rule first
        examples = _fewshot(wh.con, set(by_id), options.fewshot, rule) if options.fewshot else []
        answers += synthesize(group, settings, fewshot=examples, k=options.fewshot)
    report.step_seconds["lm"] += time.perf_counter() - clock
    others = _others(wh, batch)
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


def _write(con, rows: list[dict], run_id: str) -> None:
    if not rows:
        return
    table = pa.table({c: pa.array([r[c] for r in rows], _TYPES.get(c, pa.string())) for c in rows[0]})
    con.execute("BEGIN TRANSACTION")
    try:
        con.register("new_diffs", table)
        con.execute(
            """INSERT INTO diffs SELECT pair_id, source, model, diff, fixed, accepted, failed_step, reason,
                      verification, prompt_hash, fewshot_ids, prompt_tokens, completion_tokens, fix_version,
                      make_timestamp(fix_us)::TIMESTAMPTZ, raw, ? FROM new_diffs ON CONFLICT DO NOTHING""", [run_id])
        con.unregister("new_diffs")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise

