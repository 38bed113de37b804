"""Which planted bugs (eval.inject) the meta-LSP sees: an error the original code lacks, on the planted line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lsp_runner import CheckResult, Diagnostic, LspPool, Snapshot, normalize_message

if TYPE_CHECKING:
    from .inject import Injection

_SYNTAX_ERRORS = {"pyright[error]", "ruff[E999]"}  # pyright's syntax errors carry no rule
_NOT_THE_BUG = {"ruff[E501]"}  # an edited line may grow past the limit; that is not what was planted


def _flag(injection: Injection, bug: CheckResult, original: CheckResult) -> Diagnostic | None:
    """The error the original lacks on the planted line (a syntax bug: or the line after); syntax errors first."""
    from .inject import CATEGORY  # here, not at the top: eval.inject imports this module

    syntax = CATEGORY[injection.subtype] == "syntax"
    lines = (injection.line - 1, injection.line)[:1 + syntax]
    before = {(d.start_line, d.code, normalize_message(d.message)) for d in original.all_diagnostics()}
    new = [d for d in bug.all_diagnostics() if d.severity == 1 and d.start_line in lines and d.code not in _NOT_THE_BUG
           and (d.start_line, d.code, normalize_message(d.message)) not in before]
    return min(new, key=lambda d: (d.start_line, syntax and d.code not in _SYNTAX_ERRORS, d.sort_key()), default=None)


def keep_flagged(injections: Sequence[tuple[str, Injection]], pool: LspPool,
                 batch_size: int = 100) -> list[tuple[str, Injection, Diagnostic | None, str]]:
    """For (id, injection) pairs: keep those the meta-LSP in `pool` flags on the planted line.

    Kept: an error-severity diagnostic the original code lacks starts on the planted line (a syntax bug: or the
    line after). Returns (id, injection, diagnostic, reason) in input order; reason is '' when kept, else
    'not_flagged' or 'lsp_failed: ...'.
    """
    originals: dict[str, str] = {}  # code -> snapshot id: each original is checked once
    snapshots = []
    for i, (_, injection) in enumerate(injections):
        snapshots.append(Snapshot(f"bug-{i}", {"main.py": injection.buggy_code}))
        if (code := injection.original_code) not in originals:
            originals[code] = f"original-{len(originals)}"
            snapshots.append(Snapshot(originals[code], {"main.py": code}))
    results: dict[str, CheckResult] = {}
    for start in range(0, len(snapshots), batch_size):
        results.update((r.snapshot_id, r) for r in pool.check(snapshots[start:start + batch_size]))
    kept = []
    for i, (item_id, injection) in enumerate(injections):
        bug, original = results.get(f"bug-{i}"), results.get(originals[injection.original_code])
        if bug is None or original is None or not (bug.ok and original.ok):
            failed = [f"{r.snapshot_id.partition('-')[0]}: {r.reason}" if r else "no result" for r in (bug, original)
                      if r is None or not r.ok]
            kept.append((item_id, injection, None, "lsp_failed: " + "; ".join(failed)))
            continue
        diagnostic = _flag(injection, bug, original)
        kept.append((item_id, injection, diagnostic, "" if diagnostic is not None else "not_flagged"))
    return kept
