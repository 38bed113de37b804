"""Fold one repl's validated events into warehouse rows (a pure stage: events in, rows out).

Bad events become quarantine rows; a broken ot packet also marks its file
lineage broken, so every later packet of that file is quarantined too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import orjson

from events.validate import format_us

from events.errors import BadEvent
from ot_replay.state import FileState, ReplFiles

# error kinds that depend on the order of a repl's stream (re-derived when it is rebuilt)
STREAM_ERRORS = (
    "version_gap", "version_repeat", "op_past_end", "crc_mismatch",
    "after_broken_packet", "file_exists", "file_not_found", "bad_path",
)

COLUMNS = {
    "events": ("repl_id", "seq", "ts", "kind", "session_id", "user_id", "path", "event", "event_hash"),
    "ot_ops": ("repl_id", "file_id", "version", "path", "seq", "ts", "ops", "crc32", "author"),
    "path_events": ("repl_id", "seq", "path", "ts", "file_id"),
    "file_breaks": ("repl_id", "file_id", "seq", "path", "ts", "error_kind"),
    "checkpoints": ("repl_id", "file_id", "version", "path", "content"),
    "diagnostics": (
        "repl_id", "seq", "ts", "path", "start_line", "start_character", "end_line", "end_character",
        "severity", "code", "message", "has_code_action",
    ),
    "repls": ("repl_id", "language", "is_private", "owner", "title", "seq", "ts"),
    "quarantine": (
        "source", "key", "repl_id", "seq", "path", "version", "origin", "error_kind", "message", "raw",
    ),
}


@dataclass
class Rows:
    """Row tuples per table (columns as in COLUMNS), turned into Arrow at write time."""

    tables: dict[str, list[tuple]] = field(default_factory=lambda: {t: [] for t in COLUMNS})

    def add(self, table: str, *values) -> None:
        self.tables[table].append(values)

    def count(self, table: str) -> int:
        return len(self.tables[table])

    def columns(self, table: str) -> dict[str, list]:
        rows = self.tables[table]
        return {c: list(v) for c, v in zip(COLUMNS[table], zip(*rows))} if rows else {c: [] for c in COLUMNS[table]}


def content_hash(data: bytes) -> int:
    """64-bit hash of a record's bytes."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def canonical(ev: dict) -> bytes:
    """Canonical JSON of a validated event: sorted keys, normalized ts, private `_` fields dropped.

    Two records with different bytes but this same form are the same event.
    """
    public = {k: v for k, v in ev.items() if k[0] != "_"}
    public["ts"] = format_us(ev["_us"])  # one spelling per instant, whatever the source wrote
    return orjson.dumps(public, option=orjson.OPT_SORT_KEYS)


def quarantine_key(repl_id: str, seq: int, event_hash: int) -> str:
    """Quarantine key of an identified event: the same event always gets the same key."""
    return f"{repl_id}/{seq}/{event_hash:016x}"


def quarantine_event(rows: Rows, error: BadEvent, origin: str | None, raw: str, key: str) -> None:
    rows.add("quarantine", "ingest", key, error.repl_id, error.seq, error.path, error.version, origin,
             error.kind, str(error), raw)


class Projector:
    """Projects one repl's events, in seq order, continuing from a resumed state."""

    def __init__(self, repl_id: str, rows: Rows, files: ReplFiles | None = None,
                 last_us: int | None = None, checkpoint_every: int = 256) -> None:
        self.repl_id = repl_id
        self.rows = rows
        self.files = files or ReplFiles(repl_id)
        self.last_us = last_us
        self.every = checkpoint_every
        self.stored = 0
        self.quarantined = 0

    def feed(self, ev: dict, origin: str | None, text: str, event_hash: int) -> bool:
        """Project one event (already validated, canonical text and hash given); False if quarantined."""
        us = ev["_us"] if self.last_us is None or ev["_us"] > self.last_us else self.last_us
        try:
            self._project(ev, us)
        except BadEvent as e:
            error = e.located(repl_id=self.repl_id, seq=ev["seq"], path=ev.get("path"))
            quarantine_event(self.rows, error, origin, text, quarantine_key(self.repl_id, ev["seq"], event_hash))
            self.quarantined += 1
            self._record_break(ev, us)
            return False
        self.last_us = us
        self.rows.add("events", self.repl_id, ev["seq"], ev["_us"], ev["kind"], ev.get("session_id"),
                      ev.get("user_id"), ev.get("path"), text, event_hash)
        self.stored += 1
        return True

    def _record_break(self, ev: dict, us: int) -> None:
        if ev["kind"] != "ot":
            return
        state = self.files.files.get(ev["path"])
        if state is not None and state.broken is not None and state.broken.seq == ev["seq"]:
            if state.file_id == ev["seq"]:  # the bad packet would have started the lineage
                self.rows.add("path_events", self.repl_id, ev["seq"], ev["path"], us, state.file_id)
            self.rows.add("file_breaks", self.repl_id, state.file_id, ev["seq"], ev["path"], us, state.broken.kind)

    def _project(self, ev: dict, us: int) -> None:
        kind = ev["kind"]
        seq = ev["seq"]
        rid = self.repl_id
        rows = self.rows
        if kind == "ot":
            path = ev["path"]
            state = self.files.apply_ot(seq, path, ev["version"], ev["_ops"], ev.get("crc32"))
            version = state.version
            if state.file_id == seq:
                rows.add("path_events", rid, seq, path, us, seq)
            rows.add("ot_ops", rid, state.file_id, version, path, seq, us,
                     orjson.dumps(ev["_ops"]).decode(), ev.get("crc32"), ev.get("author"))
            if version % self.every == 0:
                self._checkpoint(state)
        elif kind == "file":
            self._file_op(ev, seq, us)
        elif kind == "lsp_diagnostic":
            r = ev["range"]
            rows.add("diagnostics", rid, seq, us, ev["path"], r["start"]["line"], r["start"]["character"],
                     r["end"]["line"], r["end"]["character"], ev["severity"], ev["code"], ev["message"],
                     bool(ev.get("has_code_action", False)))
        elif kind == "repl":
            rows.add("repls", rid, ev.get("language"), ev["is_private"], ev.get("owner"), ev.get("title"),
                     seq, ev["_us"])

    def _checkpoint(self, state: FileState) -> None:
        self.rows.add("checkpoints", self.repl_id, state.file_id, state.version, state.path, state.buffer.text())

    def _file_op(self, ev: dict, seq: int, us: int) -> None:
        op, path = ev["op"], ev["path"]
        changes: dict[str, int | None] = {}
        if op == "create":
            changes[path] = self.files.create(seq, path).file_id
        elif op == "move":
            moved = self.files.move(seq, path, ev["dest"])
            for old, _, _ in moved:
                changes[old] = None
            for _, new, state in moved:
                changes[new] = state.file_id
        else:
            for state in self.files.remove(seq, path):
                changes[state.path] = None
        for p, file_id in changes.items():
            self.rows.add("path_events", self.repl_id, seq, p, us, file_id)
