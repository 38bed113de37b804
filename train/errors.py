"""Errors of train/: what was wrong, where, and what to do."""

from __future__ import annotations

from events.errors import OtlakeError


class TrainError(OtlakeError):
    """A training config, run, export or tokenizer job that cannot go on."""
