"""One repl's event log while it is being simulated: common fields, sessions, and seq numbers."""

from __future__ import annotations

import random

from .clock import SESSION_GAP_US, Clock, format_ts


class Recorder:
    """Appends a repl's events with the fields every event carries; numbers them at the end."""

    def __init__(self, repl_id: str, user_id: int | None, clock: Clock, rng: random.Random) -> None:
        self.repl_id = repl_id
        self.user_id = user_id
        self.clock = clock
        self.rng = rng
        self.events: list[dict] = []
        self.times: list[int] = []  # microseconds of each event, for placing late diagnostics
        self.session_id = self._new_session_id()
        self._last_us = clock.now

    def _new_session_id(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    def emit(self, kind: str, **fields: object) -> dict:
        """Records an event of `kind` at the clock's time; a long silence before it opens a new session."""
        now = self.clock.now
        if now - self._last_us >= SESSION_GAP_US:
            self.session_id = self._new_session_id()
        self._last_us = now
        event = {
            "repl_id": self.repl_id,
            "seq": 0,
            "ts": format_ts(now),
            "kind": kind,
            "session_id": self.session_id,
            "user_id": self.user_id,
        }
        event.update(fields)
        self.events.append(event)
        self.times.append(now)
        return event

    def insert_late(self, index: int, kind: str, fields: dict, delay_us: int) -> None:
        """Puts an event before events[index], `delay_us` after the one preceding it (never past the next)."""
        before = self.times[index - 1]
        at = before + delay_us
        if index < len(self.times):
            # stay strictly before the next event when there is room, so a replay to this time
            # sees exactly the state the event was computed on
            at = min(at, max(before, self.times[index] - 1))
        prev = self.events[index - 1]
        event = {
            "repl_id": self.repl_id,
            "seq": 0,
            "ts": format_ts(at),
            "kind": kind,
            "session_id": prev["session_id"],
            "user_id": self.user_id,
        }
        event.update(fields)
        self.events.insert(index, event)
        self.times.insert(index, at)

    def numbered(self) -> list[dict]:
        """The events with `seq` set to 1, 2, ... in log order."""
        for seq, event in enumerate(self.events, start=1):
            event["seq"] = seq
        return self.events
