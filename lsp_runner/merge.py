"""pyright's LSP diagnostics as `Diagnostic`s, merged with ruff's the way pyright-extended merges them."""

from __future__ import annotations

from collections.abc import Iterable

from .config import LspConfig
from .diagnostic import SEVERITY_NAMES, Diagnostic

# the only quick fix plain pyright offers is "create type stub"; everything else comes from ruff
_PYRIGHT_FIXABLE = {"reportMissingTypeStubs"}
_UNNECESSARY, _DEPRECATED = 1, 2  # LSP DiagnosticTag


def pyright_code(rule: str | None, severity: int) -> str:
    """`pyright[rule]`; a diagnostic without a rule (syntax errors) is named by its severity."""
    return f"pyright[{rule or SEVERITY_NAMES.get(severity, 'error')}]"


def from_lsp(path: str, item: dict) -> Diagnostic:
    """One LSP diagnostic dict from pyright as a Diagnostic."""
    start, end = item["range"]["start"], item["range"]["end"]
    severity = int(item.get("severity") or 1)
    rule = item.get("code")
    return Diagnostic(
        path=path,
        code=pyright_code(str(rule) if rule is not None else None, severity),
        start_line=start["line"],
        start_character=start["character"],
        end_line=end["line"],
        end_character=end["character"],
        severity=severity,
        message=item["message"],
        has_code_action=rule in _PYRIGHT_FIXABLE,
        source="pyright",
    )


def keep_pyright(item: dict, config: LspConfig) -> bool:
    """False for what ruff owns or the editor only draws.

    Dropped: rules in `config.drop_pyright_rules` (unused imports and
    variables: ruff's F401/F841 report them), and rule-less hints tagged
    unnecessary or deprecated (faded or struck-through text, not a message
    in the problems list).
    """
    if item.get("code") in config.drop_pyright_rules:
        return False
    tags = set(item.get("tags") or ())
    return not (item.get("code") is None and tags & {_UNNECESSARY, _DEPRECATED})


def merge(path: str, pyright_items: Iterable[dict], ruff: Iterable[Diagnostic],
          config: LspConfig) -> list[Diagnostic]:
    """One file's diagnostics, pyright's then ruff's, in editor order."""
    merged = [from_lsp(path, item) for item in pyright_items if keep_pyright(item, config)]
    merged += ruff
    return sorted(merged, key=Diagnostic.sort_key)
