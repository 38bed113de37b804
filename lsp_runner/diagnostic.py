"""The normalized diagnostic, and matching a logged diagnostic against a reproduced one."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

SEVERITY_NAMES = {1: "error", 2: "warning", 3: "information", 4: "hint"}


@dataclass(frozen=True)
class Diagnostic:
    """One diagnostic as the editor showed it: 0-based range, LSP severity, `tool[rule]` code."""

    path: str  # relative to the repl's root, '/' separators
    code: str  # 'pyright[reportAttributeAccessIssue]', 'ruff[F821]'
    start_line: int
    start_character: int
    end_line: int
    end_character: int
    severity: int  # 1 error, 2 warning, 3 information, 4 hint
    message: str
    has_code_action: bool = False
    source: str = ""  # 'pyright' or 'ruff'

    def to_dict(self) -> dict[str, Any]:
        """Plain fields, the same names as the warehouse's `diagnostics` columns."""
        return asdict(self)

    def to_event_fields(self) -> dict[str, Any]:
        """The fields of an `lsp_diagnostic` event (nested range), as the event contract spells them."""
        return {
            "path": self.path,
            "range": {"start": {"line": self.start_line, "character": self.start_character},
                      "end": {"line": self.end_line, "character": self.end_character}},
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "has_code_action": self.has_code_action,
        }

    def sort_key(self) -> tuple:
        """Editor order: by path, then position, then code."""
        return (self.path, self.start_line, self.start_character, self.end_line,
                self.end_character, self.code, self.message)

    @property
    def severity_name(self) -> str:
        """'error', 'warning', 'information' or 'hint'."""
        return SEVERITY_NAMES.get(self.severity, str(self.severity))

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> Diagnostic:
        """From a `diagnostics` row (flat columns) or `lsp_diagnostic` event fields (nested range)."""
        if "range" in row:
            start, end = row["range"]["start"], row["range"]["end"]
            lines = (start["line"], start["character"], end["line"], end["character"])
        else:
            lines = (row["start_line"], row.get("start_character", 0),
                     row.get("end_line", row["start_line"]), row.get("end_character", 0))
        code = row.get("code") or ""
        source = row.get("source") or code.partition("[")[0]
        return cls(row["path"], code, *lines, severity=int(row.get("severity") or 0),
                   message=row.get("message") or "", has_code_action=bool(row.get("has_code_action")),
                   source=source)


_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_QUOTES = re.compile("[\"'`\u2018\u2019\u201c\u201d]")
_SPACE = re.compile(r"\s+")


def normalize_message(message: str) -> str:
    """A message with every number as '0', every kind of quote as '"', and runs of spaces as one."""
    text = _QUOTES.sub('"', message)
    text = _NUMBER.sub("0", text)
    return _SPACE.sub(" ", text).strip()


def matches(logged: Diagnostic | Mapping[str, Any], reproduced: Diagnostic | Mapping[str, Any]) -> bool:
    """True when path, code and start line agree and the messages agree after normalization.

    Either side may be a `Diagnostic`, a `diagnostics` row or `lsp_diagnostic` fields.
    """
    a = logged if isinstance(logged, Diagnostic) else Diagnostic.from_mapping(logged)
    b = reproduced if isinstance(reproduced, Diagnostic) else Diagnostic.from_mapping(reproduced)
    return (a.path == b.path and a.code == b.code and a.start_line == b.start_line
            and normalize_message(a.message) == normalize_message(b.message))
