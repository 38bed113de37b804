"""Errors of synth, part of otlake's one error hierarchy."""

from __future__ import annotations

from events.errors import OtlakeError


class SynthError(OtlakeError):
    """Base class of the errors synth raises on purpose."""


class DiffError(SynthError):
    """A line diff that cannot be parsed or applied.

    `kind` is a stable reason that verification counts: 'malformed',
    'text_mismatch', 'bad_numbers' or 'out_of_range'.
    """

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        self.detail = message
        super().__init__(f"[{kind}] {message}")


class SchemaError(SynthError):
    """A prompt or response that is not in the sentinel form of DESIGN.md, or cannot be rendered in it."""
