"""The stream fold: a repl's ot and file events, in seq order, into file lineages and rows (Python reference).

Ingest runs the compiled fold (ot_replay.fold_native.fold_rows, native/fold.c), which gives the same rows
and refusals as this Projector (the tests compare them row for row); a Timeline replays the rows.

It is the one inherently sequential part of ingest (each packet needs the
file state after the previous one). A bad packet becomes an error and marks
its file lineage broken, so every later packet of that file is refused too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from events.errors import BadEvent
from events.validate import parse_ops

from .state import ReplFiles

COLUMNS = {
    "ot_ops": ("repl_id", "file_id", "version", "path", "seq", "ts", "ops", "crc32", "author"),
    "path_events": ("repl_id", "seq", "path", "ts", "file_id"),
    "file_breaks": ("repl_id", "file_id", "seq", "path", "ts", "error_kind"),
    "checkpoints": ("repl_id", "file_id", "version", "path", "content"),
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


class Projector:
    """Folds one repl's ot/file events, continuing from a resumed state."""

    def __init__(self, repl_id: str, rows: Rows, files: ReplFiles | None = None,
                 checkpoint_every: int = 256) -> None:
        self.repl_id = repl_id
        self.rows = rows
        self.files = files or ReplFiles(repl_id)
        self.every = checkpoint_every

    def ot(self, seq: int, us: int, path: str, version: int, ops_json: str, crc32: int | None,
           author: str | None) -> BadEvent | None:
        """Apply one packet (us: effective time, µs); the error if it was refused."""
        files = self.files
        try:
            try:
                ops = parse_ops(orjson.loads(ops_json), check_unicode=False)
            except BadEvent as e:
                # a packet we cannot read leaves the file's state unknown: refuse it and break the file
                state = files.files.get(path)
                error = e.located(repl_id=self.repl_id, seq=seq, path=path, version=version)
                if state is None or state.broken is None:
                    files.break_file(seq, path, error)
                else:
                    raise files.after_break(seq, path, version, state) from None
                raise error from None
            state = files.apply_ot(seq, path, version, ops, crc32)
        except BadEvent as e:
            self._record_break(seq, us, path)
            return e.located(repl_id=self.repl_id, seq=seq, path=path, version=version)
        rid = self.repl_id
        if state.file_id == seq:
            self.rows.add("path_events", rid, seq, path, us, seq)
        self.rows.add("ot_ops", rid, state.file_id, version, path, seq, us,
                      orjson.dumps(ops).decode(), crc32, author)
        if version % self.every == 0:
            self.rows.add("checkpoints", rid, state.file_id, version, path, state.buffer.text())
        return None

    def _record_break(self, seq: int, us: int, path: str) -> None:
        state = self.files.files.get(path)
        if state is not None and state.broken is not None and state.broken.seq == seq:
            if state.file_id == seq:  # the bad packet would have started the lineage
                self.rows.add("path_events", self.repl_id, seq, path, us, state.file_id)
            self.rows.add("file_breaks", self.repl_id, state.file_id, seq, path, us, state.broken.kind)

    def file(self, seq: int, us: int, op: str, path: str, dest: str | None) -> BadEvent | None:
        """Apply one file create/move/remove; the error if it was refused."""
        changes: dict[str, int | None] = {}
        try:
            if op == "create":
                changes[path] = self.files.create(seq, path).file_id
            elif op == "move":
                moved = self.files.move(seq, path, dest)
                for old, _, _ in moved:
                    changes[old] = None
                for _, new, state in moved:
                    changes[new] = state.file_id
            else:
                for state in self.files.remove(seq, path):
                    changes[state.path] = None
        except BadEvent as e:
            return e.located(repl_id=self.repl_id, seq=seq, path=path)
        for p, file_id in changes.items():
            self.rows.add("path_events", self.repl_id, seq, p, us, file_id)
        return None
