"""The program that runs derived LeetCode tests (eval.leetcode) on a candidate, and the reading of its output.

LeetCode's Python 3 scope (PRELUDE), then the candidate, then each case: arguments built from LeetCode's list
form, the entry method called by position, the result serialised back and compared. The helpers below run
inside that program: harness_source copies their source into it."""

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
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .leetcode import DerivedTests


@dataclass(frozen=True)
class CaseOutcome:
    index: int
    passed: bool
    status: str  # 'passed' | 'wrong_answer' | 'exception' | 'missing'
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

# The functions from here to _run_cases run inside the harness program: harness_source copies their source.
_NODE_LIMIT = 100_000  # nodes in a result; more is a cycle that a buggy candidate made


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


def _run_cases(prelude, code, cases, kinds, return_kind, entry, any_order):
    """Load the candidate in LeetCode's namespace, run every case, print one JSON line per case."""
    # the candidate's prints are dropped: its stdout is not ours
    out, sys.stdout, sys.stdin = sys.stdout, open(os.devnull, "w"), io.StringIO("")  # noqa: SIM115

    def report(i, ok, got, error):
        got = None if got is None else json.dumps(got, default=repr)[:300]
        out.write(json.dumps({"i": i, "ok": ok, "got": got, "error": error}) + "\n")
        out.flush()

    ns = {"__name__": "solution"}
    try:
        exec(compile(prelude, "<prelude>", "exec"), ns)  # noqa: S102 - the harness's job
        exec(compile(code, "<solution>", "exec"), ns)  # noqa: S102
        loaded = None
    except BaseException as e:  # noqa: BLE001 - a SyntaxError, or the module body raised: every case fails with it
        loaded = _describe(e)
    for i, case in enumerate(cases):
        if loaded is not None:
            report(i, False, None, loaded)
            continue
        try:
            args = [_build(copy.deepcopy(v), kinds[k], ns) for k, v in case["inputs"].items()]
            got = getattr(ns["Solution"](), entry)(*args)  # by position, as LeetCode calls it
            if return_kind == "in_place":
                got = _plain(args[0], kinds[next(iter(case["inputs"]))])
            else:
                got = _plain(got, return_kind)
            want = case["expected"]
            got = [] if got is None and isinstance(want, list) else got  # LeetCode prints None as []
            if any_order:
                got, want = _sorted(got), _sorted(want)
            report(i, _same(got, want), got, None)
        except BaseException as e:  # noqa: BLE001 - whatever the candidate raises is that case's outcome
            report(i, False, None, _describe(e))


@functools.cache
def _harness_functions() -> str:
    functions = (_build, _plain, _key, _sorted, _same, _describe, _run_cases)
    return (f"import collections, copy, io, json, math, os, sys\n\n_NODE_LIMIT = {_NODE_LIMIT}\n\n\n"
            + "\n\n".join(inspect.getsource(f) for f in functions))


def harness_source(code: str, tests: DerivedTests) -> str:
    """A complete Python program: LeetCode's prelude (imports, ListNode, TreeNode), the code under test, then
    each case run; prints one JSON line per case to stdout."""
    cases = [{"inputs": c.inputs, "expected": c.expected} for c in tests.cases]
    # Everything variable goes in as a string literal (repr) that is then parsed or exec'd: no candidate text
    # can change the harness's own code.
    return (f"{_harness_functions()}\n\n_run_cases({PRELUDE!r}, {code!r}, json.loads({json.dumps(cases)!r}), "
            f"{tests.arg_kinds!r}, {tests.return_kind!r}, {tests.entry_point!r}, {tests.any_order!r})\n")


def read_outcomes(stdout: str, tests: DerivedTests) -> list[CaseOutcome]:
    """One outcome per case from the harness's stdout; a case without a line (the program died) is 'missing'."""
    rows: dict[int, dict] = {}
    for line in stdout.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("i"), int) and "ok" in row:
            rows.setdefault(row["i"], row)
    outcomes = []
    for i, case in enumerate(tests.cases):
        row = rows.get(i)
        if row is None:
            outcomes.append(CaseOutcome(i, False, "missing", "no result line (timed out, or the program died)"))
        elif row.get("error"):
            outcomes.append(CaseOutcome(i, False, "exception", str(row["error"])))
        elif row["ok"] is True:
            outcomes.append(CaseOutcome(i, True, "passed", ""))
        else:
            want = json.dumps(case.expected)[:300]
            outcomes.append(CaseOutcome(i, False, "wrong_answer", f"expected {want}, got {row.get('got')}"))
    return outcomes
