"""pyright and ruff on repl file trees, merged as Replit's pyright-extended shows them.

Public API:
- `Diagnostic`, `matches`, `normalize_message`: the normalized diagnostic and matching.
- `Snapshot`, `LspPool`, `CheckResult`, `RunStats`: the warm language-server pool.
- `LspConfig`, `DEFAULT_CONFIG`: pyright and ruff settings.
- `check_paths`, `check_paths_report`: files and folders on disk (the `otlake lsp check` CLI).
- `check_with_cli`: one pyright CLI process per snapshot, for comparison.
"""

from .batch import check_with_cli
from .config import DEFAULT_CONFIG, REPLIT_RUFF_SELECT, UNUSED_CODE_RULES, LspConfig
from .diagnostic import Diagnostic, matches, normalize_message
from .errors import BadSnapshotPath, LspError, ServerFailed, ToolMissing
from .paths import PathsReport, check_paths, check_paths_report
from .pool import LspPool
from .result import CheckResult, RunStats
from .snapshot import Snapshot, materialized, safe_relpath
from .tools import versions

__all__ = [
    "DEFAULT_CONFIG", "REPLIT_RUFF_SELECT", "UNUSED_CODE_RULES", "BadSnapshotPath", "CheckResult",
    "Diagnostic", "LspConfig", "LspError", "LspPool", "PathsReport", "RunStats", "ServerFailed",
    "Snapshot", "ToolMissing", "check_paths", "check_paths_report", "check_with_cli", "matches",
    "materialized", "normalize_message", "safe_relpath", "versions",
]
