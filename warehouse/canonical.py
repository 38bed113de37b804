"""Canonical form of an event: two records are the same event when these bytes are equal.

A top-level field that is null is the same as one that is absent: the contract's optional fields may
be either, and a Parquet row has every column, null where the event had none (`"crc32": null` in a
JSON line and a null crc32 in a Parquet row are one event). Nulls inside values are kept.
"""

from __future__ import annotations

import json

import orjson

from events.validate import format_us


def canonical(ev: dict) -> bytes:
    """Sorted keys, one spelling per instant, private `_` fields and null fields dropped."""
    public = {k: v for k, v in ev.items() if v is not None and not k.startswith("_")}
    public["ts"] = format_us(ev["_us"])
    try:
        return orjson.dumps(public, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # nested past orjson's 255 levels, or an integer past 64 bits
        return json.dumps(public, sort_keys=True, separators=(",", ":")).encode()
