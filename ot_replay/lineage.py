"""A file lineage's text at many versions: its stored packets (ot_ops.ops) applied to a base in one pass.

Every replay of the derived tables comes down to this: `Timeline` (pairs, synth, verify, eval) and the
SQL time travel (`file_at`, `files_at`, `otlake replay`, ingest's resume) hand each lineage's packets and
the counts they need here. Two implementations: the compiled one (`ot_replay._fold.texts`, the fold's C
text buffer, Arrow buffers in) is what they run; the Python one (`TextBuffer`) is the reference the tests
hold it equal to.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import orjson
import pyarrow as pa

from events.errors import BadEvent

from . import _fold
from .buffer import TextBuffer
from .fold_native import column_spec

NATIVE = True  # what texts() runs unless told; the tests flip it to run everything on the reference
CHUNK_MIN, CHUNK_MAX = 16, 1 << 16  # the C text buffer's chunk sizes (fold.c CHUNK_BYTES_MIN, _MAX)


class DamagedPacket(ValueError):
    """A stored packet that is not a compact op list or does not fit its text: the store is damaged."""


def parse_compact(text: str, index: int | None = None) -> list:
    """A stored compact op list ([2, "x", -1]) as Python; DamagedPacket (naming packet `index`) if it is not
    one."""
    where = "" if index is None else f"packet {index}: "
    try:
        ops = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise DamagedPacket(f"{where}not JSON: {e}") from None
    if type(ops) is not list or any(type(op) is not str and type(op) is not int for op in ops):
        raise DamagedPacket(f"{where}not a compact op list: {text[:80]!r}")
    return ops


def texts_python(base: str, packets: Sequence[str | None], wanted: Sequence[int]) -> list[str]:
    """The reference: texts() with TextBuffer."""
    buf = TextBuffer(base)
    out: list[str] = []
    applied = 0
    for k in wanted:
        while applied < k:
            text = packets[applied]
            if text is None:
                raise DamagedPacket(f"packet {applied} has no ops (null)")
            ops = parse_compact(text, applied)
            try:
                buf.apply(ops)
            except BadEvent as e:
                raise DamagedPacket(f"packet {applied}: {e}") from None
            applied += 1
        out.append(buf.text())
    return out


def texts(base: str, packets: pa.Array | pa.ChunkedArray | Sequence[str], wanted: Sequence[int], *,
          native: bool | None = None, chunk_bytes: int = _fold.CHUNK_BYTES) -> list[str]:
    """The text after each count in `wanted` of `packets` (a lineage's ot_ops.ops in version order) applied
    to `base`, in the order of `wanted` (any order, repeats allowed); one pass over the packets.

    DamagedPacket names the first packet that is not a compact op list or runs past the text's end.
    native: the compiled implementation (default NATIVE) or the reference; chunk_bytes: the size of the C
    text buffer's chunks (a tuning knob; tests make it tiny).
    """
    order = sorted({operator.index(k) for k in wanted})
    if order and (order[0] < 0 or order[-1] > len(packets)):
        raise ValueError(f"counts must be 0..{len(packets)}, got {order[0]}..{order[-1]}")
    if not CHUNK_MIN <= chunk_bytes <= CHUNK_MAX:
        raise ValueError(f"chunk_bytes must be {CHUNK_MIN}..{CHUNK_MAX}, got {chunk_bytes}")
    if native if native is not None else NATIVE:
        if not isinstance(packets, (pa.Array, pa.ChunkedArray)):
            packets = pa.array(packets, pa.string())
        try:
            got = _fold.texts(base, column_spec(packets, "s"), order, parse_compact, chunk_bytes)
        except ValueError as e:
            if type(e) is ValueError and str(e).startswith("packet "):  # the C code's word for a bad packet
                raise DamagedPacket(str(e)) from None
            raise
    else:
        got = texts_python(base, packets.to_pylist() if isinstance(packets, (pa.Array, pa.ChunkedArray))
                           else packets, order)
    at = dict(zip(order, got, strict=True))
    return [at[k] for k in wanted]

