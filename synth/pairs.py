"""The pairs stage: every logged diagnostic, reproduced on its repl's files, becomes a (code, diagnostic) pair.

Per diagnostic, in order, the first reason that applies decides it:
filtered (private repl, non-Python file, has a code action, stylistic rule,
still typing the line, file too large, file not UTF-8), quarantined (no such file at that instant,
its content unknown after a broken stream, the language server failed), not
reproduced, or a pair. Diagnostics of one repl at one instant share one
snapshot, so the meta-LSP checks each file tree once. A stage of the
pipeline contract (`PairsStage`, one repl per partition; otlake.stages.build_pairs
runs it): a repl's pairs and quarantine rows are one commit and its decisions
(`pair_checks`, the markers) the next, so a killed run, restarted, redoes only
the repls it had not finished.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from events.privacy import is_public
from events.stages import Context, Partition, StageResult, read_table
from lsp_runner.config import DEFAULT_CONFIG, LspConfig
from lsp_runner.diagnostic import Diagnostic, matches
from lsp_runner.snapshot import Snapshot
from ot_replay.ops import cursor
from ot_replay.timeline import Timeline, timestamps_us
from synth.still_typing import burst_versions, still_typing
from synth.usermine import PAUSE_US

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
    batch_snapshots: int = 64          # snapshots per checker call (one ruff process each)
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

    @classmethod
    def from_run(cls, run) -> PairsReport:
        """The report of a pipeline run of PairsStage (otlake.pipeline.RunReport)."""
        extra, dropped = run.extra, Counter(run.dropped)
        report = cls(run.run_id, diagnostics_in=run.count_in, already_decided=extra.get("already_decided", 0),
                     pairs=run.count_out, pairs_written=extra.get("pairs_written", 0),
                     not_reproduced=dropped.pop("not_reproduced", 0), waiting=dropped.pop("waiting", 0),
                     filtered=dropped, quarantined=Counter(extra.get("quarantined_by_reason", {})),
                     snapshots=extra.get("snapshots", 0), seconds=run.seconds, step_seconds=Counter(run.steps),
                     latencies=list(run.details.get("latencies", [])))
        for code, counts in extra.get("reproduction_by_rule", {}).items():
            report.by_rule[code] = [counts["checked"], counts["reproduced"]]
        return report

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


class PairsStage:
    """The pairs stage (events.stages contract): one repl per partition.

    Records: the repl's logged diagnostics not decided yet (those matching `repls` and `since_us`). Each is a
    pair (out), dropped by its filter reason, `not_reproduced`, or `waiting` (no decision stored: the next run
    decides it), or quarantined. `pair_checks` rows are the markers: a diagnostic with one (other than
    `lsp_failed`) is never decided again. The checker comes from the context (ctx.checker), never built here.
    """

    name = "pairs"
    reads = ("diagnostics", "repls", "pair_checks", "pairs", "events", "path_events", "ot_ops", "file_breaks")
    columns: ClassVar[dict[str, tuple[str, ...]]] = {  # of the tables it reads only in part
        "repls": ("repl_id", "is_private", "language", "owner", "title"), "pair_checks": ("repl_id", "seq", "reason"),
        "pairs": ("pair_id",), "events": ("repl_id", "ts")}
    writes = ("pairs", "pair_checks", "quarantine")

    def __init__(self, options: PairsOptions) -> None:
        self.options = options
        self.already_decided = 0

    def pending(self, store, params) -> list[str]:
        """The repls with a logged diagnostic not decided yet; counts those decided by earlier runs."""
        where = {"repl_id": list(self.options.repls)} if self.options.repls else None
        diags = read_table(store, "diagnostics", where, ["repl_id", "seq", "ts"])
        checks = read_table(store, "pair_checks", where, ["repl_id", "seq", "reason"])
        undecided = _undecided(diags, checks, self.options.since_us)
        self.already_decided = int(pc.sum(pc.invert(undecided)).as_py() or 0)
        ids = diags.column("repl_id").filter(undecided)
        return sorted(pc.unique(ids).to_pylist())

    def process(self, part: Partition, ctx: Context) -> StageResult:
        return next(iter(self.process_many([part], ctx)))

    def process_many(self, parts: Iterable[Partition], ctx: Context) -> Iterator[StageResult]:
        """The partitions' results in order. Their snapshots go to the checker together, `batch_snapshots` a
        call (one ruff process each): partitions are gathered until they have that many, checked, and given
        back, so a repl with few snapshots does not cost a checker call of its own."""
        group: list[_Prepared] = []
        snapshots = 0
        for part in parts:
            group.append(self._prepare(part, ctx))
            snapshots += len(group[-1].batch)
            if snapshots >= self.options.batch_snapshots:
                yield from self._finish(group, ctx)
                group, snapshots = [], 0
        if group:
            yield from self._finish(group, ctx)

    def _prepare(self, part: Partition, ctx: Context) -> _Prepared:
        """Filter the partition's diagnostics and replay its repl to each instant still to be checked."""
        options, t, tally = self.options, part.tables, PairsReport("")
        clock = time.perf_counter()
        todo = _logged(part.key, t, options.since_us)
        tally.diagnostics_in = len(todo)
        decided: list[tuple[_Logged, _Decision]] = []
        checked = []
        for item in todo:
            reason = _filter_reason(item, options)
            if reason is None:
                checked.append(item)
            else:
                decided.append((item, _Decision(FILTERED, reason)))
        batch = []
        if checked:
            last_us = max(timestamps_us(t["events"].column("ts")))
            history = Timeline.from_partition(part.key, t)
            typing, waiting = _still_typing(history, checked, last_us, ctx.now_us)
            decided += [(item, _Decision(FILTERED, "still_typing")) for item in checked if item.seq in typing]
            tally.waiting += len(waiting)  # no decision stored: the next run decides them
            # diagnostics logged with no edit between them saw the same files: one snapshot
            groups: dict[int, list[_Logged]] = defaultdict(list)
            for item in checked:
                if item.seq not in typing and item.seq not in waiting:
                    groups[history.steps_before(item.seq)].append(item)
            states = history.states_after(list(groups))
            batch = [(part.key, k, states[k], groups[k]) for k in sorted(groups)]
        tally.step_seconds["replay"] += time.perf_counter() - clock
        return _Prepared(part, tally, decided, batch)

    def _finish(self, group: list[_Prepared], ctx: Context) -> Iterator[StageResult]:
        """Check the group's snapshots, batch_snapshots a call, and make each partition's result."""
        entries = [(g, entry) for g in group for entry in g.batch]
        size = self.options.batch_snapshots
        for start in range(0, len(entries), size):
            _check_batch(ctx.checker, entries[start:start + size], self.options)
        for g in group:
            clock = time.perf_counter()
            result = _result(g.part, g.decided, g.tally)
            g.tally.step_seconds["write"] += time.perf_counter() - clock
            result.seconds.update(g.tally.step_seconds)
            yield result

    def reduce(self, results, ctx) -> StageResult:
        return StageResult(extra={"already_decided": self.already_decided})


def _undecided(diags: pa.Table, checks: pa.Table, since_us: int | None) -> pa.Array:
    """Per diagnostic row: not decided yet (no pair_checks row, or one the language servers failed on), and
    logged at or after `since_us`."""
    done = checks.filter(pc.fill_null(pc.not_equal(checks.column("reason"), "lsp_failed"), True))
    done = done.select(["repl_id", "seq"]).append_column("__done", pa.array([True] * done.num_rows, pa.bool_()))
    keyed = diags.append_column("__n", pa.array(range(diags.num_rows), pa.int64()))
    joined = keyed.join(done, ["repl_id", "seq"], join_type="left outer", use_threads=False).sort_by("__n")
    undecided = pc.is_null(joined.column("__done"))
    if since_us is not None:
        us = pa.array(timestamps_us(joined.column("ts")), pa.int64())
        undecided = pc.and_(undecided, pc.greater_equal(us, since_us))
    return undecided.combine_chunks() if isinstance(undecided, pa.ChunkedArray) else undecided


def _logged(repl_id: str, t, since_us: int | None) -> list[_Logged]:
    """The partition's diagnostics not decided yet, in seq order, with their repl's privacy and metadata."""
    diags = t["diagnostics"].sort_by("seq")
    keep = _undecided(diags, t["pair_checks"], since_us)
    diags = diags.filter(keep)
    repl = t["repls"].to_pylist()
    meta = repl[0] if repl else {}
    private = meta.get("is_private")
    about = (meta.get("language"), meta.get("owner"), meta.get("title"))
    cols = {c: diags.column(c).to_pylist() for c in ("seq", "path", "code", "start_line", "start_character",
                                                      "end_line", "end_character", "severity", "message",
                                                      "has_code_action")}
    todo = []
    for n, us in enumerate(timestamps_us(diags.column("ts"))):
        code = cols["code"][n] or ""
        diag = Diagnostic(cols["path"][n], code, cols["start_line"][n], cols["start_character"][n],
                          cols["end_line"][n], cols["end_character"][n], cols["severity"][n], cols["message"][n],
                          bool(cols["has_code_action"][n]), code.partition("[")[0])
        todo.append(_Logged(repl_id, cols["seq"][n], us, diag, private, about))
    return todo


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


def _still_typing(history: Timeline, items: list[_Logged], last_us: int,
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


@dataclass
class _Prepared:
    """A partition filtered and replayed: what is decided already, and its snapshots to check."""

    part: Partition
    tally: PairsReport
    decided: list[tuple[_Logged, _Decision]]
    batch: list[tuple]  # (repl, steps applied, files, the diagnostics that saw them)


def _check_batch(checker, entries: list[tuple[_Prepared, tuple]], options: PairsOptions) -> None:
    """Check snapshots of one or more partitions in one call; each diagnostic's decision goes to its partition.

    The call's time is shared among the partitions by their snapshots."""
    clock = time.perf_counter()
    limit = options.config.max_file_bytes
    snapshots, waiting = [], {}
    for owner, (repl_id, k, files, items) in entries:
        ready = []
        for item in items:
            path = item.diag.path
            if path not in files:
                owner.decided.append((item, _Decision(QUARANTINED, "file_missing")))
            elif files[path] is None:
                owner.decided.append((item, _Decision(QUARANTINED, "file_content_unknown")))
            elif len(files[path].encode("utf-8", "surrogatepass")) > limit:
                owner.decided.append((item, _Decision(FILTERED, "file_too_large")))
            elif _LONE_CR.search(files[path]):
                # the language servers break lines at a lone CR, line diffs only at LF: numbers would disagree
                owner.decided.append((item, _Decision(FILTERED, "lone_carriage_return")))
            else:
                ready.append(item)
        if ready:
            sid = f"{repl_id}@{k}"
            snapshots.append(Snapshot(sid, {p: c for p, c in files.items() if c is not None},
                                      tuple(sorted({i.diag.path for i in ready}))))
            waiting[sid] = (owner, files, ready)
    prepared = time.perf_counter() - clock
    clock = time.perf_counter()
    results = checker.check(snapshots) if snapshots else []
    lsp = time.perf_counter() - clock
    owners = {id(owner): owner for owner, _entry in entries}
    for snapshot in snapshots:
        waiting[snapshot.id][0].tally.snapshots += 1
    for owner in owners.values():  # this call's time, shared by entries and by snapshots
        share = sum(1 for o, _entry in entries if o is owner) / len(entries)
        owner.tally.step_seconds["replay"] += prepared * share
        if snapshots:
            owner.tally.step_seconds["lsp"] += lsp * sum(1 for s in snapshots if waiting[s.id][0] is owner) / len(
                snapshots)
    for result in results:
        owner, files, ready = waiting.pop(result.snapshot_id)
        owner.tally.latencies.append(result.seconds)
        for item in ready:
            owner.decided.append((item, _decide(item, files[item.diag.path], result, owner.tally)))
    for owner, _files, ready in waiting.values():  # never happens unless the checker drops a snapshot
        owner.decided += [(item, _Decision(QUARANTINED, "lsp_no_result")) for item in ready]


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


_PAIR_TYPES = {"seq": pa.int64(), "severity": pa.int8(), "start_line": pa.int32(), "start_character": pa.int32(),
               "end_line": pa.int32(), "end_character": pa.int32()}


def _result(part: Partition, decided: list[tuple[_Logged, _Decision]], tally: PairsReport) -> StageResult:
    """The partition's rows: a pair_checks row (the marker) per decided diagnostic, plus its pair or its
    quarantine row; quarantine rows of diagnostics decided otherwise this time (after lsp_failed) go."""
    for _, d in decided:
        if d.outcome == PAIR:
            tally.pairs += 1
        elif d.outcome == FILTERED:
            tally.filtered[d.reason] += 1
        elif d.outcome == NOT_REPRODUCED:
            tally.not_reproduced += 1
        else:
            tally.quarantined[d.reason] += 1
    decided.sort(key=lambda x: x[0].seq)
    checks = pa.table({
        "repl_id": pa.array([i.repl_id for i, _ in decided], pa.string()),
        "seq": pa.array([i.seq for i, _ in decided], pa.int64()),
        "outcome": pa.array([d.outcome for _, d in decided], pa.string()),
        "reason": pa.array([d.reason for _, d in decided], pa.string()),
        "code": pa.array([i.diag.code for i, _ in decided], pa.string()),
        "pair_id": pa.array([d.pair["pair_id"] if d.pair else None for _, d in decided], pa.string()),
    })
    # identical diagnostics share one pair: the first one stored (by this or an earlier run) stands
    stored = set(part.tables["pairs"].column("pair_id").to_pylist())
    pairs = []
    for _, d in decided:
        if d.pair is not None and d.pair["pair_id"] not in stored:
            stored.add(d.pair["pair_id"])
            pairs.append(d.pair)
    tally.pairs_written = len(pairs)
    outputs = {}
    if pairs:
        cols = [c for c in pairs[0] if c != "us"]
        table = {c: pa.array([p[c] for p in pairs], _PAIR_TYPES.get(c, pa.string())) for c in cols}
        table["ts"] = pa.array([p["us"] for p in pairs], pa.timestamp("us", "UTC"))
        outputs["pairs"] = pa.table(table)
    quarantined = [(i, d) for i, d in decided if d.outcome == QUARANTINED]
    quarantine = None
    if quarantined:
        quarantine = pa.table({
            "source": pa.array(["pairs"] * len(quarantined), pa.string()),
            "key": pa.array([f"{i.repl_id}/{i.seq}" for i, _ in quarantined], pa.string()),
            "repl_id": pa.array([i.repl_id for i, _ in quarantined], pa.string()),
            "seq": pa.array([i.seq for i, _ in quarantined], pa.int64()),
            "path": pa.array([i.diag.path for i, _ in quarantined], pa.string()),
            "origin": pa.array(["diagnostics"] * len(quarantined), pa.string()),
            "error_kind": pa.array([d.reason for _, d in quarantined], pa.string()),
            "message": pa.array([_QUARANTINE_MESSAGES[d.reason].format(code=i.diag.code, path=i.diag.path,
                                                                       detail=d.detail)
                                 for i, d in quarantined], pa.string()),
            "ts": pa.array([i.us for i, _ in quarantined], pa.timestamp("us", "UTC"))})
    # a diagnostic the language servers failed on is decided again by the next run (and may leave quarantine)
    retried = {s for s, r in zip(part.tables["pair_checks"].column("seq").to_pylist(),
                                 part.tables["pair_checks"].column("reason").to_pylist(), strict=True)
               if r == "lsp_failed"}
    left = [f"{i.repl_id}/{i.seq}" for i, d in decided if i.seq in retried and d.outcome != QUARANTINED]
    deletes = {"quarantine": pa.table({"source": ["pairs"] * len(left), "key": left})} if left else {}
    dropped = Counter(tally.filtered)
    dropped["not_reproduced"] += tally.not_reproduced
    dropped["waiting"] += tally.waiting
    return StageResult(
        outputs=outputs, deletes=deletes, quarantine=quarantine, markers={"pair_checks": checks} if decided else {},
        count_in=tally.diagnostics_in, count_out=tally.pairs, dropped=+dropped,
        extra={"pairs_written": tally.pairs_written, "snapshots": tally.snapshots,
               "quarantined_by_reason": dict(tally.quarantined),
               "reproduction_by_rule": {code: {"checked": n, "reproduced": k} for code, (n, k) in tally.by_rule.items()},
               "latencies": tally.latencies})


_QUARANTINE_MESSAGES = {
    "file_missing": "the diagnostic {code} names {path}, which held no file at that instant",
    "file_content_unknown": "the content of {path} is unknown at that instant (its edit stream broke; see "
                            "file_breaks)",
    "lsp_failed": "the language servers could not check {path} at that instant, retries included: {detail}",
    "lsp_no_result": "the language server pool returned no result for {path}",
}
