"""Diagnostics users saw: file states collected during a simulation, linted in one batch, logged.

The linter is pluggable: `ruff_linter` (one ruff process, this package's
default) or the meta-LSP (pyright + ruff, lsp_runner.linter), which the CLI
and the demo use. A linter takes the states and returns, per state, the
`lsp_diagnostic` fields of the checked file.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .recorder import Recorder

RUFF_ARGS = (
    "check",
    "--isolated",
    "--no-cache",
    "--exit-zero",
    "--no-respect-gitignore",
    "--output-format",
    "json",
    "--select",
    "E,F,W",
)
_ERRORS = {"E999", "F821", "F822", "F823", "F631", "F632", "F633"}
_HINTS = {"F401", "F841"}  # unused code: shown faded, like pyright's hints


@dataclass(frozen=True)
class LintState:
    """A file as the user had it, with the repl's other files (so imports between them resolve)."""

    path: str
    content: str
    files: Mapping[str, str]  # every file of the repl at that moment, this one included


Linter = Callable[[list[LintState]], list[list[dict]]]


def ruff_linter(states: list[LintState]) -> list[list[dict]]:
    """ruff alone, one process for every state: what the simulator logs without the meta-LSP."""
    rows = lint([(s.path, s.content) for s in states])
    return [[to_fields(s.path, s.content, row) for row in found] for s, found in zip(states, rows)]


@dataclass
class Check:
    """A file state the language server linted, and where its diagnostics go in the log."""

    rec: Recorder
    path: str
    content: str
    requested: int  # len(rec.events) when the state was taken
    anchor: int  # the diagnostics go before rec.events[anchor]
    delay_us: int
    files: Mapping[str, str] = field(default_factory=dict)
    found: list[dict] = field(default_factory=list)


def find_ruff() -> str:
    """Path of the ruff binary installed with the project."""
    try:
        from ruff.__main__ import find_ruff_bin

        return str(find_ruff_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("ruff")
        if found is None:
            raise RuntimeError(
                "ruff is not installed; install the project with `uv sync`"
            ) from None
        return found


def lint(states: list[tuple[str, str]]) -> list[list[dict]]:
    """Ruff's JSON rows for each (path, content) state, from one ruff process over all of them."""
    if not states:
        return []
    results: list[list[dict]] = [[] for _ in states]
    with tempfile.TemporaryDirectory(prefix="otlake-sim-") as tmp:
        root = pathlib.Path(os.path.realpath(tmp))
        for index, (path, content) in enumerate(states):
            folder = root / f"s{index:06d}"
            folder.mkdir()
            (folder / pathlib.PurePosixPath(path).name).write_bytes(content.encode())
        proc = subprocess.run(
            [find_ruff(), *RUFF_ARGS, str(root)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"ruff failed with exit code {proc.returncode}: {proc.stderr.strip()}"
            )
        for row in json.loads(proc.stdout or "[]"):
            relative = pathlib.Path(os.path.realpath(row["filename"])).relative_to(root)
            results[int(relative.parts[0][1:])].append(row)
    return results


def to_fields(path: str, content: str, row: dict) -> dict:
    """The `lsp_diagnostic` fields of one ruff row, 0-based and clamped inside the file."""
    code = row.get("code")
    code = "E999" if code in (None, "invalid-syntax") else code
    lines = content.split("\n")
    start = _position(lines, row["location"])
    end = max(start, _position(lines, row.get("end_location") or row["location"]))
    return {
        "path": path,
        "range": {
            "start": {"line": start[0], "character": start[1]},
            "end": {"line": end[0], "character": end[1]},
        },
        "severity": severity(code),
        "code": f"ruff[{code}]",
        "message": row["message"],
        "has_code_action": row.get("fix") is not None,
    }


def severity(code: str) -> int:
    """LSP severity (1 error .. 4 hint) the editor shows for a ruff code."""
    if code in _ERRORS or code.startswith("F7"):
        return 1
    if code in _HINTS:
        return 4
    return 2 if code.startswith("F") else 3


def _position(lines: list[str], location: dict) -> tuple[int, int]:
    # ruff counts rows and columns from 1, in code points; a position past the end is clamped
    line = min(max(location["row"] - 1, 0), len(lines) - 1)
    return line, min(max(location["column"] - 1, 0), len(lines[line]))


class DiagnosticLog:
    """Collects the states to lint; `flush` lints them all at once and logs what users saw."""

    def __init__(self, max_per_check: int = 4, linter: Linter | None = None) -> None:
        self.checks: list[Check] = []
        self.max_per_check = max_per_check
        self.linter = linter or ruff_linter

    def request(
        self, rec: Recorder, path: str, content: str, later: int = 0, delay_us: int = 0,
        files: Mapping[str, str] | None = None,
    ) -> None:
        """Lints `content` of `path` as it is now (beside `files`); the result is logged `later` events on."""
        now = len(rec.events)
        tree = dict(files or {})
        tree[path] = content
        self.checks.append(Check(rec, path, content, now, now + later, delay_us, tree))

    def flush(self) -> None:
        """Lints every requested state in one batch and inserts the `lsp_diagnostic` events."""
        states = [LintState(c.path, c.content, c.files) for c in self.checks]
        for check, found in zip(self.checks, self.linter(states) if states else []):
            check.found = found
        shown: dict[tuple[int, str], set] = {}
        inserts: dict[int, list[tuple]] = {}
        for order, check in enumerate(self.checks):
            key = (id(check.rec), check.path)
            lines = check.content.split("\n")
            fresh, seen = [], set()
            for fields in check.found:
                line = fields["range"]["start"]["line"]
                # a diagnostic stays on screen while its line is unchanged: log it when it appears
                ident = (fields["code"], fields["message"], lines[line] if line < len(lines) else "")
                seen.add(ident)
                if ident not in shown.get(key, set()):
                    fresh.append(fields)
            shown[key] = seen
            fresh.sort(key=lambda f: (f["severity"], f["range"]["start"]["line"]))
            anchor = _settle(check)
            for rank, fields in enumerate(fresh[: self.max_per_check]):
                inserts.setdefault(id(check.rec), []).append((anchor, order, rank, fields, check))
        for items in inserts.values():
            # insert from the back so earlier anchors keep their meaning
            for anchor, _, _, fields, check in sorted(items, key=lambda t: t[:3], reverse=True):
                check.rec.insert_late(anchor, "lsp_diagnostic", fields, check.delay_us)
        self.checks = []


def _settle(check: Check) -> int:
    # a late result still lands before the file is moved or removed, and before the snapshot
    events = check.rec.events
    last = len(events) - 1 if events and events[-1]["kind"] == "snapshot" else len(events)
    anchor = min(check.anchor, last)
    for index in range(check.requested, anchor):
        if events[index]["kind"] == "file" and events[index]["path"] == check.path:
            return index
    return anchor
