"""One file open in a repl's editor: its text, its OT version, and the packets that change it."""

from __future__ import annotations

import random

from .recorder import Recorder
from .textbuffer import LineBuffer

CRC_NULL_RATE = 0.02  # some clients send packets without a checksum
TRAILING_SKIP_RATE = 0.15  # some clients spell out the skip over the rest of the file


class FileEditor:
    """A file of the repl; each `packet` edits it at the cursor and logs one `ot` event."""

    def __init__(self, path: str, rec: Recorder, rng: random.Random) -> None:
        self.path = path
        self.rec = rec
        self.rng = rng
        self.buf = LineBuffer()
        self.version = 0
        self.packets = 0
        self._undo: tuple[int, str, str] | None = None  # (offset, deleted, inserted) of the last packet
        self._redo: tuple[int, str, str] | None = None

    @property
    def is_python(self) -> bool:
        return self.path.endswith(".py")

    def packet(self, insert: str = "", back: int = 0, forward: int = 0, author: str = "USER") -> None:
        """Deletes `back` code points before and `forward` after the cursor, then inserts `insert`."""
        assert insert or back or forward, "an OT packet must change the file"
        buf = self.buf
        deleted = buf.backspace(back) if back else ""
        pos = buf.offset
        if forward:
            deleted += buf.delete(forward)
        if insert:
            buf.insert(insert)
        ops: list[dict] = [{"skip": pos}] if pos else []
        if back + forward:
            ops.append({"delete": back + forward})
        if insert:
            ops.append({"insert": insert})
        rng = self.rng
        rest = len(buf) - buf.offset
        if rest and rng.random() < TRAILING_SKIP_RATE:
            ops.append({"skip": rest})
        self.version += 1
        self.packets += 1
        self._undo = (pos, deleted, insert)
        self._redo = None
        self.rec.emit(
            "ot",
            path=self.path,
            version=self.version,
            spooky_version=self.version,
            ops=ops,
            crc32=None if rng.random() < CRC_NULL_RATE else buf.crc32(),
            author=author,
            nonce=rng.getrandbits(31),
        )

    def goto(self, line: int, column: int, log: bool = False) -> None:
        """Moves the cursor; `log` records the move as an `editor` cursor event."""
        self.buf.goto(line, column)
        if log:
            self.editor("cursor", {"line": self.buf.line_index, "character": self.buf.column})

    def editor(self, action: str, detail: dict) -> None:
        """Logs an `editor` event about this file."""
        self.rec.emit("editor", action=action, path=self.path, detail=detail)

    def _offset_to_cursor(self, offset: int) -> None:
        # undo targets are offsets; walk lines from the top (undo is rare, files are small enough)
        line = 0
        while line < self.buf.line_count - 1 and offset > len(self.buf.line(line)):
            offset -= len(self.buf.line(line)) + 1
            line += 1
        self.buf.goto(line, offset)

    def can_undo(self) -> bool:
        """True when the last packet can be undone without changing the number of lines."""
        last = self._undo
        return last is not None and "\n" not in last[1] + last[2]

    def undo(self) -> None:
        """Logs an undo and the packet that reverts the last packet."""
        pos, deleted, inserted = self._undo
        self.editor("undo", {"version": self.version})
        self._offset_to_cursor(pos)
        self.packet(insert=deleted, forward=len(inserted))
        self._undo, self._redo = None, (pos, deleted, inserted)

    def can_redo(self) -> bool:
        """True right after an undo."""
        return self._redo is not None

    def redo(self) -> None:
        """Logs a redo and the packet that applies the undone packet again."""
        pos, deleted, inserted = self._redo
        self.editor("redo", {"version": self.version})
        self._offset_to_cursor(pos)
        self.packet(insert=inserted, forward=len(deleted))
