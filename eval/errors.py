"""Errors of eval, part of otlake's one error hierarchy."""

from __future__ import annotations

from events.errors import OtlakeError


class EvalError(OtlakeError):
    """Base class of the errors eval raises on purpose (a bench that cannot load, a bad model name)."""
