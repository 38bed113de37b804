"""Beginner mistakes a person could make while typing a given line of a module, found with `ast`."""

from __future__ import annotations

import ast
import builtins
import keyword
import random
from dataclasses import dataclass

_ATTRIBUTE_CONFUSIONS = {
    "append": "push",
    "lower": "toLowerCase",
    "upper": "toUpperCase",
    "startswith": "startsWith",
    "endswith": "endsWith",
    "strip": "trim",
    "items": "item",
    "keys": "key",
    "values": "value",
    "join": "joins",
    "split": "splits",
    "extend": "extends",
    "format": "fromat",
}
SYNTAX_KINDS = frozenset({"missing_colon", "unclosed_bracket", "bad_indent"})
_COMPOUND = (ast.If, ast.For, ast.While, ast.FunctionDef, ast.ClassDef, ast.With, ast.Try)


@dataclass(frozen=True)
class Mistake:
    """What a user typed instead of line `line` (1-based) of the intended text."""

    kind: str
    line: int
    wrong: str | None  # None: the user left the line out
    right: str
    error: str  # the last line Python prints when the file runs

    @property
    def breaks_syntax(self) -> bool:
        """True when the file no longer parses: the editor shows it at once, users fix it soon."""
        return self.kind in SYNTAX_KINDS


def plan_mistakes(text: str, rng: random.Random) -> dict[int, list[Mistake]]:
    """Mistakes a beginner could make on each line of `text`, keyed by 1-based line."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return {}
    lines = text.split("\n")
    nodes = list(ast.walk(tree))
    known = _known_names(nodes)
    modules = _imported_modules(nodes)
    found: dict[int, dict[str, Mistake]] = {}

    def add(kind: str, lineno: int, wrong: str | None, error: str) -> None:
        right = lines[lineno - 1]
        if wrong != right:
            found.setdefault(lineno, {}).setdefault(
                kind, Mistake(kind, lineno, wrong, right, error)
            )

    used_names = {n.id for n in nodes if isinstance(n, ast.Name)}
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)) and node.col_offset == 0:
            _missing_import(node, used_names, add)
        if not isinstance(node, ast.stmt):
            continue
        line = lines[node.lineno - 1]
        if isinstance(node, _COMPOUND) and node.body[0].lineno > node.lineno:
            if line.rstrip().endswith(":") and "#" not in line:
                add("missing_colon", node.lineno, line.rstrip()[:-1], "SyntaxError: expected ':'")
            continue
        if node.lineno != node.end_lineno:
            continue
        _on_simple_line(node, line, known, modules, rng, add)
    for body in _bodies(nodes):
        for stmt in body[1:]:
            line = lines[stmt.lineno - 1]
            if stmt.col_offset >= 4 and stmt.lineno == stmt.end_lineno and "#" not in line:
                if rng.random() < 0.5:
                    add(
                        "bad_indent",
                        stmt.lineno,
                        "  " + line,
                        "IndentationError: unexpected indent",
                    )
                else:
                    add(
                        "bad_indent",
                        stmt.lineno,
                        line[1:],
                        "IndentationError: unindent does not match any outer indentation level",
                    )
    return {lineno: list(kinds.values()) for lineno, kinds in sorted(found.items())}


def _on_simple_line(node, line, known, modules, rng, add) -> None:
    stripped = line.rstrip()
    if stripped[-1:] in ")]}" and "#" not in line:
        opener = {")": "(", "]": "[", "}": "{"}[stripped[-1]]
        add(
            "unclosed_bracket",
            node.lineno,
            stripped[:-1],
            f"SyntaxError: '{opener}' was never closed",
        )
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load) and len(sub.id) >= 3:
            start, end = _chars(line, sub.col_offset), _chars(line, sub.end_col_offset)
            wrong = misspell(sub.id, rng, known)
            if line[start:end] == sub.id and wrong:
                error = f"NameError: name '{wrong}' is not defined. Did you mean: '{sub.id}'?"
                add("undefined_name", node.lineno, line[:start] + wrong + line[end:], error)
        elif isinstance(sub, ast.Attribute) and len(sub.attr) >= 3 and sub.lineno == sub.end_lineno:
            end = _chars(line, sub.end_col_offset)
            start = end - len(sub.attr)
            wrong = _ATTRIBUTE_CONFUSIONS.get(sub.attr) or misspell(sub.attr, rng, set())
            if line[start:end] == sub.attr and wrong:
                owner = _owner(sub.value, modules)
                error = f"AttributeError: {owner} has no attribute '{wrong}'"
                add("wrong_attribute", node.lineno, line[:start] + wrong + line[end:], error)
        elif (
            isinstance(sub, ast.BinOp)
            and isinstance(sub.op, (ast.Add, ast.Sub, ast.Mult))
            and isinstance(sub.right, ast.Constant)
            and type(sub.right.value) is int
        ):
            start, end = _chars(line, sub.right.col_offset), _chars(line, sub.right.end_col_offset)
            digits = line[start:end]
            if digits.isdigit():
                symbol = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*"}[type(sub.op)]
                error = f"TypeError: unsupported operand type(s) for {symbol}: 'int' and 'str'"
                add("type_misuse", node.lineno, f'{line[:start]}"{digits}"{line[end:]}', error)


def _missing_import(node, used_names, add) -> None:
    if node.lineno != node.end_lineno or len(node.names) != 1 or node.names[0].asname:
        return
    if isinstance(node, ast.ImportFrom) and node.module == "__future__":
        return
    name = node.names[0].name.split(".")[0]
    if name in used_names:
        add("missing_import", node.lineno, None, f"NameError: name '{name}' is not defined")


def misspell(name: str, rng: random.Random, known: set[str]) -> str | None:
    """A plausible misspelling of `name` that names nothing in `known`, or None."""
    for _ in range(6):
        i = rng.randrange(1, len(name))
        how = rng.random()
        if how < 0.4 and i < len(name) - 1:
            wrong = name[:i] + name[i + 1] + name[i] + name[i + 2 :]  # swapped letters
        elif how < 0.7:
            wrong = name[:i] + name[i + 1 :]  # dropped letter
        elif how < 0.85:
            wrong = name[:i] + name[i] + name[i:]  # doubled letter
        else:
            wrong = name[0].swapcase() + name[1:]
        usable = wrong != name and wrong.isidentifier() and not keyword.iskeyword(wrong)
        if usable and wrong not in known and not hasattr(builtins, wrong):
            return wrong
    return None


def _known_names(nodes: list[ast.AST]) -> set[str]:
    names = set()
    for node in nodes:
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
    return names


def _imported_modules(nodes: list[ast.AST]) -> set[str]:
    return {
        (alias.asname or alias.name).split(".")[0]
        for node in nodes
        if isinstance(node, ast.Import)
        for alias in node.names
    }


def _owner(value: ast.expr, modules: set[str]) -> str:
    if isinstance(value, ast.Name) and value.id in modules:
        return f"module '{value.id}'"
    kinds = {ast.List: "list", ast.Dict: "dict", ast.Set: "set", ast.Tuple: "tuple"}
    if isinstance(value, ast.Constant):
        return f"'{type(value.value).__name__}' object"
    return f"'{kinds.get(type(value), 'NoneType')}' object"


def _bodies(nodes: list[ast.AST]):
    for node in nodes:
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                yield body


def _chars(line: str, byte_offset: int) -> int:
    # ast columns count UTF-8 bytes; the editor counts code points
    if line.isascii():
        return byte_offset
    return len(line.encode()[:byte_offset].decode("utf-8", errors="ignore"))
