"""CRC-32/IEEE of a document's UTF-8 bytes, as Replit's OT packets carry it."""

from __future__ import annotations

import zlib


def crc32_text(text: str) -> int:
    """CRC-32/IEEE of the UTF-8 bytes of text."""
    return zlib.crc32(text.encode("utf-8"))
