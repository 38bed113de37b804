"""DebugBench-style bugs planted into correct Python by rule; keep_flagged (eval.inject_check, exported here
too) keeps those the meta-LSP sees.

The LiveCodeBench idea for repair: new problems after a model's cutoff, made
from correct solutions a user chooses. Each injector edits one line and keeps
every other line byte-identical; the site depends only on (code, subtype, seed).
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import io
import keyword
import random
import re
import tokenize
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .errors import EvalError
from .inject_check import keep_flagged

__all__ = ["CATEGORY", "REFERENCE", "SUBTYPES", "SYNTAX", "Injection", "candidate_sites", "inject",
           "keep_flagged"]

SYNTAX = ("illegal_comment", "illegal_indentation", "missing_colons", "misused_equals",
          "unclosed_parentheses", "unclosed_string")
REFERENCE = ("faulty_indexing", "illegal_keywords", "undefined_methods", "undefined_objects")
SUBTYPES = SYNTAX + REFERENCE
CATEGORY = {**{s: "syntax" for s in SYNTAX}, **{s: "reference" for s in REFERENCE}}

# Python's name -> (another language's, that language, what must follow it: "(" a call, "." an attribute)
_FOREIGN = {"True": ("true", "JavaScript", ""), "False": ("false", "JavaScript", ""), "None": ("null", "Java", ""),
            "len": ("length", "JavaScript", "("), "print": ("console.log", "JavaScript", "("),
            "max": ("Math.max", "Java", "("), "min": ("Math.min", "Java", "("), "abs": ("Math.abs", "Java", "("),
            "str": ("String", "Java", "("), "int": ("parseInt", "JavaScript", "("),
            "math": ("Math", "Java", "."), "self": ("this", "Java", ".")}
# methods of builtin types -> another language's name for them, which the Python type lacks
_FOREIGN_METHODS: dict[type, dict[str, str]] = {
    list: {"append": "push", "extend": "addAll", "pop": "removeLast", "sort": "sorted", "insert": "add", "index": "indexOf"},
    dict: {"items": "iteritems", "keys": "keySet", "get": "getOrDefault", "values": "valueList"},
    set: {"add": "push", "remove": "delete", "discard": "erase"},
    str: {"join": "concat", "lower": "toLowerCase", "upper": "toUpperCase", "strip": "trim", "find": "indexOf"}}
_BUILT = {ast.List: list, ast.ListComp: list, ast.Dict: dict, ast.DictComp: dict, ast.Set: set, ast.SetComp: set,
          ast.JoinedStr: str}


@dataclass(frozen=True)
class Injection:
    """One planted bug: the buggy code, the 1-based line holding it, a sentence on it, and that line before."""

    subtype: str
    buggy_code: str
    line: int
    explanation: str
    original_line: str  # the planted line in the correct code, without its line break

    @property
    def original_code(self) -> str:
        """The correct code the bug was planted into."""
        lines = self.buggy_code.split("\n")
        lines[self.line - 1] = self.original_line
        return "\n".join(lines)


@dataclass(frozen=True)
class _Edit:
    line: int  # 1-based
    text: str  # the line's new text
    explanation: str


class _Source:
    """Correct code with its lines, tokens and tree, and a maker of one-line edits."""

    def __init__(self, code: str) -> None:
        try:
            self.tree = ast.parse(code)
        except (SyntaxError, ValueError) as e:
            raise EvalError(f"inject: the code does not parse ({e}); plant bugs only into correct code") from e
        self.code, self.lines = code, code.split("\n")
        skip = {tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
        self.logical: list[list[tokenize.TokenInfo]] = [[]]  # tokens of each logical line, NEWLINE last
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type not in skip:
                self.logical[-1].append(tok)
                if tok.type == tokenize.NEWLINE:
                    self.logical.append([])
        self.tokens = [t for toks in self.logical for t in toks]
        self.names = {t.string for t in self.tokens if t.type == tokenize.NAME}
        self.parents = {child: node for node in ast.walk(self.tree) for child in ast.iter_child_nodes(node)}
        self.annotations = {id(n) for node in ast.walk(self.tree) for field in ("annotation", "returns")
                            if isinstance(getattr(node, field, None), ast.AST) for n in ast.walk(getattr(node, field))}
        # statement -> (block owner, field, index in the block, the block)
        self.place = {id(s): (node, field, i, body) for node in ast.walk(self.tree)
                      for field in ("body", "orelse", "finalbody") for body in [getattr(node, field, None)]
                      if isinstance(body, list) for i, s in enumerate(body) if isinstance(s, ast.stmt)}

    def edit(self, row: int, start: int, end: int, new: str, why: str, expect: str | None = None) -> _Edit | None:
        """Characters [start, end) of line `row` replaced by `new`; None when they are not `expect`."""
        line = self.lines[row - 1]
        if expect is not None and line[start:end] != expect:
            return None
        return _Edit(row, line[:start] + new + line[end:], why)

    def replace(self, node: ast.AST, new: str, why: str, tail: str | None = None) -> _Edit | None:
        """A one-line node's text (or only its last `len(tail)` characters, which must be `tail`) replaced."""
        if node.lineno != node.end_lineno:
            return None
        raw = self.lines[node.lineno - 1].encode()
        start, end = len(raw[:node.col_offset].decode()), len(raw[:node.end_col_offset].decode())
        if tail is not None:
            return self.edit(node.lineno, end - len(tail), end, new, why, tail)
        return self.edit(node.lineno, start, end, new, why, ast.get_source_segment(self.code, node))

    def line_statements(self) -> Iterator[tuple[ast.stmt, str, tuple]]:
        """Statements that begin their line, with that line and their place in their block."""
        for node in ast.walk(self.tree):
            line = self.lines[node.lineno - 1] if isinstance(node, ast.stmt) else ""
            if line and len(line.encode()) - len(line.lstrip().encode()) == node.col_offset and id(node) in self.place:
                yield node, line, self.place[id(node)]

    def undefined(self, name: str) -> bool:
        """Whether the name is nowhere in the code, and no builtin or keyword."""
        return name not in self.names and not hasattr(builtins, name) and not keyword.iskeyword(name)

    def in_method(self, node: ast.AST) -> bool:
        """Whether `node` lies inside a method whose first parameter is `self`."""
        while node in self.parents:
            node, parent = self.parents[node], self.parents.get(self.parents[node])
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and isinstance(parent, ast.ClassDef):
                return bool(node.args.args) and node.args.args[0].arg == "self"
        return False


def _indent(line: str) -> str:
    return line[:len(line) - len(line.lstrip())]


def _show(text: str, limit: int = 50) -> str:
    return "`" + (text.strip() if len(text.strip()) <= limit else text.strip()[:limit - 3] + "...") + "`"


def _missing_colons(src: _Source) -> Iterator[_Edit | None]:
    for toks in src.logical:
        if len(toks) > 2 and toks[-2].string == ":" and toks[-1].type == tokenize.NEWLINE:
            colon, head = toks[-2], toks[1 if toks[0].string == "async" else 0].string
            yield src.edit(colon.start[0], colon.start[1], colon.end[1], "",
                           f"The colon ending the `{head}` header is missing, causing a SyntaxError.", ":")


def _unclosed_parentheses(src: _Source) -> Iterator[_Edit | None]:
    for toks in src.logical:
        if not toks or toks[0].start[0] != toks[-1].start[0]:
            continue  # DebugBench drops brackets of one-line statements
        opened: list[int] = []
        for i, tok in enumerate(toks):
            if tok.type == tokenize.OP and tok.string in ("(", "[", "{"):
                opened.append(i)
            elif tok.type == tokenize.OP and tok.string in (")", "]", "}"):
                first = opened.pop()
                if first > 0 and toks[first - 1].type == tokenize.NAME and not keyword.iskeyword(toks[first - 1].string):
                    first -= 1  # name the callee: `Counter(w`
                what = src.lines[tok.start[0] - 1][toks[first].start[1]:tok.start[1]]
                if tok.string != "}":
                    yield src.edit(tok.start[0], tok.start[1], tok.end[1], "", f"The closing '{tok.string}' of "
                                   f"{_show(what)} is missing, so the bracket is never closed.", tok.string)


def _unclosed_string(src: _Source) -> Iterator[_Edit | None]:
    strings = [t for t in src.tokens if t.type == tokenize.STRING and t.start[0] == t.end[0]
               and not t.string.endswith(('"""', "'''"))]
    for tok in strings:
        yield src.edit(tok.start[0], tok.end[1] - 1, tok.end[1], "",
                       f"The string {_show(tok.string)} has no closing quote, so it is never closed.")
    if not strings:  # nothing to break: a stray quote opens a string, as in DebugBench's `return 'res`
        for prev, tok in zip(src.tokens, src.tokens[1:]):
            if tok.type == tokenize.NAME and not keyword.iskeyword(tok.string) and prev.string in ("return", "=", "("):
                yield src.edit(tok.start[0], tok.start[1], tok.start[1], "'",
                               f"The quote before `{tok.string}` opens a string that is never closed.")


def _misused_equals(src: _Source) -> Iterator[_Edit | None]:
    for tok in src.tokens:
        if tok.type == tokenize.OP and tok.string in ("==", "!=", "<=", ">=", "<", ">"):
            line = src.lines[tok.start[0] - 1]
            yield src.edit(tok.start[0], tok.start[1], tok.end[1], "=",
                           f"The assignment operator = is used instead of the comparison {tok.string} in "
                           f"{_show(line[:tok.start[1]] + '=' + line[tok.end[1]:])}.", tok.string)


def _illegal_indentation(src: _Source) -> Iterator[_Edit | None]:
    for stmt, line, (owner, field, i, block) in src.line_statements():
        old = _indent(line)
        if i == 0 and field == "body" and hasattr(owner, "lineno") and owner.lineno < stmt.lineno:
            head = src.lines[owner.lineno - 1]
            yield src.edit(stmt.lineno, 0, len(old), _indent(head), f"The body of {_show(head, 40)} is not "
                           "indented under it, causing an IndentationError (expected an indented block).")
        if i > 0 and not hasattr(block[i - 1], "body"):  # after a compound statement, deeper may be its body
            yield src.edit(stmt.lineno, 0, len(old), old + ("\t" if "\t" in old else "    "),
                           f"{_show(line, 40)} is indented deeper than the statement before it, causing an "
                           "IndentationError (unexpected indent).")
        if i > 0 and old.endswith(" "):
            yield src.edit(stmt.lineno, 0, len(old), old[:-1], f"{_show(line, 40)} is dedented to a level that "
                           "matches no enclosing block, causing an IndentationError.")


def _illegal_comment(src: _Source) -> Iterator[_Edit | None]:
    for stmt, line, (_, _, i, block) in src.line_statements():
        old, code, end = _indent(line), line.strip(), "\r" if line.endswith("\r") else ""
        if hasattr(stmt, "body"):
            if i > 0 and not hasattr(block[i - 1], "body") and stmt.body[0].lineno == stmt.lineno + 1:
                yield src.edit(stmt.lineno, len(old), len(old), "# ", f"The header {_show(code, 40)} is "
                               "commented out, leaving its body indented under nothing (IndentationError).")
        elif stmt.lineno == stmt.end_lineno:
            yield src.edit(stmt.lineno, len(old), len(old), "// ", f"{_show(code, 40)} is commented out with "
                           "//, which is not a comment in Python, causing a SyntaxError.")
            yield src.edit(stmt.lineno, len(old), len(line), f"/* {code} */{end}", f"{_show(code, 40)} is wrapped "
                           "in the C-style comment /* */, which Python does not know, causing a SyntaxError.")


def _illegal_keywords(src: _Source) -> Iterator[_Edit | None]:
    toks = src.tokens
    for prev, tok, nxt in zip([None, *toks], toks, [*toks[1:], None]):
        new, language, follows = _FOREIGN.get(tok.string, ("", "", ""))
        if tok.type == tokenize.NAME and new and (not follows or (nxt is not None and nxt.string == follows)) \
                and not (prev is not None and prev.string == ".") and src.undefined(new.partition(".")[0]):
            yield src.edit(tok.start[0], tok.start[1], tok.end[1], new, f"`{new}` is {language}, not Python "
                           f"(Python has `{tok.string}`), so the name is undefined.", tok.string)


def _variants(name: str) -> Iterator[str]:
    """Plausible misspellings of a name: the other case style, the other number, the other first-letter case."""
    yield re.sub(r"(?<=[a-z0-9])([A-Z])", lambda m: "_" + m.group(1).lower(), name)
    yield re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)
    yield name[:-1] if name.endswith("s") and len(name) > 1 else name + "s"
    yield name[0].swapcase() + name[1:]
    yield name + "1"


def _built_type(node: ast.AST | None) -> type | None:
    """list, dict, set or str when the expression surely builds one (`[]`, `[0] * n`, `set()`, `''`), else None."""
    node = node.left if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) else node
    name = getattr(node.func, "id", "") if isinstance(node, ast.Call) else ""
    if name in ("list", "dict", "set", "str"):
        return getattr(builtins, name)
    return str if isinstance(node, ast.Constant) and isinstance(node.value, str) else _BUILT.get(type(node))


def _typed_names(src: _Source) -> dict[str, type]:
    """Names that every binding in the code gives one builtin type, so pyright knows the type too."""
    found: dict[str, set] = {}
    for node in ast.walk(src.tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            parent = src.parents.get(node)
            value = parent.value if isinstance(parent, ast.Assign) and parent.targets == [node] else None
            found.setdefault(node.id, set()).add(_built_type(value))  # a loop variable, an unpacking: unknown
        elif isinstance(node, ast.arg):
            found.setdefault(node.arg, set()).add(None)
    return {name: kinds.pop() for name, kinds in found.items() if len(kinds) == 1 and None not in kinds}


def _calls_by_plain_name(src: _Source, builtin: bool) -> Iterator[ast.Name]:
    """Callees in methods that `self.<name>` would not find: local functions, or else builtins."""
    members = {n.attr for n in ast.walk(src.tree) if isinstance(n, ast.Attribute)}
    members |= {getattr(n, "name", getattr(n, "id", "")) for c in ast.walk(src.tree) if isinstance(c, ast.ClassDef)
                for s in c.body for n in [s, *getattr(s, "targets", ())]}
    local = {n.name for n in ast.walk(src.tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
             and not isinstance(src.parents.get(n), ast.ClassDef)}
    for call in ast.walk(src.tree):
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id not in members \
                and (hasattr(builtins, call.func.id) if builtin else call.func.id in local) and src.in_method(call):
            yield call.func


def _misnamed_methods(src: _Source) -> Iterator[_Edit | None]:
    typed = _typed_names(src)
    for call in ast.walk(src.tree):
        func = call.func if isinstance(call, ast.Call) else None
        if not isinstance(func, ast.Attribute):
            continue
        if isinstance(func.value, ast.Name) and func.value.id == "self":
            new = next((v for v in _variants(func.attr) if v != func.attr and src.undefined(v)), None)
            if new is not None and src.in_method(call):
                yield src.replace(func, new, f"`self.{new}` is called, but the class defines no method `{new}` "
                                  f"(only `{func.attr}`).", tail=func.attr)
            continue
        kind = typed.get(func.value.id) if isinstance(func.value, ast.Name) else _built_type(func.value)
        new = _FOREIGN_METHODS.get(kind, {}).get(func.attr) if kind is not None else None
        if kind is not None and new is not None and not hasattr(kind, new):
            yield src.replace(func, new, f"`{new}` is not a method of {kind.__name__} (Python has "
                              f"`{func.attr}`), causing an AttributeError.", tail=func.attr)
    for func in _calls_by_plain_name(src, builtin=False):
        yield src.replace(func, "self." + func.id, f"`{func.id}` is a local function, but it is called as the "
                          f"method `self.{func.id}`, which the class lacks.")


def _undefined_methods(src: _Source) -> Iterator[_Edit | None]:
    edits = list(_misnamed_methods(src))
    yield from edits
    if not any(edits):  # the last resort: a builtin called as a method the class does not have
        for func in _calls_by_plain_name(src, builtin=True):
            yield src.replace(func, "self." + func.id, f"`self.{func.id}` is called, but the class defines no "
                              f"method `{func.id}` (the builtin was meant).")


def _undefined_objects(src: _Source) -> Iterator[_Edit | None]:
    bound = {n.id for n in ast.walk(src.tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    bound |= {a.arg for a in ast.walk(src.tree) if isinstance(a, ast.arg)} - {"self", "cls"}
    for node in ast.walk(src.tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in bound \
                and id(node) not in src.annotations:
            new = next((v for v in _variants(node.id) if src.undefined(v)), None)
            if new is not None:
                yield src.replace(node, new, f"`{new}` is used in place of `{node.id}`, but `{new}` is never "
                                  "defined, causing a NameError.")


def _faulty_indexing(src: _Source) -> Iterator[_Edit | None]:
    for node in ast.walk(src.tree):
        if isinstance(node, ast.Subscript) and id(node) not in src.annotations:
            index, why = node.slice, "is off by one and can run past the end of the sequence"
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "range" and len(node.args) in (1, 2):
            index, why = node.args[-1], "makes the loop run one step past the last valid index"
        else:
            continue
        old, seq = ast.get_source_segment(src.code, index) or "", getattr(node, "value", None)
        if isinstance(index, ast.Constant) and type(index.value) is int:
            new = str(index.value + 1)
        elif isinstance(index, ast.UnaryOp) and isinstance(index.operand, ast.Constant) and isinstance(seq, ast.Name):
            new = f"len({seq.id})"  # a[-1] -> a[len(a)]
        elif isinstance(index, ast.BinOp) and isinstance(index.op, ast.Sub) and getattr(index.right, "value", 0) == 1:
            new = ast.get_source_segment(src.code, index.left) or ""  # a[i - 1] -> a[i]
        elif isinstance(index, (ast.Name, ast.Attribute, ast.Call, ast.Subscript, ast.BinOp)):
            new = old + " + 1"
        else:
            continue
        yield src.replace(index, new, f"The index {_show(new)} (was {_show(old)}) {why}.")


# each subtype's injector is the function of its name
_INJECTORS: dict[str, Callable[[_Source], Iterator[_Edit | None]]] = {s: globals()[f"_{s}"] for s in SUBTYPES}


def _edits(code: str, subtype: str) -> tuple[_Source, list[_Edit]]:
    if subtype not in _INJECTORS:
        raise EvalError(f"inject: unknown subtype {subtype!r}; use one of {', '.join(SUBTYPES)}")
    src = _Source(code)
    edits = {(e.line, e.text): e for e in _INJECTORS[subtype](src) if e is not None and e.text != src.lines[e.line - 1]}
    return src, [edits[k] for k in sorted(edits)]


def _buggy(src: _Source, edit: _Edit, subtype: str) -> str | None:
    """The code with the edit when it parses exactly if the subtype's bugs should (syntax bugs must not), else None."""
    buggy = "\n".join(edit.text if row == edit.line else line for row, line in enumerate(src.lines, 1))
    try:
        ast.parse(buggy)
    except (SyntaxError, ValueError):
        return buggy if CATEGORY[subtype] == "syntax" else None
    return None if CATEGORY[subtype] == "syntax" else buggy


def candidate_sites(code: str, subtype: str) -> list[int]:
    """1-based lines where `inject` could plant a bug of `subtype`."""
    src, edits = _edits(code, subtype)
    return sorted({e.line for e in edits if _buggy(src, e, subtype) is not None})


def inject(code: str, subtype: str, seed: int) -> Injection | None:
    """Plant one bug of `subtype` into correct `code`; None when the code offers no site for it.

    Deterministic in (code, subtype, seed); EvalError when the code does not parse or the subtype is unknown.
    """
    src, edits = _edits(code, subtype)
    random.Random(f"{seed}:{subtype}:{hashlib.sha256(code.encode()).hexdigest()}").shuffle(edits)
    for edit in edits:
        buggy = _buggy(src, edit, subtype)
        if buggy is not None:
            return Injection(subtype, buggy, edit.line, edit.explanation, src.lines[edit.line - 1])
    return None
