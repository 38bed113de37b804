"""Errors of the LSP runner, part of otlake's one error hierarchy."""

from __future__ import annotations

from events.errors import OtlakeError


class LspError(OtlakeError):
    """Something went wrong running pyright or ruff."""


class ServerFailed(LspError):
    """A language server died, hung past its timeout, or broke the protocol.

    `kind` is a short stable reason ('crashed', 'timeout', 'protocol') that
    the pool counts and reports.
    """

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(f"[{kind}] {message}")


class BadSnapshotPath(LspError):
    """A snapshot file name that cannot be written inside a temporary tree."""


class ToolMissing(LspError):
    """pyright, node or ruff is not installed where the runner looks for it."""
