"""The comparison mode: the `pyright --outputjson` CLI once per snapshot, ruff batched as in the pool."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence

from .config import DEFAULT_CONFIG, LspConfig
from .errors import LspError
from .merge import merge
from .result import FAILED, OK, CheckResult
from .ruff import lint_trees
from .snapshot import Snapshot, Tree, temporary_root, write_tree
from .tools import node_binary, pyright_cli_command

_SEVERITY = {"error": 1, "warning": 2, "information": 3}


def check_with_cli(snapshots: Sequence[Snapshot], config: LspConfig = DEFAULT_CONFIG,
                   timeout_s: float = 120.0) -> list[CheckResult]:
    """Each snapshot checked by a fresh pyright CLI process, laid out exactly as the pool lays it out.

    `CheckResult.pyright_seconds` is pyright's own `summary.timeInSec`
    (`--stats` cannot be combined with `--outputjson`); `seconds` is the
    process's wall time, start-up included.
    """
    with temporary_root("otlake-lsp-cli-") as root:
        (root / "pyrightconfig.json").write_text(config.pyrightconfig_json())
        batch = root / "b-000001"
        trees = [write_tree(s, batch / f"s-{i:06d}", config) for i, s in enumerate(snapshots)]
        try:
            ruff: list = lint_trees(trees, batch, config)
        except LspError as e:
            ruff = [f"ruff failed: {e}"] * len(trees)
        return [_check_one(tree, root, ruff_rows, config, timeout_s) for tree, ruff_rows in zip(trees, ruff)]


def _check_one(tree: Tree, root, ruff, config: LspConfig, timeout_s: float) -> CheckResult:
    result = CheckResult(tree.snapshot.id, OK, skipped=dict(tree.skipped), attempts=1)
    if tree.error is not None:
        result.status, result.reason = FAILED, tree.error
        return result
    items: dict[str, list[dict]] = {path: [] for path in tree.texts}
    if tree.texts:
        started = time.monotonic()
        try:
            report = _run_cli(tree, root, config, timeout_s)
        except LspError as e:
            result.status, result.reason = FAILED, str(e)
            return result
        finally:
            result.seconds = time.monotonic() - started
        result.pyright_seconds = report.get("summary", {}).get("timeInSec")
        for row in report.get("generalDiagnostics", []):
            path = os.path.relpath(os.path.realpath(row["file"]), tree.root).replace(os.sep, "/")
            if path in items:
                items[path].append(_as_lsp(row))
    if isinstance(ruff, str):
        result.status, result.reason = FAILED, ruff
        return result
    result.diagnostics = {p: merge(p, items[p], ruff.get(p, ()), config) for p in tree.texts}
    return result


def _run_cli(tree: Tree, root, config: LspConfig, timeout_s: float) -> dict:
    argv = [*pyright_cli_command(), "--outputjson", "--project", str(root / "pyrightconfig.json")]
    if config.python_path:
        argv += ["--pythonpath", config.python_path]
    argv += [str(tree.root / p) for p in sorted(tree.texts)]  # absolute: never read as options
    env = dict(os.environ, PATH=os.path.dirname(node_binary()), PYRIGHT_PYTHON_IGNORE_WARNINGS="1")
    try:
        proc = subprocess.run(argv, cwd=root, env=env, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise LspError(f"[timeout] pyright CLI took longer than {timeout_s:g} s") from None
    except OSError as e:
        raise LspError(f"[crashed] pyright CLI could not run: {e}") from e
    # exit code 0: no errors, 1: errors found; anything else is pyright failing
    if proc.returncode not in (0, 1):
        tail = (proc.stderr or proc.stdout).decode(errors="replace").strip()[-400:]
        raise LspError(f"[crashed] pyright CLI exited with code {proc.returncode}: {tail}")
    try:
        return json.loads(proc.stdout)
    except ValueError as e:
        raise LspError(f"[protocol] pyright CLI printed no JSON: {e}") from e


def _as_lsp(row: dict) -> dict:
    """A CLI diagnostic in the shape the language server sends."""
    return {"range": row["range"], "message": row["message"], "code": row.get("rule"),
            "severity": _SEVERITY.get(str(row.get("severity")), 1)}
