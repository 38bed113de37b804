"""Functional correctness: an item's tests, the program that runs them on a candidate, and the verdict.

DebugBench items get tests derived from their examples (eval.leetcode);
plain JSONL items bring theirs (`tests`, optionally `check(entry_point)`).
Every program runs in the sandbox (eval.sandbox), one process per candidate,
and its verdict travels on the sandbox's private report channel, never on
stdout or the exit code. A JSONL item's program loads the candidate as a
module, puts back every builtin and module attribute the candidate changed
(and forgets the modules it imported), runs the tests in the candidate's
namespace, and only then reports "P"; an early exit, `os._exit`, an
exception at import, a patched `assert` helper or a print of a fake verdict
leaves no "P". An item's tests are kept only when its reference passes them:
tests the reference fails are the harness's mistake, not the model's, so
such items count as `no_tests` with that reason (and the share is reported).
When the sandbox itself fails (it could not start the program), the verdict
is None, "sandbox_failed: ...": not scored, never the model's failure.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .errors import EvalError
from .items import EvalItem
from .leetcode import DerivedTests, derive_tests, harness_source, read_outcomes
from .leetcode_harness import ENTRY
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
    """A candidate's test verdict: passed or not (None: the sandbox failed), cases passed of cases, and what
    failed first."""

    passed: bool | None
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


# The JSONL test program. Everything `main` uses is bound when it is defined, before the candidate runs.
_JSONL_PROGRAM = string.Template("""\
import builtins, sys


def _snapshot(_modules=sys.modules, _list=list, _vars=vars, _dict=dict):
    return [(name, module, _dict(_vars(module))) for name, module in _list(_modules.items())
            if hasattr(module, "__dict__")]


def _restore(saved, _modules=sys.modules, _list=list, _vars=vars, _get=dict.get, _set=dict.__setitem__,
             _del=dict.__delitem__, _pop=dict.pop, _builtins=builtins, _missing=object()):
    names = {name for name, _module, _attrs in saved}
    for name in _list(_modules):
        if name not in names:
            _pop(_modules, name, None)  # imported by the candidate: the tests import their own copy
    for name, module, attrs in saved:
        _set(_modules, name, module)
        current = _vars(module)
        for key, value in attrs.items():
            if _get(current, key, _missing) is not value:
                _set(current, key, value)
        if module is _builtins:
            for key in _list(current):
                if key not in attrs:
                    _del(current, key)


def _describe(error, _type=type, _str=str):
    try:
        return f"{_type(error).__name__}: {error}"[:500]
    except BaseException:
        return "an exception that cannot be printed"


def main(report, _exec=exec, _compile=compile, _Base=BaseException, _snapshot=_snapshot, _restore=_restore,
         _describe=_describe, _builtins=builtins, _names=frozenset(vars(builtins)), _list=list,
         _code=$code, _tests=$tests, _entry=$entry):
    ns = {"__name__": "__main__"}
    saved = _snapshot()
    try:
        _exec(_compile(_code, "<solution>", "exec"), ns)
    except _Base as e:
        report("F the candidate's module raised")
        report("D " + _describe(e))
        return
    _restore(saved)
    # the tests see the candidate's names, but the real builtins: none it shadowed or swapped
    scope = {key: value for key, value in _list(ns.items()) if key not in _names or key == _entry}
    scope["__builtins__"], scope["__name__"] = _builtins, "__main__"
    try:
        _exec(_compile(_tests, "<tests>", "exec"), scope)
        if _entry is not None:
            check = scope["check"]
            check(scope[_entry])
    except _Base as e:
        report("F a test failed")
        report("D " + _describe(e))
        return
    report("P")
""")


def program(tests: ItemTests, code: str) -> str:
    """The Python program that runs the tests on `code`; run it with `run_python(..., entry=ENTRY)`."""
    if tests.derived is not None:
        return harness_source(code, tests.derived)
    entry = tests.entry_point if tests.entry_point and "def check" in (tests.source or "") else None
    # one pass over the template: the candidate's text is never searched for the other placeholders
    return _JSONL_PROGRAM.substitute(code=repr(code), tests=repr(tests.source or ""), entry=repr(entry))


def judge(tests: ItemTests, result: SandboxResult) -> Outcome:
    """The verdict of one sandboxed run of `program(tests, ...)`, read from its report channel only."""
    total = len(tests.derived.cases) if tests.derived is not None else 1
    if result.status == "sandbox_failed":
        tail = (result.stderr.strip().splitlines() or ["no report from the sandbox"])[-1]
        return Outcome(None, 0, total, f"sandbox_failed: {tail}"[:300])
    if result.forged:
        return Outcome(False, 0, total, f"forged: {result.forged} line(s) on the report channel without its nonce")
    if tests.derived is not None:
        outcomes = read_outcomes(result.reports, tests.derived)
        good = sum(o.passed for o in outcomes)
        first = next((o for o in outcomes if not o.passed), None)
        detail = "" if first is None else f"case {first.index}: {first.status} {first.detail}"[:300]
        if result.status not in ("ok", "error") and first is not None:
            detail = f"{result.status}; {detail}"[:300]
        return Outcome(good == total and total > 0, good, total, detail)
    verdict = next((r for r in result.reports if r == "P" or r.startswith("F ")), None)
    if verdict == "P":
        return Outcome(True, 1, 1, "")
    if verdict is None:
        tail = (result.stderr.strip().splitlines() or [""])[-1]
        return Outcome(False, 0, 1, f"{result.status}: the program ended before its tests reported; {tail}"[:300])
    detail = next((r[2:] for r in result.reports if r.startswith("D ")), "")
    return Outcome(False, 0, 1, f"{verdict[2:]}: {detail}"[:300])


def run_all(jobs: Sequence[tuple[ItemTests, str]], limits: Limits = DEFAULT_LIMITS, workers: int = 2) -> list[Outcome]:
    """Each (tests, code) run in its own sandboxed process, `workers` at a time, in input order."""

    def one(job: tuple[ItemTests, str]) -> Outcome:
        tests, code = job
        try:
            return judge(tests, run_python(program(tests, code), limits=limits, entry=ENTRY))
        except (EvalError, OSError) as e:  # the sandbox could not be set up: not the candidate's doing
            return Outcome(None, 0, tests.cases, f"sandbox_failed: {e}"[:300])

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
        if outcome.passed is None:
            found[i] = ItemTests(reason=f"no_tests: the reference could not be run ({outcome.detail})"[:300])
        elif not outcome.passed:
            found[i] = ItemTests(reason=f"{REFERENCE_FAILS} ({outcome.detail})"[:300])
    return found
