"""Benchmark items: DebugBench-format records and plain JSONL, loaded strictly, with their target diagnostic.

An item is one buggy file, its reference fix, optionally tests, and the
diagnostic the model is shown (the target). DebugBench and plain JSONL
records carry no diagnostic: `choose_target` picks it from what the meta-LSP
reports on the buggy code and not on the reference (a diagnostic about
LeetCode's implicit `List` is on both, so it is never the target), preferring
errors on the lines the bug changed. A record that cannot be read is a
`Skipped` with the file, record and reason; the others load.

Plain JSONL: one object a line, `{"id", "buggy_code", "fixed_code"}` and
optionally `tests` (Python run after the fixed code: asserts, or a
`check(candidate)` function called on `entry_point`, as in HumanEval),
`entry_point`, `category`, `subtype`, `path` (default main.py), `files`
(other files of the project, {path: text}) and a given target (`rule`,
`message`, `line` 1-based): the form `otlake eval make-replit` freezes.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lsp_runner.diagnostic import Diagnostic, normalize_message
from lsp_runner.snapshot import BadSnapshotPath, safe_relpath
from synth.linediff import opcodes, split_lines
from synth.schema import RULE, Prompt

from .errors import EvalError

DEBUGBENCH_CATEGORY = {
    "illegal_comment": "syntax", "illegal_indentation": "syntax", "missing_colons": "syntax",
    "misused_equals": "syntax", "unclosed_parentheses": "syntax", "unclosed_string": "syntax",
    "faulty_indexing": "reference", "illegal_keywords": "reference", "undefined_methods": "reference",
    "undefined_objects": "reference",
}


# never a target: layout that no repair is about (the pairs stage's stylistic rules, and whitespace)
STYLISTIC = frozenset({"ruff[E501]", "ruff[I001]", "ruff[W291]", "ruff[W292]", "ruff[W293]", "ruff[W391]"})


@dataclass(frozen=True)
class EvalItem:
    """One repair problem: buggy code, the reference fix, what the model is shown and how it is tested."""

    id: str
    bench: str
    category: str
    subtype: str
    code: str                      # the buggy file
    reference: str                 # the reference fix of that file
    path: str = "main.py"
    files: Mapping[str, str] = field(default_factory=dict)  # the project's other files, for imports
    target: Diagnostic | None = None  # None until chosen
    record: Mapping | None = None  # the source record (DebugBench tests are derived from it)
    tests: str | None = None       # plain JSONL: test source run after the fixed code
    entry_point: str | None = None

    @property
    def rule(self) -> str:
        return self.target.code if self.target else ""

    def prompt(self) -> Prompt:
        """The sentinel prompt of this item (its target must be chosen)."""
        if self.target is None:
            raise EvalError(f"item {self.id}: no target diagnostic chosen")
        return Prompt(self.path, self.code, self.target.code, self.target.message, self.target.start_line + 1)


@dataclass(frozen=True)
class Skipped:
    """A record or item left out, with where it came from and why (counted in the run)."""

    id: str
    reason: str
    category: str = ""
    subtype: str = ""


def load_debugbench(paths: Sequence[str | Path]) -> tuple[list[EvalItem], list[Skipped]]:
    """Items from DebugBench-format files (a JSON list of records) or folders of `*.json` files."""
    items, skipped, taken = [], [], set()
    for file in _files(paths, (".json",)):
        subtype = file.stem.removeprefix("python3_")
        category = DEBUGBENCH_CATEGORY.get(subtype, "other")
        try:
            records = json.loads(file.read_bytes())
        except (OSError, ValueError) as e:
            raise EvalError(f"DebugBench file {file}: not readable JSON ({e})") from e
        if not isinstance(records, list):
            raise EvalError(f"DebugBench file {file}: expected a JSON list of records, found "
                            f"{type(records).__name__}")
        for index, record in enumerate(records):
            where = f"{file.name}:{index}"
            rid = f"{subtype}/{record.get('slug', index)}" if isinstance(record, dict) else where
            reason = _missing(record, ("buggy_code", "oracle_code"))
            if reason:
                skipped.append(Skipped(where, f"bad_record: {reason}", category, subtype))
                continue
            items.append(EvalItem(_unique(rid, taken), "debugbench", category, subtype,
                                  record["buggy_code"], record["oracle_code"], record=record))
    return items, skipped


def load_jsonl(paths: Sequence[str | Path], bench: str = "jsonl") -> tuple[list[EvalItem], list[Skipped]]:
    """Items from plain JSONL files (see the module docstring)."""
    items, skipped, taken = [], [], set()
    for file in _files(paths, (".jsonl",)):
        try:
            lines = file.read_bytes().split(b"\n")
        except OSError as e:
            raise EvalError(f"JSONL file {file}: not readable ({e.strerror})") from e
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{file.name}:{number}"
            try:
                record = json.loads(line)  # bytes: UTF-8 (or UTF-16/32 with a BOM), else a ValueError
            except ValueError as e:
                skipped.append(Skipped(where, f"bad_record: not JSON ({e})"))
                continue
            reason = _missing(record, ("id", "buggy_code", "fixed_code"))
            if reason:
                skipped.append(Skipped(where, f"bad_record: {reason}"))
                continue
            try:
                item = _jsonl_item(record, bench)
            except (EvalError, ValueError, TypeError) as e:
                skipped.append(Skipped(where, f"bad_record: {e}"))
                continue
            items.append(EvalItem(**{**item.__dict__, "id": _unique(item.id, taken)}))
    return items, skipped


def _jsonl_item(record: Mapping, bench: str) -> EvalItem:
    path = record.get("path") or "main.py"
    files = record.get("files") or {}
    if not isinstance(path, str) or not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise EvalError("'path' must be text and 'files' an object of path -> text")
    for name in (path, *files):
        try:
            safe_relpath(name)
        except BadSnapshotPath as e:
            raise EvalError(f"{e}: paths are relative to the project's root") from None
    if not path.endswith(".py"):
        raise EvalError(f"path {path!r}: the buggy file must be a Python file (.py)")
    for name in ("tests", "entry_point", "category", "subtype"):
        if record.get(name) is not None and not isinstance(record[name], str):
            raise EvalError(f"'{name}' must be text")
    target = None
    if record.get("rule") is not None:
        rule, message, line = record.get("rule"), record.get("message"), record.get("line")
        if not (isinstance(rule, str) and RULE.fullmatch(rule) and isinstance(message, str) and message.strip()
                and isinstance(line, int) and 1 <= line <= len(split_lines(record["buggy_code"]))):
            raise EvalError("a given target needs 'rule' (tool[rule]), 'message' and 'line' (1-based, in the file)")
        target = Diagnostic(path, rule, line - 1, 0, line - 1, 0, 1, message, source=rule.partition("[")[0])
    return EvalItem(str(record["id"]), bench, record.get("category") or "", record.get("subtype") or "",
                    record["buggy_code"], record["fixed_code"], path, dict(files), target, record,
                    record.get("tests"), record.get("entry_point"))


def changed_lines(buggy: str, reference: str) -> set[int]:
    """0-based lines of the buggy code that differ from the reference (trailing spaces ignored)."""
    a = [line.rstrip() for line in split_lines(buggy)]
    b = [line.rstrip() for line in split_lines(reference)]
    out: set[int] = set()
    for tag, i1, i2, _j1, _j2 in opcodes(a, b):
        if tag == "equal":
            continue
        out.update(range(i1, i2) if i2 > i1 else [min(i1, len(a) - 1)])  # a deletion: the line after it
    return {i for i in out if a[i].strip()} or out


def choose_target(item: EvalItem, buggy: Sequence[Diagnostic], reference: Sequence[Diagnostic]) -> Diagnostic | None:
    """The diagnostic the bug brought: on the buggy code more often than on the reference (never a STYLISTIC
    one); errors first, then on or next to the changed lines, nearest first, pyright before ruff; else None."""
    have = Counter(_key(d) for d in reference)
    seen: Counter = Counter()
    new = []
    for d in sorted(buggy, key=lambda d: d.sort_key()):
        if d.code in STYLISTIC:
            continue
        seen[_key(d)] += 1
        if seen[_key(d)] > have[_key(d)]:
            new.append(d)
    if not new:
        return None
    changed = changed_lines(item.code, item.reference) or {0}

    def rank(d: Diagnostic) -> tuple:
        distance = min(abs(d.start_line - line) for line in changed)
        return (d.severity != 1, distance > 1, distance, d.source != "pyright", d.start_line, d.start_character)

    return min(new, key=rank)


def item_digest(items: Iterable[EvalItem]) -> str:
    """sha256 over the items' ids, code, reference and targets: which problems a run saw."""
    h = hashlib.sha256()
    for item in items:
        h.update(item_part(item))
    return h.hexdigest()


def item_part(item: EvalItem) -> bytes:
    """What item_digest hashes of one item (the digest of several batches: their parts in order)."""
    target = (item.rule, item.target.message, item.target.start_line) if item.target else None
    return json.dumps([item.id, item.code, item.reference, target]).encode()


def _key(d: Diagnostic) -> tuple[str, str]:
    return d.code, normalize_message(d.message)


def _files(paths: Sequence[str | Path], suffixes: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes and p.is_file())
            if not found:
                raise EvalError(f"{path}: the folder has no {' or '.join(suffixes)} file")
            out += found
        elif path.is_file():
            out.append(path)
        else:
            raise EvalError(f"{path}: no such file or folder")
    return out


def _missing(record: object, names: tuple[str, ...]) -> str:
    if not isinstance(record, dict):
        return f"expected an object, found {type(record).__name__}"
    bad = [n for n in names if not isinstance(record.get(n), str) and not (n == "id" and isinstance(record.get(n), int))]
    return f"missing or not text: {', '.join(bad)}" if bad else ""


def _unique(rid: str, taken: set[str]) -> str:
    """The id, with '#2', '#3'... when an earlier item has it; the id returned is added to `taken`."""
    n, out = 2, rid
    while out in taken:
        out, n = f"{rid}#{n}", n + 1
    taken.add(out)
    return out
