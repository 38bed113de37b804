"""Replay a repl's events (contract dicts, in seq order) to instants, in one pass.

The state at instant T is the state after the longest prefix of events whose
times are all at or before T (so a clock that steps back never reorders
events: effective time is the running maximum of `ts`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from events.validate import validate_event

from .state import FileState, ReplFiles


def apply_event(files: ReplFiles, ev: dict) -> FileState | None:
    """Apply one validated event to the files (other kinds change nothing); the file state for ot."""
    kind = ev["kind"]
    if kind == "ot":
        return files.apply_ot(ev["seq"], ev["path"], ev["version"], ev["_ops"], ev.get("crc32"))
    if kind == "file":
        if ev["op"] == "create":
            files.create(ev["seq"], ev["path"])
        elif ev["op"] == "move":
            files.move(ev["seq"], ev["path"], ev["dest"])
        else:
            files.remove(ev["seq"], ev["path"])


def states_at(events: Iterable[dict], instants: Iterable[int]) -> Iterator[tuple[int, dict[str, str | None]]]:
    """(instant, {path: content}) for each sorted instant (µs since the epoch), in one pass over the events.

    Events are one repl's, in seq order. A bad event raises BadEvent (the
    warehouse quarantines instead; this is the strict engine under it).
    """
    pending = iter(sorted(instants))
    target = next(pending, None)
    files = ReplFiles()
    effective = None
    for raw in events:
        ev = validate_event(dict(raw))
        files.repl_id = ev["repl_id"]
        effective = ev["_us"] if effective is None or ev["_us"] > effective else effective
        while target is not None and effective > target:
            yield target, files.snapshot()
            target = next(pending, None)
        if target is None:
            return
        apply_event(files, ev)
    while target is not None:
        yield target, files.snapshot()
        target = next(pending, None)


def replay_to(events: Iterable[dict], instant: int | None = None) -> dict[str, str | None]:
    """{path: content} of a repl after every event at or before the instant (µs; None: the end)."""
    if instant is None:
        instant = 2**63 - 1
    for _, files in states_at(events, [instant]):
        return files
    return {}
