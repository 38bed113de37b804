"""The session simulator: determinism, ordering, OT versions and CRCs, replay == snapshot, diagnostics."""

from __future__ import annotations

import itertools
import json
import random
import re
import zlib
from collections import Counter, defaultdict

import pytest

from events.simulator import long_session, simulate, write_jsonl
from events.simulator.diagnostics import lint
from events.simulator.textbuffer import LineBuffer

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
COMMON = ("repl_id", "seq", "ts", "kind", "session_id", "user_id")


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return simulate(6, seed=11)


@pytest.fixture(scope="module")
def long_events() -> list[dict]:
    return long_session(40_000, seed=3)


def by_repl(events: list[dict]) -> dict[str, list[dict]]:
    repls = defaultdict(list)
    for event in events:
        repls[event["repl_id"]].append(event)
    return {repl: sorted(evs, key=lambda e: e["seq"]) for repl, evs in repls.items()}


def apply_ops(text: str, ops: list[dict]) -> str:
    """Straightforward OT application on a Python str (code-point indexing)."""
    out, pos = [], 0
    for op in ops:
        if "skip" in op:
            assert pos + op["skip"] <= len(text), "skip past the end"
            out.append(text[pos : pos + op["skip"]])
            pos += op["skip"]
        elif "delete" in op:
            assert pos + op["delete"] <= len(text), "delete past the end"
            pos += op["delete"]
        else:
            out.append(op["insert"])
    out.append(text[pos:])
    return "".join(out)


def replay(events: list[dict]) -> tuple[dict[str, str], int]:
    """Files at the end of one repl's events, checking versions and CRCs; returns (files, crcs checked)."""
    files: dict[str, str] = {}
    versions: dict[str, int] = {}
    checked = 0
    for event in events:
        if event["kind"] == "file":
            if event["op"] == "create":
                assert event["path"] not in files
                files[event["path"]], versions[event["path"]] = "", 0
            elif event["op"] == "move":
                files[event["dest"]] = files.pop(event["path"])
                versions[event["dest"]] = versions.pop(event["path"])
            else:
                del files[event["path"]], versions[event["path"]]
        elif event["kind"] == "ot":
            path = event["path"]
            assert event["version"] == versions.get(path, 0) + 1, (path, event["version"])
            assert event["spooky_version"] == event["version"]
            assert event["author"] in ("USER", "GHOSTWRITER")
            assert event["ops"], "empty op list"
            files[path] = apply_ops(files.get(path, ""), event["ops"])
            versions[path] = event["version"]
            if event["crc32"] is not None:
                assert event["crc32"] == zlib.crc32(files[path].encode("utf-8")), (
                    path,
                    event["seq"],
                )
                checked += 1
    return files, checked


def test_same_seed_same_events_and_other_seed_differs(events):
    assert simulate(6, seed=11) == events
    assert simulate(6, seed=12) != events


def test_event_shape_and_kinds(events):
    kinds = Counter(e["kind"] for e in events)
    for kind in ("repl", "ot", "file", "lsp_diagnostic", "editor", "run", "snapshot"):
        assert kinds[kind] > 0, kind
    assert kinds["repl"] == kinds["snapshot"] == 6
    for event in events:
        assert tuple(event)[:6] == COMMON
        assert TS.match(event["ts"]), event["ts"]
        assert isinstance(event["user_id"], (int, type(None)))
    assert re.match(r"^repl-\d{6}-[0-9a-f]{6}$", events[0]["repl_id"])
    authors = Counter(e["author"] for e in events if e["kind"] == "ot")
    assert authors["USER"] > authors["GHOSTWRITER"] > 0
    assert any(
        any(ord(c) > 0xFFFF for c in op.get("insert", ""))
        for e in events
        if e["kind"] == "ot"
        for op in e["ops"]
    ), "no astral (emoji) characters typed"


def test_log_is_interleaved_by_time_and_each_repl_is_ordered(events):
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    for repl, evs in by_repl(events).items():
        assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1)), repl
        assert all(a["ts"] <= b["ts"] for a, b in itertools.pairwise(evs)), repl
        assert evs[0]["kind"] == "repl" and evs[-1]["kind"] == "snapshot"
        assert len(evs) > 100


def test_replay_matches_crcs_versions_and_snapshot(events):
    checked = 0
    for repl, evs in by_repl(events).items():
        files, crcs = replay(evs)
        checked += crcs
        assert files == evs[-1]["files"], repl
    assert checked > 500


def test_lineage_follows_moves_and_restarts_after_remove():
    events = simulate(12, seed=5)
    continued = restarted = 0
    for evs in by_repl(events).values():
        replay(evs)  # asserts versions are contiguous per lineage
        moved, removed = set(), set()
        for event in evs:
            if event["kind"] == "file" and event["op"] == "move":
                moved.add(event["dest"])
            elif event["kind"] == "file" and event["op"] == "remove":
                removed.add(event["path"])
            elif event["kind"] == "ot" and event["path"] in moved:
                continued += event["version"] > 1
                moved.discard(event["path"])
            elif event["kind"] == "ot" and event["path"] in removed:
                restarted += event["version"] == 1
                removed.discard(event["path"])
    assert continued > 0, "no packet after a move"
    assert restarted > 0, "no file created again after a remove"


def test_diagnostics_are_ruff_codes_inside_the_file(events):
    for evs in by_repl(events).values():
        files: dict[str, str] = {}
        for event in evs:
            if event["kind"] == "ot":
                files[event["path"]] = apply_ops(files.get(event["path"], ""), event["ops"])
            elif event["kind"] == "file" and event["op"] == "move":
                files[event["dest"]] = files.pop(event["path"])
            elif event["kind"] == "lsp_diagnostic":
                assert re.match(r"^ruff\[[A-Z]+\d+\]$", event["code"]), event["code"]
                assert event["severity"] in (1, 2, 3, 4)
                assert isinstance(event["has_code_action"], bool)
                lines = files[event["path"]].split("\n")
                start, end = event["range"]["start"], event["range"]["end"]
                for pos in (start, end):
                    assert 0 <= pos["line"] < len(lines)
                    assert 0 <= pos["character"] <= len(lines[pos["line"]])
                assert (start["line"], start["character"]) <= (end["line"], end["character"])
    codes = Counter(e["code"] for e in events if e["kind"] == "lsp_diagnostic")
    assert codes["ruff[E999]"] > 0 and codes["ruff[F821]"] > 0, codes


def test_some_mistakes_are_fixed_and_some_stay(events):
    # undefined names and syntax errors were shown while typing; most are gone at the end, some stay
    logged = {
        (e["repl_id"], e["path"], e["message"])
        for e in events
        if e["kind"] == "lsp_diagnostic" and e["code"] in ("ruff[F821]", "ruff[E999]")
    }
    states = [
        (e["repl_id"], path, text)
        for e in events
        if e["kind"] == "snapshot"
        for path, text in e["files"].items()
        if path.endswith(".py")
    ]
    remaining = {
        (repl, path, row["message"])
        for (repl, path, _), rows in zip(states, lint([(p, t) for _, p, t in states]), strict=True)
        for row in rows
        if row["code"] in ("F821", "invalid-syntax")
    }
    assert remaining, "every mistake was fixed"
    assert len(logged - remaining) > len(remaining), "too few mistakes were fixed"


def test_custom_corpus(tmp_path):
    (tmp_path / "a.py").write_text(
        "import math\n\n\ndef area(r):\n    return math.pi * r * r\n\n\nprint(area(2) + 1)\n"
    )
    (tmp_path / "b.py").write_text(
        "class Box:\n    def __init__(self, items):\n        self.items = list(items)\n\n"
        "    def total(self):\n        return sum(self.items) + 0\n"
    )
    events = simulate(2, seed=1, corpus=tmp_path)
    for evs in by_repl(events).values():
        files, _ = replay(evs)
        assert files == evs[-1]["files"]
        assert "def area(r)" in files["main.py"] or "class Box" in files["main.py"]
    with pytest.raises(ValueError):
        simulate(1, seed=1, corpus=tmp_path / "missing")


def test_long_session_has_exact_packets_and_replays(long_events):
    ots = [e for e in long_events if e["kind"] == "ot"]
    assert len(ots) == 40_000
    assert {e["path"] for e in ots} == {"main.py"}
    text = ""
    for version, event in enumerate(ots, start=1):
        assert event["version"] == version
        text = apply_ops(text, event["ops"])
        if event["crc32"] is not None and version % 97 == 0:
            assert event["crc32"] == zlib.crc32(text.encode())
    assert text == long_events[-1]["files"]["main.py"]
    assert len(text) > 5_000
    assert [e["seq"] for e in long_events] == list(range(1, len(long_events) + 1))
    assert all(a["ts"] <= b["ts"] for a, b in itertools.pairwise(long_events))
    assert 0 < sum(e["kind"] == "lsp_diagnostic" for e in long_events) <= 400


def test_write_jsonl_round_trips(tmp_path, events):
    path = tmp_path / "events.jsonl"
    write_jsonl(events[:200], path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == events[:200]
    assert all(": " not in line[:40] for line in lines)


def test_line_buffer_matches_a_plain_string():
    rng = random.Random(0)
    buf, text, cursor = LineBuffer(), "", 0
    for _ in range(3000):
        lines = text.split("\n")
        action = rng.random()
        if action < 0.3:
            line = rng.randrange(len(lines))
            column = rng.randint(0, len(lines[line]))
            buf.goto(line, column)
            cursor = sum(len(x) + 1 for x in lines[:line]) + column
        elif action < 0.7:
            piece = rng.choice(["a", "é", "中文", "😀", "\n", "x\ny", "  ", "\n\n"])
            buf.insert(piece)
            text, cursor = text[:cursor] + piece + text[cursor:], cursor + len(piece)
        elif action < 0.85 and cursor:
            n = rng.randint(1, cursor)
            assert buf.backspace(n) == text[cursor - n : cursor]
            text, cursor = text[: cursor - n] + text[cursor:], cursor - n
        elif cursor < len(text):
            n = rng.randint(1, len(text) - cursor)
            assert buf.delete(n) == text[cursor : cursor + n]
            text = text[:cursor] + text[cursor + n :]
        assert buf.offset == cursor and len(buf) == len(text)
        assert buf.crc32() == zlib.crc32(text.encode())
    assert buf.text() == text
    assert [buf.line(i) for i in range(buf.line_count)] == text.split("\n")
