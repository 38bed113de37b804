"""A chunked text buffer: edits cost O(chunk), not O(file).

Typing is local, so the buffer remembers the chunk it touched last and its
start offset; the next edit usually lands in the same chunk and needs no
search. A file smaller than one chunk behaves like a plain str.

Ingest checks a CRC after every packet, so the buffer keeps each chunk's
UTF-8 bytes and the running CRC after it: a CRC re-encodes only the chunks
from the first one edited since the last CRC.
"""

from __future__ import annotations

import zlib

from events.errors import BadEvent

from .ops import Ops

CHUNK = 2048  # chars; a chunk holds up to 2*CHUNK, so an edit copies at most ~4K chars (not swept yet)


def past_end(ops: Ops, size: int) -> str | None:
    """Why ops do not fit a document of `size` code points (a skip or delete past its end), or None.

    The one bounds check of the op contract: TextBuffer.apply and the compiled fold's wrapper use it.
    """
    pos = 0
    for op in ops:
        if op.__class__ is str:
            size += len(op)
            pos += len(op)
        elif op > 0:
            pos += op
            if pos > size:
                return f"skip {op} ends at {pos}, past the end ({size} code points)"
        else:
            if pos - op > size:
                return f"delete {-op} at {pos} ends at {pos - op}, past the end ({size} code points)"
            size += op
    return None


class TextBuffer:
    """Mutable text addressed by code point, with OT application."""

    __slots__ = ("_chunks", "_ci", "_crcs", "_cstart", "_dirty", "_enc", "_size")

    def __init__(self, text: str = "") -> None:
        self._chunks = [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)] or [""]
        self._size = len(text)
        self._ci = 0
        self._cstart = 0
        self._enc: list[bytes | None] = [None] * len(self._chunks)  # UTF-8 of each chunk, None when edited
        self._crcs: list[int] = []  # running CRC after chunk i, valid for i < _dirty
        self._dirty = 0

    def __len__(self) -> int:
        return self._size

    def text(self) -> str:
        """The whole document."""
        chunks = self._chunks
        return chunks[0] if len(chunks) == 1 else "".join(chunks)

    def crc32(self) -> int:
        """CRC-32/IEEE of the UTF-8 bytes of the document."""
        chunks = self._chunks
        if len(chunks) == 1:  # small file: caching would cost more than it saves
            return zlib.crc32(chunks[0].encode("utf-8"))
        enc, crcs, i = self._enc, self._crcs, self._dirty
        crc = crcs[i - 1] if i else 0
        del crcs[i:]
        for j in range(i, len(chunks)):
            data = enc[j]
            if data is None:
                data = enc[j] = chunks[j].encode("utf-8")
            crc = zlib.crc32(data, crc)
            crcs.append(crc)
        self._dirty = len(chunks)
        return crc

    def _seek(self, pos: int) -> int:
        """Make the chunk holding pos current; return pos's offset in it."""
        chunks = self._chunks
        ci, start = self._ci, self._cstart
        if pos < start:
            while pos < start:
                ci -= 1
                start -= len(chunks[ci])
        else:
            last = len(chunks) - 1
            while ci < last and pos >= start + len(chunks[ci]):
                start += len(chunks[ci])
                ci += 1
        self._ci, self._cstart = ci, start
        return pos - start

    def apply(self, ops: Ops) -> None:
        """Apply a compact op list in place; raises BadEvent(op_past_end) and changes nothing then."""
        # validate bounds first so a bad packet leaves the buffer untouched
        problem = past_end(ops, self._size)
        if problem is not None:
            raise BadEvent("op_past_end", problem)
        pos = 0
        for op in ops:
            if op.__class__ is str:
                self._insert(pos, op)
                pos += len(op)
            elif op > 0:
                pos += op
            else:
                self._delete(pos, -op)

    def _insert(self, pos: int, text: str) -> None:
        off = self._seek(pos)
        chunks = self._chunks
        ci = self._ci
        chunk = chunks[ci]
        new = chunk[:off] + text + chunk[off:]
        self._size += len(text)
        self._dirty = min(self._dirty, ci)
        if len(new) <= 2 * CHUNK:
            chunks[ci] = new
            self._enc[ci] = None
        else:
            parts = [new[i : i + CHUNK] for i in range(0, len(new), CHUNK)]
            chunks[ci : ci + 1] = parts
            self._enc[ci : ci + 1] = [None] * len(parts)

    def _delete(self, pos: int, n: int) -> None:
        self._size -= n
        chunks = self._chunks
        while n:
            off = self._seek(pos)
            ci = self._ci
            chunk = chunks[ci]
            take = min(n, len(chunk) - off)
            rest = chunk[:off] + chunk[off + take :]
            n -= take
            self._dirty = min(self._dirty, ci)
            if rest or len(chunks) == 1:
                chunks[ci] = rest
                self._enc[ci] = None
            else:
                del chunks[ci]
                del self._enc[ci]
                if ci == len(chunks):  # removed the last chunk: step back onto the new last
                    self._ci = ci - 1
                    self._cstart -= len(chunks[ci - 1])
