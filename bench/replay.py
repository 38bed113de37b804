"""Replay of a long single-file session: the chunked TextBuffer against naive str slicing."""

from __future__ import annotations

import argparse
import zlib

from events.simulator import long_session
from ot_replay.buffer import TextBuffer
from ot_replay.ops import apply as apply_join
from ot_replay.ops import parse_ops

from .common import median_time, save


def _slice_apply(text: str, ops) -> str:
    pos = 0
    for op in ops:
        if op.__class__ is str:
            text = text[:pos] + op + text[pos:]
            pos += len(op)
        elif op > 0:
            pos += op
        else:
            text = text[:pos] + text[pos - op:]
    return text


def naive_slicing(ops_list):
    """The baseline: one str slice-and-concatenate per op."""
    text = ""
    for ops in ops_list:
        text = _slice_apply(text, ops)
    return text


def join_per_packet(ops_list):
    """A second baseline: rebuild the str once per packet from slices (ot_replay.ops.apply)."""
    text = ""
    for ops in ops_list:
        text = apply_join(text, ops)
    return text


def buffer_replay(ops_list):
    buf = TextBuffer()
    for ops in ops_list:
        buf.apply(ops)
    return buf.text()


def buffer_replay_crc(ops_list):
    buf = TextBuffer()
    for ops in ops_list:
        buf.apply(ops)
        buf.crc32()
    return buf.text()


def naive_crc(ops_list):
    text = ""
    for ops in ops_list:
        text = _slice_apply(text, ops)
        zlib.crc32(text.encode("utf-8"))
    return text


def main(edits: int = 250_000, repeat: int = 3) -> dict:
    events = long_session(edits, seed=0)
    ops_list = [parse_ops(e["ops"]) for e in events if e["kind"] == "ot"]
    final = buffer_replay(ops_list)
    assert final == naive_slicing(ops_list) == join_per_packet(ops_list)
    n = len(ops_list)
    result = {"packets": n, "final_chars": len(final), "final_lines": final.count("\n"), "repeat": repeat}
    for name, fn in [("text_buffer", buffer_replay), ("naive_slicing", naive_slicing),
                     ("join_per_packet", join_per_packet), ("text_buffer_with_crc", buffer_replay_crc),
                     ("naive_slicing_with_crc", naive_crc)]:
        med, runs = median_time(lambda fn=fn: fn(ops_list), repeat)
        result[name] = {"median_s": round(med, 3), "edits_per_s": round(n / med), "runs_s": [round(t, 3) for t in runs]}
    result["speedup_vs_naive"] = round(result["naive_slicing"]["median_s"] / result["text_buffer"]["median_s"], 2)
    result["speedup_vs_join"] = round(result["join_per_packet"]["median_s"] / result["text_buffer"]["median_s"], 2)
    result["speedup_with_crc"] = round(
        result["naive_slicing_with_crc"]["median_s"] / result["text_buffer_with_crc"]["median_s"], 2)
    save("replay", result)
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--edits", type=int, default=250_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    main(a.edits, a.repeat)
