"""Replay a repl's raw events (contract dicts, in seq order): the files after each event, in one pass.

`EventReplay` is the fold of the event log itself, the source of truth: `verify`
runs it to check snapshots and the derived tables against it, and `replay_to`
gives the files at an instant. Replaying the derived tables (path_events,
ot_ops, file_breaks) to many instants is `ot_replay.timeline.Timeline`.

The state at instant T is the state after the longest prefix of events whose
times are all at or before T (so a clock that steps back never reorders
events: effective time is the running maximum of the events' times).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from events.errors import BadEvent
from events.validate import parse_ts, validate_event

from .state import FileState, ReplFiles


@dataclass
class Step:
    """One event replayed: the files after it (for a snapshot event, the state it should show), the file an
    ot event changed, or the error that stopped the replay."""

    seq: int
    us: int                 # effective time (µs): the running maximum
    event: dict
    files: ReplFiles
    state: FileState | None = None
    error: BadEvent | None = None


class EventReplay:
    """Fold events (seq, µs, decoded event) of one repl in seq order; iterate for each Step.

    `breaks` (seq, file_id, path, error kind, µs): packets refused at ingest (kept in quarantine, not in the
    log): from each on, that lineage's content is unknown. A bad ot or file event ends the replay with a Step
    whose `error` says why. After the last step, `files`, `last_seq` and `last_us` are the end state (breaks
    after the last event included). `until_us`: stop before the first event whose effective time is past it.
    """

    def __init__(self, repl_id: str, events: Iterable[tuple[int, int, dict]],
                 breaks: Iterable[tuple[int, int, str, str, int]] = (), until_us: int | None = None) -> None:
        self.files = ReplFiles(repl_id)
        self.events, self.until_us = events, until_us
        self.breaks = sorted(breaks)
        self.last_seq: int | None = None
        self.last_us: int | None = None

    def _break(self, seq: int, file_id: int, path: str, kind: str) -> None:
        self.files.mark_broken(file_id, path, BadEvent(kind, "quarantined packet", repl_id=self.files.repl_id,
                                                       seq=seq))

    def __iter__(self) -> Iterator[Step]:
        files, breaks = self.files, self.breaks
        for seq, us, ev in self.events:
            effective = us if self.last_us is None or us > self.last_us else self.last_us
            if self.until_us is not None and effective > self.until_us:
                return
            while breaks and breaks[0][0] < seq:  # a quarantined bad packet came before this event
                bseq, file_id, path, kind, _ = breaks.pop(0)
                self._break(bseq, file_id, path, kind)
            self.last_seq, self.last_us = seq, effective
            kind = ev.get("kind")
            if kind not in ("ot", "file"):
                yield Step(seq, effective, ev, files)
                continue
            try:
                ev = validate_event(ev)
                state = _apply(files, ev)
            except BadEvent as e:
                yield Step(seq, effective, ev, files, error=e)
                return
            yield Step(seq, effective, ev, files, state)
        for bseq, file_id, path, kind, bus in breaks:
            if self.until_us is not None and bus > self.until_us:
                break
            self._break(bseq, file_id, path, kind)
            self.last_us = bus if self.last_us is None or bus > self.last_us else self.last_us
        breaks.clear()


def _apply(files: ReplFiles, ev: dict) -> FileState | None:
    """Apply one validated ot or file event; the file state for ot."""
    if ev["kind"] == "ot":
        return files.apply_ot(ev["seq"], ev["path"], ev["version"], ev["_ops"], ev.get("crc32"))
    if ev["op"] == "create":
        files.create(ev["seq"], ev["path"])
    elif ev["op"] == "move":
        files.move(ev["seq"], ev["path"], ev["dest"])
    else:
        files.remove(ev["seq"], ev["path"])
    return None


def replay_to(events: Iterable[dict], instant: int | None = None) -> dict[str, str | None]:
    """{path: content} of a repl after every event at or before the instant (µs; None: the end); the events
    are one repl's contract dicts in seq order. A bad event raises BadEvent (the warehouse quarantines
    instead; this is the strict engine under it)."""
    rows = ((ev["seq"], parse_ts(ev["ts"]), dict(ev)) for ev in events)
    replay = EventReplay("", rows, until_us=instant)
    for step in replay:
        if step.error is not None:
            raise step.error
    return replay.files.snapshot()
