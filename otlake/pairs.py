"""The pairs stage: every logged diagnostic, reproduced on its repl's files, becomes a (code, diagnostic) pair.

Per diagnostic, in order, the first reason that applies decides it:
filtered (private repl, non-Python file, has a code action, stylistic rule,
still typing the line, file too large, file not UTF-8), quarantined (no such file at that instant,
its content unknown after a broken stream, the language server failed), not
reproduced, or a pair. Diagnostics of one repl at one instant share one
snapshot, so the meta-LSP checks each file tree once. Each batch of
snapshots is one transaction that records a decision for every diagnostic in
it (`pair_checks`), so a killed run, restarted, does only what is missing.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import pyarrow as pa

from events.privacy import is_public
from lsp_runner.config import DEFAULT_CONFIG, LspConfig
from lsp_runner.diagnostic import Diagnostic, matches
from lsp_runner.pool import LspPool
from lsp_runner.snapshot import Snapshot
from ot_replay.ops import cursor
from synth.still_typing import burst_versions, still_typing
from synth.usermine import PAUSE_US
from warehouse.history import ReplHistory
from warehouse.runs import finish_run, start_run
from warehouse.store import Warehouse

# ruff[E501] line too long and ruff[I001] unsorted imports: style, not a repair (DESIGN.md)
STYLISTIC_RULES = ("ruff[E501]", "ruff[I001]")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # LSP line breaks (str.splitlines knows more)
_LONE_CR = re.compile(r"\r(?!\n)")

PAIR, FILTERED, NOT_REPRODUCED, QUARANTINED = "pair", "filtered", "not_reproduced", "quarantined"


@dataclass(frozen=True)
class PairsOptions:
    """What the pairs stage looks at and how it checks."""

    repls: tuple[str, ...] = ()        # only these repls (empty: all)
    since_us: int | None = None        # only diagnostics logged at or after this instant
    workers: int = 1                   # warm pyright servers
    stylistic: tuple[str, ...] = STYLISTIC_RULES
    config: LspConfig = DEFAULT_CONFIG
    batch_snapshots: int = 64          # snapshots per transaction (and per ruff process)
    timeout_s: float = 30.0
    now_us: int | None = None          # the instant the run decides `waiting` at (None: the wall clock)


@dataclass
class PairsReport:
    """Reconciliation: diagnostics in = pairs + filtered + not reproduced + quarantined + waiting."""

    run_id: str
    diagnostics_in: int = 0
    already_decided: int = 0   # decided by an earlier run: not part of this one
    pairs: int = 0             # diagnostics that became a pair
    pairs_written: int = 0     # new rows in `pairs` (identical diagnostics share one)
    not_reproduced: int = 0
    waiting: int = 0           # still_typing cannot be told yet (the next burst may not be ingested): next run
    filtered: Counter = field(default_factory=Counter)
    quarantined: Counter = field(default_factory=Counter)
    snapshots: int = 0
    by_rule: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))  # checked, reproduced
    lsp: dict = field(default_factory=dict)
    seconds: float = 0.0
    step_seconds: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # pyright seconds per snapshot checked

    def balanced(self) -> bool:
        return self.diagnostics_in == (self.pairs + sum(self.filtered.values()) + self.not_reproduced
                                       + sum(self.quarantined.values()) + self.waiting)

    def rates(self) -> list[tuple[str, int, int, float]]:
        """(rule, checked, reproduced, rate) for each rule that reached the language servers."""
        return sorted(((code, n, k, k / n) for code, (n, k) in self.by_rule.items() if n),
                      key=lambda r: (-r[1], r[0]))

    def as_dict(self) -> dict:
        return {
            "diagnostics_in": self.diagnostics_in, "already_decided": self.already_decided, "pairs": self.pairs,
            "pairs_written": self.pairs_written, "not_reproduced": self.not_reproduced, "waiting": self.waiting,
            "filtered": dict(sorted(self.filtered.items())), "quarantined": dict(sorted(self.quarantined.items())),
            "snapshots": self.snapshots, "balanced": self.balanced(),
            "reproduction_by_rule": {code: {"checked": n, "reproduced": k, "rate": round(r, 4)}
                                     for code, n, k, r in self.rates()},
        }

    def summary(self) -> str:
        filtered = ", ".join(f"{k} {v}" for k, v in sorted(self.filtered.items())) or "none"
        quarantined = ", ".join(f"{k} {v}" for k, v in sorted(self.quarantined.items())) or "none"
        return (f"diagnostics in {self.diagnostics_in} = pairs {self.pairs} + filtered "
                f"{sum(self.filtered.values())} ({filtered}) + not reproduced {self.not_reproduced} "
                f"+ quarantined {sum(self.quarantined.values())} ({quarantined})"
                + (f" + waiting for the next burst of typing {self.waiting} (decided by the next run)"
                   if self.waiting else ""))


@dataclass
class _Logged:
    """One logged diagnostic still to decide."""

    repl_id: str
    seq: int
    us: int
    diag: Diagnostic
    is_private: bool | None
    meta: tuple  # language, owner, title


@dataclass
class _Decision:
    outcome: str
    reason: str | None = None
    pair: dict | None = None
    detail: str = ""  # why the language servers failed


def pair_id(repl_id: str, us: int, d: Diagnostic) -> str:
    """Hash of repl, path, instant, code and the diagnostic itself (range and message)."""
    key = orjson.dumps([repl_id, d.path, us, d.code, d.start_line, d.start_character, d.end_line,
                        d.end_character, d.message])
    return hashlib.sha256(key).hexdigest()[:32]


def build_pairs(wh: Warehouse, options: PairsOptions = PairsOptions(),
                progress: Callable[[int], None] | None = None) -> PairsReport:
    """Decide every logged diagnostic not decided yet; returns the run's reconciliation."""
    con = wh.con
    params = {"repls": list(options.repls), "since_us": options.since_us, "workers": options.workers,
              "stylistic": list(options.stylistic), "pyright": options.config.pyrightconfig(),
              "ruff": options.config.ruff_args(), "max_file_bytes": options.config.max_file_bytes,
              "batch_snapshots": options.batch_snapshots, "timeout_s": options.timeout_s, "now_us": options.now_us}
    run_id = start_run(con, "pairs", params)
    report = PairsReport(run_id)
    started = time.perf_counter()
    try:
        todo, report.already_decided = _pending(con, options)
        report.diagnostics_in = len(todo)
        checked = _prefilter(con, todo, options, report, progress)
        by_repl: dict[str, list[_Logged]] = defaultdict(list)
        for item in checked:
            by_repl[item.repl_id].append(item)
        last_us = dict(con.execute(
            "SELECT repl_id, max(epoch_us(ts)) FROM events WHERE repl_id IN (SELECT unnest(?::VARCHAR[])) "
            "GROUP BY repl_id", [sorted(by_repl)]).fetchall())
        batch: list[tuple] = []
        with LspPool(size=options.workers, config=options.config, timeout_s=options.timeout_s) as pool:
            for repl_id in sorted(by_repl):
                clock = time.perf_counter()
                history = ReplHistory(con, repl_id)
                typing, waiting = _still_typing(history, by_repl[repl_id], last_us[repl_id], options.now_us)
                _write(con, [(item, _Decision(FILTERED, "still_typing")) for item in by_repl[repl_id]
                             if item.seq in typing], report)
                report.waiting += len(waiting)  # no decision stored: the next run decides them
                if progress and (typing or waiting):
                    progress(len(typing) + len(waiting))
                # diagnostics logged with no edit between them saw the same files: one snapshot
                groups: dict[int, list[_Logged]] = defaultdict(list)
                for item in by_repl[repl_id]:
                    if item.seq not in typing and item.seq not in waiting:
                        groups[history.steps_before(item.seq)].append(item)
                states = history.states_after(list(groups))
                report.step_seconds["replay"] += time.perf_counter() - clock
                for k in sorted(groups):
                    batch.append((repl_id, k, states[k], groups[k]))
                    if len(batch) >= options.batch_snapshots:
                        _check_batch(wh, pool, batch, options, report, progress)
                        batch = []
            if batch:
                _check_batch(wh, pool, batch, options, report, progress)
            report.lsp = pool.stats.as_dict()
    except BaseException:
        report.seconds = time.perf_counter() - started
        finish_run(con, run_id, "failed", report.as_dict(), {"seconds": round(report.seconds, 3)})
        raise
    report.seconds = time.perf_counter() - started
    finish_run(con, run_id, "done", report.as_dict(), {
        "seconds": round(report.seconds, 3), "steps": {k: round(v, 3) for k, v in report.step_seconds.items()},
        "snapshots_per_second": round(report.snapshots / report.seconds, 2) if report.seconds else None,
        "lsp": report.lsp})
    return report


def _pending(con, options: PairsOptions) -> tuple[list[_Logged], int]:
    where, args = [], []
    if options.repls:
        where.append("d.repl_id IN (SELECT unnest(?::VARCHAR[]))")
        args.append(list(options.repls))
    if options.since_us is not None:
        where.append("epoch_us(d.ts) >= ?")
        args.append(options.since_us)
    cond = " AND ".join(where) or "true"
    rows = con.execute(
        f"""SELECT d.repl_id, d.seq, epoch_us(d.ts), d.path, d.code, d.start_line, d.start_character, d.end_line,
                   d.end_character, d.severity, d.message, d.has_code_action, r.is_private, r.language, r.owner,
                   r.title, c.seq IS NOT NULL AND c.reason IS DISTINCT FROM 'lsp_failed' AS decided
            FROM diagnostics d LEFT JOIN repls r USING (repl_id)
            LEFT JOIN pair_checks c ON c.repl_id = d.repl_id AND c.seq = d.seq
            WHERE {cond} ORDER BY d.repl_id, d.seq""", args).fetchall()
    todo = []
    decided = 0
    for (repl_id, seq, us, path, code, sl, sc, el, ec, sev, msg, action, private, lang, owner, title,
         done) in rows:
        if done:
            decided += 1
            continue
        diag = Diagnostic(path, code or "", sl, sc, el, ec, sev, msg, bool(action), (code or "").partition("[")[0])
        todo.append(_Logged(repl_id, seq, us, diag, private, (lang, owner, title)))
    return todo, decided


def _filter_reason(item: _Logged, options: PairsOptions) -> str | None:
    if not is_public(item.is_private):  # unknown (no repl event) counts as private
        return "private_repl"
    if not options.config.is_python(item.diag.path):
        return "non_python_file"
    if item.diag.has_code_action:
        return "has_code_action"
    if item.diag.code in options.stylistic:
        return "stylistic_rule"
    if not item.diag.code:
        return "no_rule_code"
    return None


LIVE_US = 86_400_000_000  # a session whose last event is younger than this (wall clock) may still go on


def _still_typing(history: ReplHistory, items: list[_Logged], last_us: int,
                  now_us: int | None = None) -> tuple[set[int], set[int]]:
    """The seqs of the diagnostics on a line the user was still typing (synth.still_typing), and of
    those it cannot tell yet: no packet of the file follows, the repl's stream (last event at
    `last_us`) ends less than a pause after it, and the session may still be live (its last event is
    less than a day old), so the next burst may still arrive."""
    live = (time.time() * 1e6 if now_us is None else now_us) - last_us < LIVE_US
    by_lineage: dict[int, list[tuple[_Logged, int]]] = defaultdict(list)
    for item in items:
        lineage = history.lineage_before(item.diag.path, item.seq)
        if lineage is not None and lineage[1] > 0:
            by_lineage[lineage[0]].append((item, lineage[1]))
    out, waiting = set(), set()
    for file_id, entries in by_lineage.items():
        versions = history.versions(file_id)
        index = {v: k for k, (v, _) in enumerate(versions)}
        times = [us for _, us in versions]
        plans, needed = [], set()
        for item, version in entries:
            start, end = burst_versions(times, index[version])
            plan = (item, versions[start][0] - 1, version, versions[end][0] if end is not None else None)
            plans.append(plan)
            needed |= {v for v in plan[1:] if v is not None}
        texts = history.contents(file_id, sorted(needed))
        for item, first, version, after in plans:
            if after is None and live and last_us - item.us < PAUSE_US:
                waiting.add(item.seq)
                continue
            at = cursor(history.packet_ops(file_id, version))
            if still_typing(item.diag.start_line, texts[first], texts[version],
                            texts[after] if after is not None else None, texts[version].count("\n", 0, at)):
                out.add(item.seq)
    return out, waiting


def _prefilter(con, todo: list[_Logged], options: PairsOptions, report: PairsReport, progress) -> list[_Logged]:
    """Record the diagnostics a filter drops before any replay; returns the rest."""
    keep, decided = [], []
    for item in todo:
        reason = _filter_reason(item, options)
        if reason is None:
            keep.append(item)
        else:
            decided.append((item, _Decision(FILTERED, reason)))
    _write(con, decided, report)
    if progress and decided:
        progress(len(decided))
    return keep


def _check_batch(wh: Warehouse, pool: LspPool, batch: list[tuple], options: PairsOptions, report: PairsReport,
                 progress) -> None:
    """Check a batch of snapshots (repl, steps applied, files, the diagnostics that saw them); one transaction."""
    clock = time.perf_counter()
    limit = options.config.max_file_bytes
    decided: list[tuple[_Logged, _Decision]] = []
    snapshots, waiting = [], {}
    for repl_id, k, files, items in batch:
        ready = []
        for item in items:
            path = item.diag.path
            if path not in files:
                decided.append((item, _Decision(QUARANTINED, "file_missing")))
            elif files[path] is None:
                decided.append((item, _Decision(QUARANTINED, "file_content_unknown")))
            elif len(files[path].encode("utf-8", "surrogatepass")) > limit:
                decided.append((item, _Decision(FILTERED, "file_too_large")))
            elif _LONE_CR.search(files[path]):
                # the language servers break lines at a lone CR, line diffs only at LF: numbers would disagree
                decided.append((item, _Decision(FILTERED, "lone_carriage_return")))
            else:
                ready.append(item)
        if ready:
            sid = f"{repl_id}@{k}"
            snapshots.append(Snapshot(sid, {p: c for p, c in files.items() if c is not None},
                                      tuple(sorted({i.diag.path for i in ready}))))
            waiting[sid] = (files, ready)
    report.step_seconds["replay"] += time.perf_counter() - clock
    clock = time.perf_counter()
    results = pool.check(snapshots, progress=lambda r: report.latencies.append(r.seconds)) if snapshots else []
    report.step_seconds["lsp"] += time.perf_counter() - clock
    report.snapshots += len(snapshots)
    for result in results:
        files, ready = waiting.pop(result.snapshot_id)
        for item in ready:
            decided.append((item, _decide(item, files[item.diag.path], result, report)))
    for files, ready in waiting.values():  # never happens unless the pool drops a snapshot
        decided += [(item, _Decision(QUARANTINED, "lsp_no_result")) for item in ready]
    clock = time.perf_counter()
    _write(wh.con, decided, report)
    report.step_seconds["write"] += time.perf_counter() - clock
    if progress:
        progress(sum(len(items) for *_, items in batch))


def _decide(item: _Logged, content: str, result, report: PairsReport) -> _Decision:
    d = item.diag
    if not result.ok:
        return _Decision(QUARANTINED, "lsp_failed", detail=result.reason or "")
    skipped = result.skipped.get(d.path)
    if skipped is not None:  # e.g. not UTF-8: the file cannot be a training example
        return _Decision(FILTERED, "file_" + skipped.partition(":")[0])
    counts = report.by_rule[d.code]
    counts[0] += 1
    found = next((r for r in result.diagnostics.get(d.path, ()) if matches(d, r)), None)
    if found is None:
        return _Decision(NOT_REPRODUCED)
    counts[1] += 1
    lines = _LINE_BREAK.split(content)
    error_line = lines[d.start_line] if d.start_line < len(lines) else ""
    language, owner, title = item.meta
    return _Decision(PAIR, pair={
        "pair_id": pair_id(item.repl_id, item.us, d), "repl_id": item.repl_id, "seq": item.seq, "path": d.path,
        "us": item.us, "code": d.code, "severity": d.severity, "message": d.message,
        "start_line": d.start_line, "start_character": d.start_character, "end_line": d.end_line,
        "end_character": d.end_character, "error_line": error_line, "content": content,
        "reproduced_message": found.message, "language": language, "owner": owner, "title": title})


_PAIR_TYPES = {"seq": pa.int64(), "us": pa.int64(), "severity": pa.int8(), "start_line": pa.int32(),
               "start_character": pa.int32(), "end_line": pa.int32(), "end_character": pa.int32()}


def _write(con, decided: list[tuple[_Logged, _Decision]], report: PairsReport) -> None:
    """One transaction: a pair_checks row per decided diagnostic, plus its pair or quarantine row."""
    if not decided:
        return
    pairs = [d.pair for _, d in decided if d.pair is not None]
    checks = pa.table({
        "repl_id": pa.array([i.repl_id for i, _ in decided], pa.string()),
        "seq": pa.array([i.seq for i, _ in decided], pa.int64()),
        "outcome": pa.array([d.outcome for _, d in decided], pa.string()),
        "reason": pa.array([d.reason for _, d in decided], pa.string()),
        "code": pa.array([i.diag.code for i, _ in decided], pa.string()),
        "pair_id": pa.array([d.pair["pair_id"] if d.pair else None for _, d in decided], pa.string()),
    })
    quarantine = [(i, d) for i, d in decided if d.outcome == QUARANTINED]
    con.execute("BEGIN TRANSACTION")
    try:
        con.register("checks", checks)
        # a diagnostic the language servers failed on is decided again by the next run (and may leave quarantine)
        con.execute(
            """INSERT INTO pair_checks SELECT *, ? FROM checks ON CONFLICT (repl_id, seq) DO UPDATE SET
               outcome = excluded.outcome, reason = excluded.reason, code = excluded.code, pair_id = excluded.pair_id,
               run_id = excluded.run_id""", [report.run_id])
        con.execute("""DELETE FROM quarantine WHERE source = 'pairs' AND key IN (
                         SELECT repl_id || '/' || seq FROM checks WHERE outcome <> 'quarantined')""")
        con.unregister("checks")
        if pairs:
            cols = list(pairs[0])
            table = pa.table({c: pa.array([p[c] for p in pairs], _PAIR_TYPES.get(c, pa.string())) for c in cols})
            con.register("new_pairs", table)
            before = con.execute("SELECT count(*) FROM pairs").fetchall()[0][0]
            con.execute(
                """INSERT INTO pairs SELECT pair_id, repl_id, seq, path, make_timestamp(us)::TIMESTAMPTZ, code,
                          severity, message, start_line, start_character, end_line, end_character, error_line,
                          content, reproduced_message, language, owner, title, ?
                   FROM new_pairs ON CONFLICT DO NOTHING""", [report.run_id])
            report.pairs_written += con.execute("SELECT count(*) FROM pairs").fetchall()[0][0] - before
            con.unregister("new_pairs")
        for item, decision in quarantine:
            con.execute(
                """INSERT INTO quarantine (source, key, repl_id, seq, path, origin, error_kind, message, ts, run_id,
                                           quarantined_at)
                   VALUES ('pairs', ?, ?, ?, ?, 'diagnostics', ?, ?, make_timestamp(?)::TIMESTAMPTZ, ?, now())
                   ON CONFLICT DO NOTHING""",
                [f"{item.repl_id}/{item.seq}", item.repl_id, item.seq, item.diag.path, decision.reason,
                 _QUARANTINE_MESSAGES[decision.reason].format(code=item.diag.code, path=item.diag.path,
                                                              detail=decision.detail),
                 item.us, report.run_id])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    for _, d in decided:
        if d.outcome == PAIR:
            report.pairs += 1
        elif d.outcome == FILTERED:
            report.filtered[d.reason] += 1
        elif d.outcome == NOT_REPRODUCED:
            report.not_reproduced += 1
        else:
            report.quarantined[d.reason] += 1


_QUARANTINE_MESSAGES = {
    "file_missing": "the diagnostic {code} names {path}, which held no file at that instant",
    "file_content_unknown": "the content of {path} is unknown at that instant (its edit stream broke; see "
                            "file_breaks)",
    "lsp_failed": "the language servers could not check {path} at that instant, retries included: {detail}",
    "lsp_no_result": "the language server pool returned no result for {path}",
}
