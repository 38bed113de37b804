"""A text with a cursor, kept as lines around the cursor line, whose CRC-32 stays cheap to take."""

from __future__ import annotations

import zlib


class LineBuffer:
    """Editable text; every edit happens at the cursor, and `crc32()` reads only what follows it.

    Lines before the cursor line keep a running CRC-32, so taking the CRC after a keystroke costs
    the bytes after the cursor line only: typing at the end of a big file stays cheap, and no
    edit ever copies the whole text (CPython slicing of non-ASCII text is slow).
    """

    def __init__(self) -> None:
        self._left: list[str] = []  # whole lines before the cursor line, each ending in "\n"
        self._left_crc: list[int] = []  # CRC-32 of the text up to the end of _left[i]
        self._left_len = 0
        self._head = ""  # the cursor line before the cursor
        self._tail = ""  # the cursor line from the cursor on, with its "\n" if it has one
        self._right: list[str] = []  # the lines after the cursor line, last line first
        self._right_enc: list[bytes] = []  # their UTF-8 bytes, same order
        self._right_len = 0
        self._right_blob: bytes | None = b""  # the bytes after the cursor line, when known

    def __len__(self) -> int:
        return self._left_len + len(self._head) + len(self._tail) + self._right_len

    @property
    def offset(self) -> int:
        """Code points before the cursor."""
        return self._left_len + len(self._head)

    @property
    def line_index(self) -> int:
        """0-based line of the cursor."""
        return len(self._left)

    @property
    def column(self) -> int:
        """0-based code-point column of the cursor."""
        return len(self._head)

    @property
    def line_count(self) -> int:
        """Lines in the text; a text ending in "\\n" has an empty last line."""
        return len(self._left) + 1 + len(self._right)

    def line(self, index: int) -> str:
        """Line `index` (0-based) without its newline."""
        n_left = len(self._left)
        if index < n_left:
            return self._left[index][:-1]
        if index == n_left:
            return (self._head + self._tail).removesuffix("\n")
        return self._right[len(self._right) - (index - n_left)].removesuffix("\n")

    def text(self) -> str:
        """The whole text."""
        return "".join(self._left) + self._head + self._tail + "".join(reversed(self._right))

    def crc32(self) -> int:
        """CRC-32/IEEE of the UTF-8 bytes of the whole text."""
        crc = self._left_crc[-1] if self._left_crc else 0
        crc = zlib.crc32((self._head + self._tail).encode(), crc)
        if self._right:
            if self._right_blob is None:
                self._right_blob = b"".join(reversed(self._right_enc))
            crc = zlib.crc32(self._right_blob, crc)
        return crc

    def find_line(self, text: str, near: int) -> int | None:
        """Index of the line equal to `text` nearest to line `near`, or None."""
        best = None
        for index in range(self.line_count):
            if self.line(index) == text and (best is None or abs(index - near) < abs(best - near)):
                best = index
        return best

    def goto(self, line: int, column: int) -> None:
        """Moves the cursor to `column` of `line` (both 0-based, clamped to the text)."""
        line = max(0, min(line, self.line_count - 1))
        current = self._head + self._tail
        while len(self._left) > line:
            self._push_right(current)
            current = self._pop_left()
        while len(self._left) < line:
            self._push_left(current)
            current = self._pop_right()
        column = max(0, min(column, len(current.removesuffix("\n"))))
        self._head, self._tail = current[:column], current[column:]

    def insert(self, text: str) -> None:
        """Inserts `text` at the cursor and moves the cursor past it."""
        parts = text.split("\n")
        if len(parts) == 1:
            self._head += text
            return
        self._push_left(self._head + parts[0] + "\n")
        for part in parts[1:-1]:
            self._push_left(part + "\n")
        self._head = parts[-1]

    def backspace(self, count: int) -> str:
        """Deletes `count` code points before the cursor; returns them."""
        if count > self.offset:
            raise ValueError(f"cannot delete {count} code points before offset {self.offset}")
        pieces = []
        while count > 0:
            if count <= len(self._head):
                cut = len(self._head) - count
                pieces.append(self._head[cut:])
                self._head = self._head[:cut]
                break
            pieces.append(self._head)
            count -= len(self._head)
            line = self._pop_left()
            pieces.append("\n")
            count -= 1
            self._head = line[:-1]
        return "".join(reversed(pieces))

    def delete(self, count: int) -> str:
        """Deletes `count` code points after the cursor; returns them."""
        if count > len(self) - self.offset:
            raise ValueError(f"cannot delete {count} code points after offset {self.offset}")
        pieces = []
        while count > 0:
            if count < len(self._tail) or not self._tail.endswith("\n"):
                pieces.append(self._tail[:count])
                self._tail = self._tail[count:]
                break
            pieces.append(self._tail)
            count -= len(self._tail)
            self._tail = self._pop_right()
        return "".join(pieces)

    def _push_left(self, line: str) -> None:
        crc = self._left_crc[-1] if self._left_crc else 0
        self._left.append(line)
        self._left_crc.append(zlib.crc32(line.encode(), crc))
        self._left_len += len(line)

    def _pop_left(self) -> str:
        line = self._left.pop()
        self._left_crc.pop()
        self._left_len -= len(line)
        return line

    def _push_right(self, line: str) -> None:
        self._right.append(line)
        self._right_enc.append(line.encode())
        self._right_len += len(line)
        self._right_blob = None

    def _pop_right(self) -> str:
        line = self._right.pop()
        self._right_enc.pop()
        self._right_len -= len(line)
        self._right_blob = None
        return line
