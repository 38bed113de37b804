"""The program that runs derived LeetCode tests (eval.leetcode) on a candidate, and the judging of what it reports.

LeetCode's Python 3 scope (PRELUDE), then the candidate, then each case: arguments built from LeetCode's list
form, the entry method called by position, the result serialised back to LeetCode's list form and reported
through the sandbox's private channel (eval.sandbox: `report`, nonce-authenticated lines). The program holds
only the inputs: the expected outputs stay in this process, which compares (`read_outcomes`), so a candidate
that prints, exits early or patches the harness cannot make a wrong answer pass. The helpers from _build to
_run_cases run inside that program: harness_source copies their source into it."""

from __future__ import annotations

import collections
import copy
import functools
import inspect
import io
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .leetcode import DerivedTests


@dataclass(frozen=True)
class CaseOutcome:
    index: int
    passed: bool
    status: str  # 'passed' | 'wrong_answer' | 'exception' | 'missing' | 'forged'
    detail: str


# What LeetCode's Python 3 has in scope without imports (an accepted oracle calls `reduce(mul, ...)` bare).
# Star imports skip names that shadow a builtin: LeetCode's `pow(a, b, m)` is the builtin, not math.pow.
PRELUDE = '''\
import bisect, collections, copy, functools, heapq, itertools, math, operator, random, re, string, sys
import builtins as _builtins
from typing import *
for _mod in (collections, heapq, bisect, math, itertools, functools, string, operator):
    globals().update({k: v for k, v in vars(_mod).items() if not k.startswith("_") and not hasattr(_builtins, k)
                      and k in getattr(_mod, "__all__", vars(_mod))})
from collections import deque, defaultdict, Counter, OrderedDict
from functools import cache, lru_cache, reduce, cmp_to_key
from math import inf
try:
    from sortedcontainers import SortedList, SortedDict, SortedSet
except ImportError:
    pass


class ListNode:
    def __init__(self, val=0, next=None):
        self.val, self.next = val, next


class TreeNode:
    def __init__(self, val=0, left=None, right=None):
        self.val, self.left, self.right = val, left, right
'''

# _build, _plain, _describe and _run_cases run inside the harness program (harness_source copies their source);
# _key, _sorted and _same judge its reports in this process.
_NODE_LIMIT = 100_000  # nodes in a result; more is a cycle that a buggy candidate made
_RESULT_CAP = 1 << 20  # characters of one serialised result


def _build(value, kind, ns):
    """An argument from LeetCode's list form: a ListNode chain, a level-order TreeNode, or a list of them."""
    if kind.endswith("_list"):
        return [_build(v, kind.removesuffix("_list"), ns) for v in value]
    if kind == "list_node":
        head = None
        for v in reversed(value or []):
            head = ns["ListNode"](v, head)
        return head
    if kind != "tree_node":
        return value
    nodes = [None if v is None else ns["TreeNode"](v) for v in value or [None]]
    kids = iter(nodes[1:])
    for node in nodes:
        if node is not None:
            node.left, node.right = next(kids, None), next(kids, None)
    return nodes[0]


def _plain(value, kind):
    """A result in LeetCode's list form: nodes serialised, any iterable (tuple, deque, generator) a list."""
    out, limit = [], 2 * _NODE_LIMIT + 1  # entries: a tree of n nodes has at most 2n + 1 with the nulls
    if kind == "list_node":
        while value is not None and len(out) <= limit:
            out.append(value.val)
            value = value.next
    elif kind == "tree_node":
        queue = collections.deque([value])
        while queue and len(out) <= limit:
            node = queue.popleft()
            out.append(None if node is None else node.val)
            queue.extend(() if node is None else (node.left, node.right))
    elif isinstance(value, str | bytes | dict) or not hasattr(value, "__iter__"):
        return value
    else:
        return [_plain(v, kind.removesuffix("_list")) for v in value]
    if len(out) > limit:
        raise RuntimeError(f"result has more than {_NODE_LIMIT} nodes (a cycle?)")
    while out and out[-1] is None:
        out.pop()
    return out


def _key(value):
    return json.dumps(value, sort_keys=True, default=repr)


def _sorted(value):
    """One side of an any-order comparison: the list sorted, and its inner lists of scalars too."""
    if not isinstance(value, list):
        return value
    return sorted((sorted(v, key=_key) if isinstance(v, list) and not any(isinstance(x, list) for x in v) else v
                   for v in value), key=_key)


def _same(got, want):
    """Types must agree (true is not 1, "1" is not 1), floats within 1e-5 relative or absolute."""
    if isinstance(got, bool) or isinstance(want, bool):
        return type(got) is type(want) and got == want
    if isinstance(got, int | float) and isinstance(want, int | float) and float in (type(got), type(want)):
        return math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-5)
    if isinstance(got, list) and isinstance(want, list):
        return len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want, strict=True))
    return type(got) is type(want) and got == want


def _describe(error):
    try:
        return f"{type(error).__name__}: {error}"[:500]
    except BaseException:  # noqa: BLE001 - a candidate's exception whose __str__ raises
        return type(error).__name__


def _run_cases(report, prelude, code, cases, kinds, return_kind, entry):
    """Load the candidate in LeetCode's namespace, run every case, report one JSON line per case."""
    sys.stdout, sys.stdin = open(os.devnull, "w"), io.StringIO("")  # noqa: SIM115 - its prints are not ours
    dumps = json.dumps
    ns = {"__name__": "solution"}
    try:
        exec(compile(prelude, "<prelude>", "exec"), ns)  # noqa: S102 - the harness's job
        exec(compile(code, "<solution>", "exec"), ns)  # noqa: S102
        loaded = None
    except BaseException as e:  # noqa: BLE001 - a SyntaxError, or the module body raised: every case fails with it
        loaded = _describe(e)
    for i, case in enumerate(cases):
        if loaded is not None:
            report(dumps({"i": i, "error": loaded}))
            continue
        try:
            args = [_build(copy.deepcopy(v), kinds[k], ns) for k, v in case.items()]
            got = getattr(ns["Solution"](), entry)(*args)  # by position, as LeetCode calls it
            if return_kind == "in_place":
                got = _plain(args[0], kinds[next(iter(case))])
            else:
                got = _plain(got, return_kind)
            text = dumps(got, default=repr)
            if len(text) > _RESULT_CAP:
                raise ValueError(f"the result serialises to more than {_RESULT_CAP} characters")
            report(dumps({"i": i, "got": text}))
        except BaseException as e:  # noqa: BLE001 - whatever the candidate raises is that case's outcome
            report(dumps({"i": i, "error": _describe(e)}))


@functools.cache
def _harness_functions() -> str:
    functions = (_build, _plain, _describe, _run_cases)
    return (f"import collections, copy, io, json, math, os, sys\n\n_NODE_LIMIT = {_NODE_LIMIT}\n"
            f"_RESULT_CAP = {_RESULT_CAP}\n\n\n" + "\n\n".join(inspect.getsource(f) for f in functions))


ENTRY = "main"  # the function of the harness program that the sandbox calls with `report`


def harness_source(code: str, tests: DerivedTests) -> str:
    """A complete Python program: LeetCode's prelude (imports, ListNode, TreeNode), the code under test, then
    each case's inputs; run it with `run_python(..., entry=ENTRY)`. It holds no expected output."""
    cases = [c.inputs for c in tests.cases]
    # Everything variable goes in as a string literal (repr) that is then parsed or exec'd: no candidate text
    # can change the harness's own code. The arguments are bound when `main` is defined, before the candidate runs.
    return (f"{_harness_functions()}\n\ndef {ENTRY}(report, _run=_run_cases, _args=({PRELUDE!r}, {code!r}, "
            f"json.loads({json.dumps(cases)!r}), {tests.arg_kinds!r}, {tests.return_kind!r}, "
            f"{tests.entry_point!r})):\n    _run(report, *_args)\n")


def read_outcomes(reports: Sequence[str], tests: DerivedTests) -> list[CaseOutcome]:
    """One outcome per case from what the harness reported, compared here with the expected outputs.

    A case without a line (the program died or stopped early) is 'missing'; a case reported more than once,
    or a line that is not the harness's, makes that case 'forged'.
    """
    rows: dict[int, dict] = {}
    seen: dict[int, int] = {}
    for line in reports:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("i"), int) and not isinstance(row["i"], bool):
            seen[row["i"]] = seen.get(row["i"], 0) + 1
            rows.setdefault(row["i"], row)
    outcomes = []
    for i, case in enumerate(tests.cases):
        row = rows.get(i)
        if row is None:
            outcomes.append(CaseOutcome(i, False, "missing", "no result line (timed out, or the program died)"))
        elif seen[i] > 1:
            outcomes.append(CaseOutcome(i, False, "forged", f"reported {seen[i]} times"))
        elif row.get("error") or not isinstance(row.get("got"), str):
            outcomes.append(CaseOutcome(i, False, "exception", str(row.get("error") or "no result")[:500]))
        else:
            outcomes.append(_compare(i, row["got"], case.expected, tests.any_order))
    return outcomes


def _compare(i: int, text: str, want: object, any_order: bool) -> CaseOutcome:
    try:
        got = json.loads(text)
    except ValueError:
        return CaseOutcome(i, False, "exception", "the result is not JSON")
    got = [] if got is None and isinstance(want, list) else got  # LeetCode prints None as []
    if _same(_sorted(got), _sorted(want)) if any_order else _same(got, want):
        return CaseOutcome(i, True, "passed", "")
    return CaseOutcome(i, False, "wrong_answer", f"expected {json.dumps(want)[:300]}, got {text[:300]}")
