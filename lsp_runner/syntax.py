"""Every syntax error of a Python file, as ruff's error-resilient parser reports them.

CPython's `ast.parse` stops at the first error; a file with several needs
them all to tell whether an edit added one. Ruff is the parser the editor
showed the user (pyright-extended), and it recovers after each error.
"""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import tempfile
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from .config import DEFAULT_CONFIG
from .errors import LspError
from .tools import ruff_binary


@dataclass(frozen=True, order=True)
class SyntaxIssue:
    """One syntax error: 0-based line and column, the parser's message."""

    line: int
    column: int
    message: str


def python_parses(code: str) -> bool:
    """Whether CPython's own parser accepts the code."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)  # invalid escapes in user code are not errors
            ast.parse(_without_bom(code))
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # NUL bytes; nesting past the parser's limits
        return False
    return True


def _without_bom(code: str) -> str:
    # a file's UTF-8 byte order mark is its encoding's, not code: Python and the servers read past it
    return code.removeprefix("\ufeff")


_CACHE: OrderedDict[bytes, tuple[SyntaxIssue, ...]] = OrderedDict()
_CACHE_SIZE = 16384  # mining asks about the same candidate texts again and again (a batch's at once)


def _digest(code: str) -> bytes:
    return hashlib.blake2b(code.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _remember(key: bytes, found: tuple[SyntaxIssue, ...]) -> None:
    _CACHE[key] = found
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)


def syntax_errors(code: str) -> tuple[SyntaxIssue, ...]:
    """The file's syntax errors in order; empty when it parses.

    Ruff's list when it has one; where CPython rejects what ruff accepts (a
    rare disagreement), or ruff fails on the text (it overflows its stack on
    thousands of nested brackets), CPython's first error. Raises LspError when
    ruff cannot be started at all.
    """
    key = _digest(code)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    found = () if python_parses(code) else _ruff_syntax_errors(code)
    _remember(key, found)
    return found


def prefetch_syntax_errors(texts, chunk: int = 256) -> None:
    """Work out the syntax errors of many texts with one ruff process per `chunk` of them (what
    syntax_errors then returns from its cache); `texts` may be a generator."""
    todo: dict[bytes, str] = {}
    for code in texts:
        key = _digest(code)
        if key in _CACHE or key in todo:
            continue
        if python_parses(code):
            _remember(key, ())
            continue
        todo[key] = code
        if len(todo) >= chunk:
            _ruff_many(todo)
            todo = {}
    if len(todo) > 1:  # one text: syntax_errors' own call costs the same
        _ruff_many(todo)


def _ruff_many(todo: dict[bytes, str]) -> None:
    with tempfile.TemporaryDirectory(prefix="otlake-syntax-") as folder:
        names = {}
        for n, (key, code) in enumerate(todo.items()):
            path = Path(folder) / f"t{n}.py"
            path.write_bytes(code.encode("utf-8", "replace"))
            names[path.name] = key
        try:
            proc = subprocess.run([*_ruff_argv(), "--", *names], cwd=folder, capture_output=True, check=False,
                                  timeout=600)
            rows = json.loads(proc.stdout or b"[]") if proc.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired, ValueError):
            rows = None
    if not isinstance(rows, list):
        return  # each text is asked on its own later, with its own fallback
    found: dict[bytes, list[SyntaxIssue]] = {key: [] for key in todo}
    for r in rows:
        key = names.get(Path(r.get("filename", "")).name)
        if key is not None and r.get("code") in _SYNTAX_CODES:
            found[key].append(_issue(r))
    for key, issues in found.items():
        _remember(key, tuple(sorted(issues)) or _python_error(todo[key]))


_SYNTAX_CODES = (None, "invalid-syntax", "E999")


def _ruff_argv() -> list[str]:
    return [ruff_binary(), "check", "--isolated", "--no-cache", "--exit-zero", "--output-format", "json",
            "--select", "E9", "--target-version", "py" + DEFAULT_CONFIG.python_version.replace(".", "")]


def _issue(row: dict) -> SyntaxIssue:
    return SyntaxIssue(max(row["location"]["row"] - 1, 0), max(row["location"]["column"] - 1, 0), row["message"])


def _ruff_syntax_errors(code: str) -> tuple[SyntaxIssue, ...]:
    try:
        # a lone surrogate becomes "?": one code point for one, so positions hold
        proc = subprocess.run([*_ruff_argv(), "--stdin-filename", "main.py", "-"],
                              input=code.encode("utf-8", "replace"), capture_output=True, check=False, timeout=60)
    except OSError as e:
        raise LspError(f"ruff could not run: {e}") from e
    except subprocess.TimeoutExpired:
        proc = None
    try:
        rows = json.loads(proc.stdout or b"[]") if proc is not None and proc.returncode == 0 else []
    except ValueError:
        rows = []
    if not isinstance(rows, list):
        rows = []
    found = sorted(_issue(r) for r in rows if r.get("code") in _SYNTAX_CODES)
    return tuple(found) or _python_error(code)


def _python_error(code: str) -> tuple[SyntaxIssue, ...]:
    """CPython's first syntax error, or none."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            ast.parse(_without_bom(code))
    except SyntaxError as e:
        return (SyntaxIssue(max((e.lineno or 1) - 1, 0), max((e.offset or 1) - 1, 0), e.msg),)
    except (ValueError, RecursionError, MemoryError) as e:
        return (SyntaxIssue(0, 0, f"{type(e).__name__}: {e}"),)
    return ()
