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
import warnings
from collections import OrderedDict
from dataclasses import dataclass

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
            ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # NUL bytes; nesting past the parser's limits
        return False
    return True


_CACHE: OrderedDict[bytes, tuple[SyntaxIssue, ...]] = OrderedDict()
_CACHE_SIZE = 4096  # mining asks about the same candidate texts again and again


def syntax_errors(code: str) -> tuple[SyntaxIssue, ...]:
    """The file's syntax errors in order; empty when it parses.

    Ruff's list when it has one; where CPython rejects what ruff accepts (a
    rare disagreement), or ruff fails on the text (it overflows its stack on
    thousands of nested brackets), CPython's first error. Raises LspError when
    ruff cannot be started at all.
    """
    if python_parses(code):
        return ()
    key = hashlib.blake2b(code.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    found = _ruff_syntax_errors(code)
    _CACHE[key] = found
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return found


def _ruff_syntax_errors(code: str) -> tuple[SyntaxIssue, ...]:
    argv = [ruff_binary(), "check", "--isolated", "--no-cache", "--exit-zero", "--output-format", "json",
            "--select", "E9", "--target-version", "py" + DEFAULT_CONFIG.python_version.replace(".", ""),
            "--stdin-filename", "main.py", "-"]
    try:
        # a lone surrogate becomes "?": one code point for one, so positions hold
        proc = subprocess.run(argv, input=code.encode("utf-8", "replace"), capture_output=True,
                              check=False, timeout=60)
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
    found = sorted(SyntaxIssue(max(r["location"]["row"] - 1, 0), max(r["location"]["column"] - 1, 0),
                               r["message"]) for r in rows if r.get("code") in (None, "invalid-syntax", "E999"))
    if found:
        return tuple(found)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            ast.parse(code)
    except SyntaxError as e:
        return (SyntaxIssue(max((e.lineno or 1) - 1, 0), max((e.offset or 1) - 1, 0), e.msg),)
    except (ValueError, RecursionError, MemoryError) as e:
        return (SyntaxIssue(0, 0, f"{type(e).__name__}: {e}"),)
    return ()
