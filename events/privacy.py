"""The one privacy rule: a repl's code is used only when its `repl` event says it is public.

`is_private` false is public; true is private, and so is unknown (no `repl` event, or one without the
field): nothing is taken from a repl that did not say it may be.
"""

from __future__ import annotations


def is_public(is_private: bool | None) -> bool:
    """Whether a repl with this `is_private` value may be used (unknown: no)."""
    return is_private is False


def public_sql(column: str) -> str:
    """The same rule as a SQL condition on an `is_private` column (NULL: not public)."""
    return f"coalesce({column}, true) = false"
