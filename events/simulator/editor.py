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
        # (offset, deleted, inserted) of the last packet, to undo it
        self._undo: tuple[int, str, str] | None = None
        self._undo_whole = False

    @property
    def is_python(self) -> bool:
        return self.path.endswith(".py")

    def packet(
        self,
        insert: str = "",
        back: int = 0,
        forward: int = 0,
        author: str = "USER",
        whole: bool = False,
    ) -> None:
        """Deletes `back` code points before and `forward` after the cursor, then inserts `insert`.

        `whole` marks an edit a user would undo as one (a paste, a completion), not a keystroke.
        """
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
        self._undo_whole = whole
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
        """True when the last packet was a whole edit (a paste, a completion, a fix), not a keystroke."""
        return self._undo is not None and self._undo_whole

    def undo(self, redo_chance: float) -> None:
        """Logs an undo and the packet reverting the last one; a redo follows at `redo_chance`.

        An undone edit that spans lines is always redone, so the file keeps its shape.
        """
        pos, deleted, inserted = self._undo
        self.editor("undo", {"version": self.version})
        self.rec.clock.wait_ms(self.rng.uniform(80, 400))
        self._offset_to_cursor(pos)
        self.packet(insert=deleted, forward=len(inserted))
        if "\n" in deleted + inserted or self.rng.random() < redo_chance:
            self.rec.clock.wait_ms(self.rng.uniform(300, 2500))
            self.editor("redo", {"version": self.version})
            self._offset_to_cursor(pos)
            self.packet(insert=inserted, forward=len(deleted), whole=True)
