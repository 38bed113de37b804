"""One eval run: choose items and their targets, ask the model, score every sample, aggregate.

The language servers and the sandbox are passed in (`check`: a function
from snapshots to check results, e.g. `LspPool.check`), so the same code
runs on any engine; nothing here opens a database. Rows are plain dicts,
one per (item, sample), and one per skipped item (`status` 'skipped' with
its reason): `eval_items` stores them as they are, and `metrics.aggregate`
recomputes every figure from them.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from lsp_runner.result import CheckResult
from lsp_runner.snapshot import Snapshot

from .functional import ItemTests, checked_tests, run_all
from .items import EvalItem, Skipped, choose_target
from .metrics import METRICS, aggregate, not_scored
from .models import Answer, RepairModel, Sampling
from .sandbox import Limits
from .scoring import score_static, target_verdict

Check = Callable[[Sequence[Snapshot]], list[CheckResult]]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class RunOptions:
    """How a run samples and where it stops."""

    samples: int = 1
    sampling: Sampling = field(default_factory=Sampling)
    limit: int | None = None
    limits: Limits = field(default_factory=Limits)
    workers: int = 2  # sandboxed test processes at once
    batch: int = 64  # items per partition of a stored run (eval.stage.EvalStage): targets, tests, answers, scores


@dataclass
class EvalResult:
    """Every row of a run, the items' test coverage, and where the time went."""

    rows: list[dict] = field(default_factory=list)
    tests: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    test_counts: dict = field(default_factory=dict)  # what `tests` is made of (coverage_counts)

    def scored(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "scored"]

    def summary(self, by: Sequence[str] = (), k: int | None = None) -> dict:
        return aggregate(self.scored(), by, k)

    def not_scored(self) -> dict[str, int]:
        """Scored rows per metric whose verdict the meta-LSP or the sandbox failed to give."""
        return not_scored(self.scored())


def select(items: Sequence[EvalItem], limit: int | None, seed: int) -> list[EvalItem]:
    """At most `limit` items: round robin over subtypes, each in a seeded order, so a few touch them all."""
    if limit is None or limit >= len(items):
        return list(items)
    groups: dict[str, list[EvalItem]] = defaultdict(list)
    for item in items:
        groups[item.subtype or item.category].append(item)
    for name, group in groups.items():
        group.sort(key=lambda i: hashlib.sha256(f"{seed}:{i.id}".encode()).hexdigest())
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    out: list[EvalItem] = []
    while len(out) < limit:
        for name in order:
            if groups[name] and len(out) < limit:
                out.append(groups[name].pop(0))
    return out


def prepare_targets(items: Sequence[EvalItem], check: Check) -> tuple[list[EvalItem], list[Skipped]]:
    """Items with a target: a given one, else the diagnostic the bug brought (both versions checked in one batch)."""
    need = [item for item in items if item.target is None]
    snapshots = []
    for n, item in enumerate(need):
        snapshots += [Snapshot(f"b{n}", {**item.files, item.path: item.code}, (item.path,)),
                      Snapshot(f"r{n}", {**item.files, item.path: item.reference}, (item.path,))]
    results = {r.snapshot_id: r for r in check(snapshots)} if snapshots else {}
    chosen: dict[str, EvalItem | Skipped] = {}
    for n, item in enumerate(need):
        before, after = results.get(f"b{n}"), results.get(f"r{n}")
        if before is None or after is None or not before.ok or not after.ok:
            reason = (before.reason if before else "") or (after.reason if after else "") or "no result"
            chosen[item.id] = Skipped(item.id, f"lsp_failed: {reason}"[:300], item.category, item.subtype)
            continue
        unchecked = before.skipped.get(item.path) or after.skipped.get(item.path)
        if unchecked:  # e.g. a file past the servers' size limit: nothing new can be seen, so say why
            chosen[item.id] = Skipped(item.id, f"not_checked: {unchecked}"[:300], item.category, item.subtype)
            continue
        target = choose_target(item, before.diagnostics.get(item.path, []), after.diagnostics.get(item.path, []))
        chosen[item.id] = (replace(item, target=target) if target else
                           Skipped(item.id, "no_diagnostic: the meta-LSP reports nothing new on the buggy code",
                                   item.category, item.subtype))
    ready, skipped = [], []
    for item in items:
        got = chosen.get(item.id, item)
        (ready if isinstance(got, EvalItem) else skipped).append(got)
    return ready, skipped


def evaluate(items: Sequence[EvalItem], model: RepairModel, options: RunOptions, check: Check,
             skipped: Sequence[Skipped] = (), progress: Progress | None = None) -> EvalResult:
    """Run the model on the items and score every sample; skipped records become rows with their reason."""
    say = progress or (lambda _msg: None)
    result = EvalResult()
    clock = time.perf_counter()
    ready, no_target = prepare_targets(items, check)
    result.seconds["targets"] = time.perf_counter() - clock
    say(f"{len(ready)} items with a target diagnostic, {len(no_target)} without")
    clock = time.perf_counter()
    tests = checked_tests(ready, options.limits, options.workers)
    result.seconds["reference_tests"] = time.perf_counter() - clock
    result.test_counts = coverage_counts(ready, tests)
    result.tests = coverage(result.test_counts)
    clock = time.perf_counter()
    answers = model.answer(ready, options.samples, options.sampling) if ready else []
    result.seconds["model"] = time.perf_counter() - clock
    say(f"{sum(map(len, answers))} answers from {model.name} in {result.seconds['model']:.1f} s")
    rows = _score(ready, tests, answers, options, check, result.seconds)
    result.rows = rows + skipped_rows([*skipped, *no_target])
    return result


def skipped_rows(skipped: Sequence[Skipped]) -> list[dict]:
    """The rows of records and items left out, each with its reason."""
    return [{"item_id": s.id, "sample": 0, "status": "skipped", "skip_reason": s.reason,
             "category": s.category, "subtype": s.subtype, "rule": ""} for s in skipped]


def coverage_counts(items: Sequence[EvalItem], tests: Sequence[ItemTests]) -> dict:
    """How many items have tests and why the others have none; the counts of several batches add up."""
    reasons = Counter(t.reason.split(" (")[0] for t in tests if not t.present)
    return {"items": len(items), "with_tests": sum(t.present for t in tests),
            "no_tests_by_reason": dict(reasons.most_common())}


def coverage(counts: dict) -> dict:
    """Test coverage: how many items have tests, how many references passed the derived tests, why the others
    have none."""
    items, derived = counts.get("items", 0), counts.get("with_tests", 0)
    reasons = Counter(counts.get("no_tests_by_reason", {}))
    attempted = derived + reasons.get("no_tests: the reference fails its derived tests", 0)
    return {"items": items, "with_tests": derived,
            "share_with_tests": round(derived / items, 4) if items else None,
            "reference_pass_rate": round(derived / attempted, 4) if attempted else None,
            "no_tests_by_reason": dict(reasons.most_common())}


def _score(items: Sequence[EvalItem], tests: Sequence[ItemTests], answers: list[list[Answer]],
           options: RunOptions, check: Check, seconds: dict) -> list[dict]:
    clock = time.perf_counter()
    rows, statics = [], []
    for item, item_tests, item_answers in zip(items, tests, answers):
        for k, answer in enumerate(item_answers):
            s = score_static(item.code, item.reference, None if answer.error else answer.text, item.target)
            statics.append((item, item_tests, s))
            rows.append(_row(item, item_tests, k, answer))
    seconds["static"] = time.perf_counter() - clock
    clock = time.perf_counter()
    changed = [(n, item, s) for n, (item, _t, s) in enumerate(statics) if s.applies and s.fixed != item.code]
    snapshots = [Snapshot(f"a{n}", {**item.files, item.path: s.fixed}, (item.path,)) for n, item, s in changed]
    results = {r.snapshot_id: r for r in check(snapshots)} if snapshots else {}
    seconds["lsp"] = time.perf_counter() - clock
    clock = time.perf_counter()
    runs = [(n, t, s.fixed) for n, (_item, t, s) in enumerate(statics) if s.applies and t.present]
    outcomes = dict(zip((n for n, _t, _c in runs), run_all([(t, c) for _n, t, c in runs], options.limits,
                                                           options.workers)))
    seconds["tests"] = time.perf_counter() - clock
    for n, (item, item_tests, s) in enumerate(statics):
        if s.applies:
            got = results.get(f"a{n}")
            after = None
            failure = "no result"
            if got is not None and got.ok and item.path not in got.skipped:
                after = list(got.diagnostics.get(item.path, []))
            elif got is not None:  # the check failed, or the servers skipped the file (past their size limit)
                failure = got.reason or got.skipped.get(item.path, "") or "check failed"
            s.target_gone, s.target_detail = target_verdict(item.target, item.code, s.fixed, after, failure)
        if item_tests.present:
            outcome = outcomes.get(n)
            passed = getattr(outcome, "passed", False)
            if outcome is not None and passed is None:  # the sandbox failed, not the candidate: not scored
                s.functional = None
                s.test_detail = _prefixed("sandbox_failed: ", outcome.detail)
            else:
                s.functional = bool(passed)
                s.test_detail = outcome.detail if outcome else s.apply_error or "no diff applied"
            rows[n]["cases_passed"] = outcome.cases_passed if outcome else 0
        rows[n].update({"diff": s.diff, "apply_error": s.apply_error, "target_detail": s.target_detail,
                        "test_detail": s.test_detail,
                        **{m: getattr(s, m) for m in METRICS}})
    return rows


def _prefixed(prefix: str, detail: str) -> str:
    return (detail if detail.startswith(prefix.rstrip()) else prefix + detail)[:300]


def _row(item: EvalItem, tests: ItemTests, k: int, answer: Answer) -> dict:
    return {"item_id": item.id, "sample": k, "status": "scored", "skip_reason": "",
            "category": item.category, "subtype": item.subtype, "rule": item.rule,
            "target_line": item.target.start_line + 1 if item.target else None,
            "target_message": item.target.message if item.target else None,
            "answer": answer.text, "error": answer.error, "seconds": answer.seconds,
            "prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
            "prompt_hash": answer.prompt_hash, "tests": tests.cases, "tests_reason": tests.reason,
            "cases_passed": None}
