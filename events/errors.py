"""One error hierarchy for otlake; every bad-input error says what and where."""

from __future__ import annotations


class OtlakeError(Exception):
    """Base class of every error otlake raises on purpose."""


class BadEvent(OtlakeError):
    """An input record that cannot be stored as it is.

    `kind` is a stable machine-readable error kind (it lands in
    `quarantine.error_kind`); the message names repl, seq, path and version
    where known.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        repl_id: str | None = None,
        seq: int | None = None,
        path: str | None = None,
        version: int | None = None,
    ) -> None:
        self.kind = kind
        self.detail = message
        self.repl_id = repl_id
        self.seq = seq
        self.path = path
        self.version = version
        super().__init__(self._render())

    def located(self, **where) -> BadEvent:
        """Return a copy with missing location fields filled in."""
        fields = {k: getattr(self, k) for k in ("repl_id", "seq", "path", "version")}
        for k, v in where.items():
            if fields.get(k) is None:
                fields[k] = v
        return BadEvent(self.kind, self.detail, **fields)

    def _render(self) -> str:
        where = [
            f"{name}={value!r}"
            for name, value in (
                ("repl", self.repl_id),
                ("seq", self.seq),
                ("path", self.path),
                ("version", self.version),
            )
            if value is not None
        ]
        prefix = f"[{self.kind}] " + (" ".join(where) + ": " if where else "")
        return prefix + self.detail


class ConfigError(OtlakeError):
    """A setting or command-line argument that cannot be used."""
