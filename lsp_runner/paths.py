"""Checking files and folders on disk: each folder, or each named file's folder, is one snapshot."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .config import DEFAULT_CONFIG, LspConfig
from .diagnostic import Diagnostic
from .errors import LspError
from .pool import LspPool
from .snapshot import Snapshot

# folders pyright and ruff skip by default, and that a repl's own code never lives in
SKIP_DIRS = {"__pycache__", "node_modules", "venv", ".venv", "site-packages", ".pythonlibs",
             "__pypackages__", "build", "dist"}
MAX_TREE_FILES = 2000  # context read around named files stops past this many files


@dataclass
class PathsReport:
    """What `check_paths` found: diagnostics (paths as given), skipped files, failed roots."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    files_checked: int = 0


def check_paths(paths: Iterable[str | os.PathLike], config: LspConfig = DEFAULT_CONFIG,
                timeout_s: float = 60.0) -> list[Diagnostic]:
    """Merged pyright + ruff diagnostics of files and folders; raises LspError if any could not be checked."""
    report = check_paths_report(paths, config, timeout_s)
    if report.failed:
        raise LspError("; ".join(f"{root}: {reason}" for root, reason in report.failed.items()))
    return report.diagnostics


def check_paths_report(paths: Iterable[str | os.PathLike], config: LspConfig = DEFAULT_CONFIG,
                       timeout_s: float = 60.0) -> PathsReport:
    """Like `check_paths`, but failures and skipped files are reported instead of raised.

    A folder is checked as one repl: all its Python files. A file under the
    working folder is checked as part of it (elsewhere: of its own folder),
    beside the Python files and packages (folders with an __init__.py) of each
    folder on the way down to it, so its imports resolve without reading, say,
    all of $HOME.
    """
    snapshots, display = _snapshots(paths, config)
    report = PathsReport()
    if not snapshots:
        return report
    with LspPool(size=1, config=config, timeout_s=timeout_s) as pool:
        results = pool.check(snapshots)
    for result in results:
        base = display[result.snapshot_id]
        for path, reason in result.skipped.items():
            report.skipped[_join(base, path)] = reason
        if not result.ok:
            report.failed[base or "."] = result.reason or "failed"
            continue
        report.files_checked += len(result.diagnostics)
        for d in result.all_diagnostics():
            report.diagnostics.append(Diagnostic(**{**d.to_dict(), "path": _join(base, d.path)}))
    report.diagnostics.sort(key=Diagnostic.sort_key)
    return report


def _snapshots(paths: Iterable[str | os.PathLike], config: LspConfig) -> tuple[list[Snapshot], dict]:
    roots: dict[Path, set[Path] | None] = {}  # root -> files to check (None: all its Python files)
    shown: dict[Path, str] = {}
    cwd = Path.cwd().resolve()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            root = path.resolve()
            roots[root] = None
            shown.setdefault(root, str(path))
        elif path.is_file():
            # like pyright's and ruff's own CLIs: a file under the working folder belongs to it
            resolved = path.resolve()
            root = cwd if resolved.is_relative_to(cwd) else resolved.parent
            shown.setdefault(root, "" if root == cwd else str(path.parent))
            names = roots.setdefault(root, set())
            if names is not None:  # None: the whole folder is checked anyway
                names.add(resolved)
        else:
            raise LspError(f"{given}: no such file or folder")
    snapshots, display = [], {}
    for index, (root, named) in enumerate(roots.items()):
        files: dict[str, bytes] = {}
        if named is None:
            _read_tree(root, root, config, files, packages_only=False)
        else:
            _read_context(root, named, config, files)
        snapshot_id = f"{index}:{root}"
        checked = None if named is None else tuple(sorted(p.relative_to(root).as_posix() for p in named))
        snapshots.append(Snapshot(snapshot_id, files, checked))
        display[snapshot_id] = "" if shown[root] in (".", "") else shown[root]
    return snapshots, display


def _read_context(root: Path, named: set[Path], config: LspConfig, files: dict[str, bytes]) -> None:
    """The named files, and the Python files and packages of every folder from `root` down to them."""
    folders = {root}
    for path in named:
        folders.update(p for p in path.parents if p.is_relative_to(root))
    for folder in sorted(folders):
        if len(files) > MAX_TREE_FILES:
            break  # a huge folder: check the named files with what was read so far
        _read_tree(folder, root, config, files, packages_only=True)
    for path in named:
        files[path.relative_to(root).as_posix()] = path.read_bytes()


def _read_tree(folder: Path, root: Path, config: LspConfig, files: dict[str, bytes],
               packages_only: bool) -> None:
    """Adds the Python files under `folder`, skipping tool and hidden folders (and non-packages)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(
            d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")
            and (not packages_only or os.path.isfile(os.path.join(dirpath, d, "__init__.py"))))
        for name in sorted(filenames):
            if config.is_python(name):
                path = Path(dirpath) / name
                files[path.relative_to(root).as_posix()] = path.read_bytes()
                if packages_only and len(files) > MAX_TREE_FILES:
                    return


def _join(base: str, path: str) -> str:
    return f"{base.rstrip('/')}/{path}" if base else path
