"""Canonical form of an event: two records are the same event when these bytes are equal."""

from __future__ import annotations

import json

import orjson

from events.validate import format_us


def canonical(ev: dict) -> bytes:
    """Sorted keys, one spelling per instant, private `_` fields dropped."""
    public = {k: v for k, v in ev.items() if k[0] != "_"}
    public["ts"] = format_us(ev["_us"])
    try:
        return orjson.dumps(public, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # nested past orjson's 255 levels, or an integer past 64 bits
        return json.dumps(public, sort_keys=True, separators=(",", ":")).encode()
