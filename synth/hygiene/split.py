"""Sampling and the train/eval split: seeded, and by group, so a repl is never on both sides."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def rank(seed: int, purpose: str, key: str) -> bytes:
    """A seeded sort key: the same (seed, purpose, key) always sorts the same way."""
    return hashlib.sha256(f"{seed}:{purpose}:{key}".encode()).digest()


def sample(items: Sequence[T], n: int | None, seed: int, key: Callable[[T], str]) -> list[T]:
    """At most n items, chosen by a seeded order (all of them, in their order, when n is None or enough)."""
    if n is None or len(items) <= n:
        return list(items)
    chosen = {key(x) for x in sorted(items, key=lambda x: rank(seed, "sample", key(x)))[:n]}
    return [x for x in items if key(x) in chosen]


def split_by_group(items: Sequence[T], share: float, seed: int, key: Callable[[T], str],
                   group: Callable[[T], str]) -> tuple[list[T], list[T]]:
    """(train, eval): whole groups go to eval, in a seeded order, while eval stays within share of the items.

    Eval holds at most round(share * n) items; a group larger than what is left
    is skipped for a smaller one. Each side comes in a seeded order (a shuffle
    that two builds agree on).
    """
    target = int(share * len(items) + 0.5)
    sizes: dict[str, int] = {}
    for x in items:
        sizes[group(x)] = sizes.get(group(x), 0) + 1
    chosen, size = set(), 0
    for g in sorted(sizes, key=lambda g: rank(seed, "split", g)):
        if size + sizes[g] <= target:
            chosen.add(g)
            size += sizes[g]
    order = sorted(items, key=lambda x: rank(seed, "order", key(x)))
    return [x for x in order if group(x) not in chosen], [x for x in order if group(x) in chosen]
