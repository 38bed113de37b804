"""Multi-file state of one repl: file lineages, paths, versions, CRC checks.

A *lineage* is one life of a file: it starts with a `file` create (or the
first `ot` packet of an unbound path), follows moves, and ends with a remove.
Its id is the seq of the event that started it, unique within the repl.
Versions count packets per lineage (1, 2, ...) and continue across moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from events.errors import BadEvent

from .buffer import TextBuffer
from .ops import Ops


@dataclass(slots=True)
class FileState:
    """One live lineage: its id, path, content and last version."""

    file_id: int
    path: str
    buffer: TextBuffer = field(default_factory=TextBuffer)
    version: int = 0
    broken: BadEvent | None = None  # after a bad packet the content is unknown


class ReplFiles:
    """The files of one repl; every mutation validates first and changes nothing on error."""

    def __init__(self, repl_id: str = "") -> None:
        self.repl_id = repl_id
        self.files: dict[str, FileState] = {}

    def _error(self, kind: str, message: str, seq: int, path: str, version: int | None = None) -> BadEvent:
        return BadEvent(kind, message, repl_id=self.repl_id, seq=seq, path=path, version=version)

    def apply_ot(self, seq: int, path: str, version: int, ops: Ops, crc32: int | None) -> FileState:
        """Apply one packet; a new lineage starts at an unbound path. Raises BadEvent."""
        state = self.files.get(path)
        if state is None:
            state = FileState(file_id=seq, path=path)
            created = True
        else:
            created = False
            if state.broken is not None:
                raise self.after_break(seq, path, version, state)
        expected = state.version + 1
        if version != expected:
            kind = "version_repeat" if version <= state.version else "version_gap"
            error = self._error(kind, f"expected version {expected}, got {version}", seq, path, version)
            self._break(state, error, created)
            raise error
        buffer = state.buffer
        try:
            buffer.apply(ops)
        except BadEvent as e:
            error = e.located(repl_id=self.repl_id, seq=seq, path=path, version=version)
            self._break(state, error, created)
            raise error from None
        if crc32 is not None:
            actual = buffer.crc32()
            if actual != crc32:
                raise self.crc_mismatch(state, seq, version, actual, crc32, created)
        state.version = version
        if created:
            self.files[path] = state
        return state

    def crc_mismatch(self, state: FileState, seq: int, version: int, actual: int, expected: int,
                     created: bool = False) -> BadEvent:
        """Break the file after a packet whose CRC does not match; the error."""
        error = self._error(
            "crc_mismatch", f"CRC-32 after the packet is {actual}, the packet says {expected}", seq, state.path, version
        )
        self._break(state, error, created)
        return error

    def after_break(self, seq: int, path: str, version: int | None, state: FileState) -> BadEvent:
        """The error of a packet for a file whose content is already unknown."""
        return self._error(
            "after_broken_packet",
            f"file state unknown since an earlier bad packet ({state.broken.kind} at seq {state.broken.seq})",
            seq, path, version,
        )

    def break_file(self, seq: int, path: str, error: BadEvent) -> None:
        """Mark the file at path broken by a packet that could not be read (starting it if unbound)."""
        state = self.files.get(path)
        self._break(state or FileState(file_id=seq, path=path), error, state is None)

    def _break(self, state: FileState, error: BadEvent, created: bool) -> None:
        # The file exists (the user typed into it) but its content is unknown
        # from here on, so later packets of it are refused too.
        state.broken = error
        if created:
            self.files[state.path] = state

    def create(self, seq: int, path: str) -> FileState:
        """Start an empty lineage at path."""
        if path in self.files:
            raise self._error("file_exists", "create of a path that already holds a file", seq, path)
        if any(p.startswith(path + "/") for p in self.files):
            raise self._error("file_exists", "create of a path that is a folder of existing files", seq, path)
        state = FileState(file_id=seq, path=path)
        self.files[path] = state
        return state

    def _matching(self, path: str) -> list[str]:
        """The file itself, or every file under path as a folder."""
        if path in self.files:
            return [path]
        prefix = path + "/"
        return sorted(p for p in self.files if p.startswith(prefix))

    def move(self, seq: int, path: str, dest: str) -> list[tuple[str, str, FileState]]:
        """Move a file or folder; returns (old, new, state) per moved file. A file at dest is replaced."""
        sources = self._matching(path)
        if not sources:
            raise self._error("file_not_found", f"move of a path with no file or folder (to {dest!r})", seq, path)
        if dest == path or dest.startswith(path + "/"):
            raise self._error("bad_path", f"move of {path!r} into itself ({dest!r})", seq, path)
        moved = []
        for old in sources:
            new = dest + old[len(path):]
            moved.append((old, new, self.files.pop(old)))
        for old, new, state in moved:
            state.path = new
            self.files[new] = state
        return moved

    def remove(self, seq: int, path: str) -> list[FileState]:
        """Remove a file or folder; returns the ended lineages."""
        targets = self._matching(path)
        if not targets:
            raise self._error("file_not_found", "remove of a path with no file or folder", seq, path)
        return [self.files.pop(p) for p in targets]

    def mark_broken(self, file_id: int, path: str, error: BadEvent) -> None:
        """Mark a lineage's content unknown (binding it at path if it is not live)."""
        for state in self.files.values():
            if state.file_id == file_id:
                state.broken = error
                return
        self.files[path] = FileState(file_id=file_id, path=path, broken=error)

    def snapshot(self) -> dict[str, str | None]:
        """{path: content}; None for a file whose content is unknown (broken stream)."""
        return {p: (None if s.broken else s.buffer.text()) for p, s in sorted(self.files.items())}
