"""Offline functional tests from a LeetCode record's examples (DESIGN.md, "Evaluation"); the program that runs
them is eval.leetcode_harness. LeetCode's judge is not reachable: "Input: a = [1,2], b = 3\\nOutput: 4"
becomes a case, run the way LeetCode runs it (its implicit imports, ListNode/TreeNode, arguments by position,
results serialised back to its list form). Pure functions; running the program is the sandbox's job."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .leetcode_harness import CaseOutcome, harness_source, read_outcomes

# the harness that runs these tests (eval.leetcode_harness) is exported from here too
__all__ = ["KINDS", "CaseOutcome", "DerivedTests", "TestCase", "derive_tests", "harness_source", "parse_example",
           "parse_value", "read_outcomes", "split_top_level"]

KINDS = ("plain", "list_node", "tree_node", "list_node_list", "tree_node_list")  # and 'in_place' for returns
# Example names that point into the structure (a cycle's entry, an intersection): LeetCode's judge wires those
# nodes up with code we do not have.
_NODE_IDENTITY_NAMES = frozenset({"pos", "intersectVal", "skipA", "skipB", "listA", "listB"})
_KNOWN_TYPES = frozenset({"List", "Optional", "Dict", "Set", "Tuple", "Deque", "typing", "int", "float", "str",
                          "bool", "list", "dict", "set", "tuple", "None", "object", "Any", "ListNode", "TreeNode"})


@dataclass(frozen=True)
class TestCase:
    inputs: dict[str, object]  # the entry method's parameter name -> JSON-like value, in signature order
    expected: object
    text: str  # the example it came from

    __test__ = False  # not a pytest class


@dataclass(frozen=True)
class DerivedTests:
    entry_point: str
    cases: tuple[TestCase, ...]
    arg_kinds: dict[str, str]  # name -> one of KINDS (from the oracle's annotations)
    return_kind: str  # one of KINDS, or 'in_place' (returns None: the first argument is compared)
    any_order: bool = False  # the description says "return ... in any order": both sides compared sorted
    notes: tuple[str, ...] = ()  # what was done beyond reading the example ('names ... matched by position')


class _Unparsable(ValueError):
    pass


# ---- examples -------------------------------------------------------------------------------------------

def _scan(text: str):
    """(index, char, bracket depth, inside a quoted string) for each character."""
    depth, quote, escaped = 0, "", False
    for i, ch in enumerate(text):
        if quote:
            yield i, ch, depth, True
            escaped, quote = (False, quote) if escaped else (ch == "\\", "" if ch == quote else quote)
            continue
        quote = ch if ch in "\"'" else ""
        depth += (ch in "([{") - (ch in ")]}")
        yield i, ch, depth, bool(quote)


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split text at `sep` characters outside brackets and quoted strings."""
    cuts = [i for i, ch, depth, in_string in _scan(text) if ch == sep and depth == 0 and not in_string]
    return [text[a + 1:b] for a, b in zip([-1, *cuts], [*cuts, len(text)], strict=True)]


def _find_outside(text: str, label: str) -> int:
    """Where `label` first starts outside quoted strings, or -1."""
    return next((i for i, ch, _, quoted in _scan(text) if not quoted and text.startswith(label, i)), -1)


_STRING_OR_JSON_WORD = re.compile(r""""(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|\b(true|false|null)\b""")
_PYTHON_WORD = {"true": "True", "false": "False", "null": "None"}


def _json_like(value: object) -> object:
    if isinstance(value, tuple | list):
        return [_json_like(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise _Unparsable(f"not a JSON-like value: {type(value).__name__}")


def parse_value(text: str) -> object:
    """One example value (JSON-ish: true/false/null, nested lists, strings, numbers) as a Python value."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    python = _STRING_OR_JSON_WORD.sub(lambda m: _PYTHON_WORD.get(m.group(1), m.group(0)), text)
    try:
        return _json_like(ast.literal_eval(python))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        raise _Unparsable(f"cannot parse value {text[:60]!r}") from e


_ASSIGN = re.compile(r"\s*([A-Za-z_]\w*)\s*=(?!=)(.*)", re.DOTALL)


def parse_example(text: str) -> tuple[list[tuple[str | None, object]], object]:
    """An example's [(name, or None for a bare value; value)] and expected output; raises ValueError."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    start = text.find("Input:")
    out = _find_outside(text[start:], "Output:") + start if start >= 0 else -1
    if out < start or start < 0:
        raise _Unparsable("no 'Input: ... Output: ...'")
    pieces: list[list] = []
    for part in split_top_level(text[start + len("Input:"):out]):
        m = _ASSIGN.match(part)
        if m:
            pieces.append([m.group(1), m.group(2)])
        elif pieces:  # a top-level comma inside an unquoted value: it stays with its assignment
            pieces[-1][1] += "," + part
        else:
            pieces.append([None, part])
    if len(pieces) > 1 and pieces[0][0] is None:
        raise _Unparsable("input mixes a bare value with assignments")
    rest = text[out + len("Output:"):]
    end = _find_outside(rest, "Explanation")
    rest = rest[:end] if end >= 0 else rest
    try:
        expected = parse_value(rest)
    except _Unparsable:
        expected = parse_value(rest.strip().split("\n")[0])  # prose on the lines after the value
    return [(name, parse_value(value)) for name, value in pieces], expected


# ---- the entry point ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Method:
    name: str
    params: tuple[str, ...]
    required: int
    annotations: dict[str, str]
    returns: str | None


def _methods(oracle: str) -> list[_Method] | str:
    """The public methods of the oracle's class Solution, or the no_tests reason."""
    try:
        tree = ast.parse(oracle)
    except SyntaxError as e:
        return f"no_tests: oracle does not parse ({e.msg})"
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    solution = next((c for c in classes if c.name == "Solution"), None)
    if solution is None:
        return "no_tests: design problem" if classes else "no_tests: no class Solution"
    methods = []
    for fn in solution.body:
        if isinstance(fn, ast.FunctionDef) and not fn.name.startswith("_"):
            static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in fn.decorator_list)
            args = (fn.args.posonlyargs + fn.args.args)[0 if static else 1:]
            text = {a.arg: ast.unparse(a.annotation).strip("'\"") for a in args if a.annotation}
            returns = ast.unparse(fn.returns).strip("'\"") if fn.returns else None
            methods.append(_Method(fn.name, tuple(a.arg for a in args), len(args) - len(fn.args.defaults),
                                   text, returns))
    return methods or "no_tests: class Solution has no public method"


def _squash(name: str) -> str:
    return name.replace("_", "").lower()


def _match(methods: list[_Method], names: list[str | None]) -> tuple[_Method, str] | str:
    """The method the example's names call and how they were matched ('' for exactly), or the no_tests reason."""
    fits = [m for m in methods if m.required <= len(names) <= len(m.params)]
    for how, key in (("", str), ("names matched ignoring case and underscores", _squash)):
        given = sorted(key(n) for n in names) if None not in names else None
        hits = [m for m in fits if given == sorted(key(p) for p in m.params[:len(names)])]
        if len(hits) > 1:  # a helper with the same parameters: LeetCode's own method is the annotated one
            hits = [m for m in hits if m.annotations or m.returns]
        if len(hits) == 1:
            return hits[0], how
    if _NODE_IDENTITY_NAMES & set(names):
        return "no_tests: the example needs node identity (a cycle or an intersection)"
    if len(methods) > 1:
        return f"no_tests: no public method takes {names}"
    if not fits:
        return f"no_tests: {methods[0].name} does not take {len(names)} argument(s)"
    return fits[0], "names differ from the signature: matched by position"


def _kind(annotation: str | None) -> str:
    if not annotation:
        return "plain"
    if set(re.findall(r"[A-Za-z_]\w*", annotation)) - _KNOWN_TYPES:
        # an N-ary or quad-tree Node, CustomFunction, MountainArray: built by judge code we do not have
        raise _Unparsable(f"unsupported type {annotation!r}")
    for node, kind in (("ListNode", "list_node"), ("TreeNode", "tree_node")):
        if node in annotation:
            return kind + "_list" if re.match(r"(List|list)\[", annotation) else kind
    return "plain"


def _as_float(value: object) -> object:
    """An example's `6` for a float parameter is 6.0 on LeetCode (`hour.is_integer()` must work)."""
    if isinstance(value, list):
        return [_as_float(v) for v in value]
    return float(value) if type(value) is int else value


def derive_tests(record: Mapping) -> DerivedTests | str:
    """Tests from a DebugBench record's examples, or the reason there are none ('no_tests: ...')."""
    examples = record.get("examples") or []
    examples = [e for e in ([examples] if isinstance(examples, str) else examples) if isinstance(e, str) and e.strip()]
    if not examples:
        return "no_tests: no examples"
    if any(re.search(r"Input:?\s*\n\s*\[", e) for e in examples):  # operations and their arguments, as lists
        return "no_tests: design problem"
    methods = _methods(str(record.get("oracle_code") or ""))
    if isinstance(methods, str):
        return methods
    entry, notes, cases = None, set(), []
    for n, text in enumerate(examples, 1):
        try:
            args, expected = parse_example(text)
        except _Unparsable as e:
            return f"no_tests: example {n}: {e}"
        found = _match(methods, [name for name, _ in args])
        if isinstance(found, str):
            return found
        if entry not in (None, found[0]):
            return "no_tests: examples call different methods"
        entry, how = found
        notes.update([how] if how else [])
        if how.startswith("names differ"):
            inputs = dict(zip(entry.params, (v for _, v in args), strict=False))
        else:  # by name, in the signature's order (an example may list them in another)
            key = _squash if how else str
            by_key = {key(name): v for name, v in args}
            inputs = {p: by_key[key(p)] for p in entry.params if key(p) in by_key}
        cases.append(TestCase(inputs, expected, text))
    try:
        arg_kinds = {p: _kind(entry.annotations.get(p)) for p in entry.params}
        return_kind = "in_place" if entry.returns == "None" else _kind(entry.returns)
    except _Unparsable as e:
        return f"no_tests: {e}"
    if return_kind == "in_place" and not entry.params:
        return "no_tests: returns None and takes no argument"
    floats = {p for p in entry.params if re.fullmatch(r"((List|list)\[)*float\]*", entry.annotations.get(p, ""))}
    cases = [TestCase({k: _as_float(v) if k in floats else v for k, v in c.inputs.items()}, c.expected, c.text)
             for c in cases]
    # "return ... in any order", not "you can order the deck in any order you want"
    description = str(record.get("description") or "")
    any_order = bool(re.search(r"\breturn\b[^.\n]*\bin any order\b", description, re.IGNORECASE))
    notes |= {"any order: compared sorted"} if any_order else set()
    return DerivedTests(entry.name, tuple(cases), arg_kinds, return_kind, any_order, tuple(sorted(notes)))
