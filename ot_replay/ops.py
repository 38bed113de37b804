"""OT operations after Replit's protocol: parse, apply, compose, transform.

An op list walks the document from position 0; counts are Unicode code
points. Internally an op list is compact: an int > 0 skips that many code
points, an int < 0 deletes -n, a str inserts itself. Text after the last op
is kept (an implicit trailing skip).
"""

from __future__ import annotations

from events.errors import BadEvent
from events.validate import parse_ops  # the op list is part of the event contract

Op = int | str
Ops = list[Op]

__all__ = ["Op", "Ops", "apply", "compose", "cursor", "normalize", "parse_ops", "to_contract", "transform"]


def to_contract(ops: Ops) -> list[dict]:
    """The contract form of a compact op list."""
    return [
        {"insert": op} if isinstance(op, str) else ({"skip": op} if op > 0 else {"delete": -op})
        for op in ops
    ]


def cursor(ops: Ops) -> int:
    """Where an op list leaves the editing position in the new document: after its last insert, or
    where its last delete was (0 for an op list that only skips)."""
    pos = at = 0
    for op in ops:
        if isinstance(op, str):
            pos += len(op)
            at = pos
        elif op > 0:
            pos += op
        else:
            at = pos
    return at


def apply(text: str, ops: Ops) -> str:
    """Apply a compact op list to a str by slicing (the reference implementation)."""
    parts = []
    pos = 0
    size = len(text)
    for op in ops:
        if isinstance(op, str):
            parts.append(op)
        elif op > 0:
            if pos + op > size:
                raise BadEvent("op_past_end", f"skip {op} at {pos} passes the end of a {size}-code-point document")
            parts.append(text[pos : pos + op])
            pos += op
        else:
            if pos - op > size:
                raise BadEvent("op_past_end", f"delete {-op} at {pos} passes the end of a {size}-code-point document")
            pos -= op
    parts.append(text[pos:])
    return "".join(parts)


def _push(out: Ops, op: Op) -> None:
    """Append op, merging with a last op of the same type (keeps lists canonical)."""
    if out:
        last = out[-1]
        if isinstance(op, str):
            if isinstance(last, str):
                out[-1] = last + op
                return
            # canonical order: an insert goes before a neighbouring delete
            if last < 0:
                if len(out) >= 2 and isinstance(out[-2], str):
                    out[-2] = out[-2] + op
                else:
                    out.insert(len(out) - 1, op)
                return
        elif not isinstance(last, str) and (last > 0) == (op > 0):
            out[-1] = last + op
            return
    out.append(op)


def normalize(ops: Ops) -> Ops:
    """Canonical form: merged neighbours, inserts before deletes, no trailing skip."""
    out: Ops = []
    for op in ops:
        if op:
            _push(out, op)
    while out and not isinstance(out[-1], str) and out[-1] > 0:
        out.pop()
    return out


class _Cursor:
    """Walks an op list, splitting ops; past the end it yields an endless skip."""

    __slots__ = ("head", "i", "ops")

    def __init__(self, ops: Ops) -> None:
        self.ops = ops
        self.i = 0
        self.head: Op | None = None
        self._next()

    def _next(self) -> None:
        if self.i < len(self.ops):
            self.head = self.ops[self.i]
            self.i += 1
        else:
            self.head = None  # endless skip

    def done(self) -> bool:
        return self.head is None

    def take(self, n: int | None) -> Op:
        """Take up to n units (skip/delete counts, insert chars) of the head op."""
        head = self.head
        if head is None:
            return n if n is not None else 0
        length = len(head) if isinstance(head, str) else abs(head)
        if n is None or n >= length:
            self._next()
            return head
        if isinstance(head, str):
            self.head = head[n:]
            return head[:n]
        sign = 1 if head > 0 else -1
        self.head = head - sign * n
        return sign * n


def _length(op: Op) -> int:
    return len(op) if isinstance(op, str) else abs(op)


def compose(a: Ops, b: Ops) -> Ops:
    """One op list with the effect of applying a, then b."""
    out: Ops = []
    ca, cb = _Cursor(a), _Cursor(b)
    while not (ca.done() and cb.done()):
        ha, hb = ca.head, cb.head
        if isinstance(ha, int) and ha < 0:  # a deletes: b never saw that text
            _push(out, ca.take(None))
            continue
        if isinstance(hb, str):  # b inserts: a is not involved
            _push(out, cb.take(None))
            continue
        # a produces text (skip or insert), b consumes it (skip or delete)
        n = min(_length(ha) if ha is not None else 1 << 62, _length(hb) if hb is not None else 1 << 62)
        pa, pb = ca.take(n), cb.take(n)
        if pb > 0:  # b keeps what a produced
            _push(out, pa)
        elif isinstance(pa, int):  # b deletes original text that a kept
            _push(out, pb)
        # else: b deletes what a inserted: nothing remains
    return normalize(out)


def transform(a: Ops, b: Ops) -> tuple[Ops, Ops]:
    """Transform concurrent a and b: apply(apply(d, a), b2) == apply(apply(d, b), a2).

    Returns (a2, b2): a2 applies after b, b2 after a. At the same position a's
    insert goes first.
    """
    a2: Ops = []
    b2: Ops = []
    ca, cb = _Cursor(a), _Cursor(b)
    while not (ca.done() and cb.done()):
        ha, hb = ca.head, cb.head
        if isinstance(ha, str):
            text = ca.take(None)
            _push(a2, text)
            _push(b2, len(text))
            continue
        if isinstance(hb, str):
            text = cb.take(None)
            _push(b2, text)
            _push(a2, len(text))
            continue
        n = min(_length(ha) if ha is not None else 1 << 62, _length(hb) if hb is not None else 1 << 62)
        pa, pb = ca.take(n), cb.take(n)
        if pa > 0 and pb > 0:
            _push(a2, n)
            _push(b2, n)
        elif pa < 0 and pb > 0:
            _push(a2, pa)
        elif pa > 0 and pb < 0:
            _push(b2, pb)
        # both delete the same text: neither needs to
    return normalize(a2), normalize(b2)
