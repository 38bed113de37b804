"""Ruff over many snapshot trees in one process, converted the way pyright-extended converts it."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .config import LspConfig
from .diagnostic import Diagnostic
from .errors import LspError
from .snapshot import Tree
from .tools import ruff_binary

_ERROR_CODE = re.compile(r"^E\d{3}$")  # pyright-extended shows these as errors, the rest as warnings
_ARGV_BYTES = 100_000  # stay far below the kernel's argument limit; more files -> more processes


def ruff_severity(code: str) -> int:
    """LSP severity pyright-extended gives a ruff code: pycodestyle errors 1, everything else 2."""
    return 1 if _ERROR_CODE.match(code) else 2


def to_diagnostic(path: str, row: dict) -> Diagnostic:
    """One row of `ruff check --output-format json` as a Diagnostic (1-based -> 0-based)."""
    code = row.get("code")
    # ruff 0.5+ reports syntax errors without a rule code; editors and the simulator call them E999
    code = "E999" if code in (None, "", "invalid-syntax", "syntax-error") else code
    start = row["location"]
    end = row.get("end_location") or start
    return Diagnostic(
        path=path,
        code=f"ruff[{code}]",
        start_line=max(start["row"] - 1, 0),
        start_character=max(start["column"] - 1, 0),
        end_line=max(end["row"] - 1, 0),
        end_character=max(end["column"] - 1, 0),
        severity=ruff_severity(code),
        message=row["message"],
        has_code_action=row.get("fix") is not None,
        source="ruff",
    )


def lint_trees(trees: Sequence[Tree], base: Path, config: LspConfig) -> list[dict[str, list[Diagnostic]]]:
    """Ruff's diagnostics for every file to check in each tree; every tree lies under `base`.

    Raises LspError when ruff fails; the caller decides what fails with it.
    """
    results: list[dict[str, list[Diagnostic]]] = [{p: [] for p in t.texts} for t in trees]
    owner: dict[str, tuple[int, str]] = {}
    for index, tree in enumerate(trees):
        prefix = tree.root.relative_to(base).as_posix()
        for path in tree.texts:
            owner[f"{prefix}/{path}"] = (index, path)
    for chunk in _chunks(sorted(owner)):
        for row in _run(chunk, base, config):
            relative = Path(os.path.realpath(row["filename"])).relative_to(base).as_posix()
            if relative in owner:
                index, path = owner[relative]
                results[index][path].append(to_diagnostic(path, row))
    return results


def _chunks(names: list[str]) -> list[list[str]]:
    chunks: list[list[str]] = []
    size = _ARGV_BYTES
    for name in names:
        if size + len(name) + 1 > _ARGV_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(name)
        size += len(name) + 1
    return chunks


def _run(names: list[str], base: Path, config: LspConfig) -> list[dict]:
    argv = [ruff_binary(), "check", *config.ruff_args(), "--", *names]
    try:
        proc = subprocess.run(argv, cwd=base, capture_output=True, check=False, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LspError(f"ruff could not run: {e}") from e
    try:
        rows = json.loads(proc.stdout or b"[]")
    except ValueError:
        rows = None
    if proc.returncode != 0 or not isinstance(rows, list):
        tail = proc.stderr.decode(errors="replace").strip()[-500:]
        raise LspError(f"ruff failed with exit code {proc.returncode}: {tail}")
    return rows
