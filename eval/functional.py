"""Functional correctness: an item's tests, the program that runs them on a candidate, and the verdict.

DebugBench items get tests derived from their examples (eval.leetcode);
plain JSONL items bring theirs (`tests`, optionally `check(entry_point)`).
Every program runs in the sandbox (eval.sandbox), one process per candidate.
An item's tests are kept only when its reference passes them: tests the
reference fails are the harness's mistake, not the model's, so such items
count as `no_tests` with that reason (and the share is reported).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .items import EvalItem
from .leetcode import DerivedTests, derive_tests, harness_source, read_outcomes
from .sandbox import Limits, SandboxResult, run_python

DEFAULT_LIMITS = Limits()
REFERENCE_FAILS = "no_tests: the reference fails its derived tests"


@dataclass(frozen=True)
class ItemTests:
    """What an item is tested with: derived LeetCode cases, a JSONL test program, or the reason for none."""

    reason: str = ""                  # '' when there are tests, else 'no_tests: ...'
    derived: DerivedTests | None = None
    source: str | None = None
    entry_point: str | None = None

    @property
    def present(self) -> bool:
        return not self.reason

    @property
    def cases(self) -> int:
        return len(self.derived.cases) if self.derived else (1 if self.source else 0)


@dataclass(frozen=True)
class Outcome:
    """A candidate's test verdict: passed or not, cases passed of cases, and what failed first."""

    passed: bool
    cases_passed: int
    cases: int
    detail: str


def tests_for(item: EvalItem) -> ItemTests:
    """The item's tests before the reference check (DebugBench: derived from `examples`)."""
    if item.tests:
        return ItemTests(source=item.tests, entry_point=item.entry_point)
    if item.bench == "debugbench" and item.record is not None:
        derived = derive_tests(item.record)
        if isinstance(derived, str):
            return ItemTests(reason=derived if derived.startswith("no_tests") else f"no_tests: {derived}")
        return ItemTests(derived=derived)
    return ItemTests(reason="no_tests: the item has none")


def program(tests: ItemTests, code: str) -> str:
    """The Python program that runs the tests on `code`."""
    if tests.derived is not None:
        return harness_source(code, tests.derived)
    call = f"\n\ncheck({tests.entry_point})\n" if tests.entry_point and "def check" in (tests.source or "") else "\n"
    return f"{code}\n\n{tests.source}{call}"


def judge(tests: ItemTests, result: SandboxResult) -> Outcome:
    """The verdict of one sandboxed run of `program(tests, ...)`."""
    if tests.derived is not None:
        outcomes = read_outcomes(result.stdout, tests.derived)
        good = sum(o.passed for o in outcomes)
        first = next((o for o in outcomes if not o.passed), None)
        detail = "" if first is None else f"case {first.index}: {first.status} {first.detail}"[:300]
        if result.status not in ("ok", "error") and first is not None:
            detail = f"{result.status}; {detail}"[:300]
        total = len(tests.derived.cases)
        return Outcome(good == total and total > 0, good, total, detail)
    if result.ok:
        return Outcome(True, 1, 1, "")
    tail = (result.stderr.strip().splitlines() or [""])[-1]
    return Outcome(False, 0, 1, f"{result.status}: {tail}"[:300])


def run_all(jobs: Sequence[tuple[ItemTests, str]], limits: Limits = DEFAULT_LIMITS, workers: int = 2) -> list[Outcome]:
    """Each (tests, code) run in its own sandboxed process, `workers` at a time, in input order."""

    def one(job: tuple[ItemTests, str]) -> Outcome:
        tests, code = job
        return judge(tests, run_python(program(tests, code), limits=limits))

    if workers <= 1 or len(jobs) <= 1:
        return [one(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="otlake-sandbox") as pool:
        return list(pool.map(one, jobs))


def checked_tests(items: Sequence[EvalItem], limits: Limits = DEFAULT_LIMITS, workers: int = 2) -> list[ItemTests]:
    """Each item's tests, kept only where its reference passes them."""
    found = [tests_for(item) for item in items]
    jobs = [(i, t) for i, t in enumerate(found) if t.present]
    outcomes = run_all([(t, items[i].reference) for i, t in jobs], limits, workers)
    for (i, t), outcome in zip(jobs, outcomes):
        if not outcome.passed:
            found[i] = ItemTests(reason=f"{REFERENCE_FAILS} ({outcome.detail})"[:300])
    return found
