"""Simulated wall clock: integer microseconds after a fixed base, printed as RFC 3339 UTC."""

from __future__ import annotations

import datetime as dt
import functools

BASE = dt.datetime(2024, 3, 1, 9, 0, 0, tzinfo=dt.UTC)
_BASE_SECONDS = 9 * 3600
_DAY_US = 86_400_000_000

SESSION_GAP_US = 30 * 60 * 1_000_000  # a pause this long means the user left and came back


@functools.lru_cache(maxsize=4096)
def _date(day: int) -> str:
    return (BASE.date() + dt.timedelta(days=day)).isoformat()


def format_ts(micros: int) -> str:
    """RFC 3339 UTC text, with microseconds, of a time given in microseconds after BASE."""
    day, rest = divmod(micros + _BASE_SECONDS * 1_000_000, _DAY_US)
    seconds, us = divmod(rest, 1_000_000)
    hours, rest_s = divmod(seconds, 3600)
    minutes, secs = divmod(rest_s, 60)
    return f"{_date(day)}T{hours:02d}:{minutes:02d}:{secs:02d}.{us:06d}Z"


class Clock:
    """The time of one simulated user, moved forward by the pauses they take."""

    def __init__(self, start_us: int = 0) -> None:
        self.now = start_us

    def wait_ms(self, ms: float) -> None:
        """Lets `ms` milliseconds pass (at least one microsecond, so events never share a time)."""
        self.now += max(1, int(ms * 1000))

    def wait_s(self, seconds: float) -> None:
        """Lets `seconds` seconds pass."""
        self.wait_ms(seconds * 1000)
