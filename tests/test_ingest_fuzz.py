"""Mutation fuzzing of ingest over a simulated session: no input crashes it, every run reconciles.

Lines of a real-looking session (events.simulator) are damaged the ways files get damaged (bit flips,
truncation, bad escapes, invalid UTF-8, lone surrogates, deep nesting, numbers out of range, wrong
types, duplicated and swapped lines). Every ingest must end balanced, without an exception, a
second ingest of the same file must change no table, and every line the fuzzer left whole must be
stored as it was, unless the damage elsewhere gives ingest a reason to refuse it (expected_stored,
worked out from the lines alone).
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
from collections import defaultdict
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.simulator import simulate
from otlake.cli import main
from otlake.stages import ingest_events, ingest_files
from warehouse.ingest import IngestReport
from warehouse.store import Warehouse

from .test_ingest import dump

NUMERIC_FIELDS = ("seq", "user_id", "version", "spooky_version", "crc32", "nonce", "severity", "exit_code")
TEXT_FIELDS = ("repl_id", "kind", "path", "dest", "session_id", "author", "code", "message", "action", "command",
               "op", "ts")
# number spellings out of every column's range, and the ones JSON parsers disagree on
BAD_NUMBERS = ("9223372036854775808", "9223372036854775807", "18446744073709551616", "18446744073709551615",
               "4294967296", "2147483648", "-1", "-9223372036854775809", "1.5", "1e400", "-1e400", "-0", "-0.0",
               "1e20", "1E2", "0.0", "100000000000000000000000000000", "NaN", "Infinity", "01", "1.")
OTHER_VALUES = ("null", "true", "false", '""', '"x"', "[]", "{}", "[1]", '{"a":1}', '{"skip":1}', '"\\u0000"')
ESCAPES = (b"\\x41", b"\\u12", b"\\uZZZZ", b"\\", b"\\ud800", b"\\udc00", b"\\ud800\\ud800", b"\\ud83d", b"\\'",
           b"\\U0001F600", b"\\u0000", b"\\\\")
BAD_UTF8 = (b"\xff", b"\xfe", b"\xc0\x80", b"\xed\xa0\x80", b"\xe2\x82", b"\xf4\x90\x80\x80", b"\x80",
            b"\xf8\x88\x80\x80\x80", b"\xc3")
MARK = "\x00MUTANT\x00"  # a value replaced by raw JSON text after dumping


def _dumps_with(ev: dict, token: str) -> bytes:
    text = json.dumps(ev, ensure_ascii=False, separators=(",", ":"))
    return text.replace(json.dumps(MARK, ensure_ascii=False), token).encode("utf-8", "surrogatepass")


def _set_somewhere(ev: dict, rng: random.Random, names: tuple[str, ...], value) -> None:
    """Set a field of the event, or one nested inside it (range positions, ops), to value."""
    nested = []
    if isinstance(ev.get("range"), dict):
        nested += [(ev["range"][end], part) for end in ("start", "end") if isinstance(ev["range"].get(end), dict)
                   for part in ("line", "character")]
    if isinstance(ev.get("ops"), list):
        nested += [(op, next(iter(op))) for op in ev["ops"] if isinstance(op, dict) and op]
    if nested and rng.random() < 0.4:
        target, key = rng.choice(nested)
        target[key] = value
    else:
        ev[rng.choice(names)] = value


def _loads(line: bytes) -> dict | None:
    try:
        ev = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: a line an earlier mutation nested deeply
        return None
    return json.loads(json.dumps(ev)) if isinstance(ev, dict) else None  # a deep copy


def out_of_range(line: bytes, rng: random.Random) -> bytes:
    ev = _loads(line)
    if ev is None:
        return line
    _set_somewhere(ev, rng, NUMERIC_FIELDS, MARK)
    return _dumps_with(ev, rng.choice(BAD_NUMBERS))


def wrong_type(line: bytes, rng: random.Random) -> bytes:
    ev = _loads(line)
    if ev is None:
        return line
    _set_somewhere(ev, rng, NUMERIC_FIELDS + TEXT_FIELDS + ("range", "ops", "files", "packages", "detail",
                                                             "is_private", "has_code_action"), MARK)
    return _dumps_with(ev, rng.choice(OTHER_VALUES + BAD_NUMBERS[:4]))


def lone_surrogate(line: bytes, rng: random.Random) -> bytes:
    """A lone surrogate escaped (\\ud800) in a value or a key, any field."""
    ev = _loads(line)
    if ev is None:
        return line
    surrogate = rng.choice(["\ud800", "\udc00", "\udfff", "\udcff"])
    if rng.random() < 0.2:
        ev[f"k{surrogate}"] = 1
    else:
        name = rng.choice([k for k in TEXT_FIELDS if isinstance(ev.get(k), str)] or ["repl_id"])
        value = str(ev.get(name, "x"))
        at = rng.randrange(len(value) + 1)
        ev[name] = value[:at] + surrogate + value[at:]
    return json.dumps(ev, ensure_ascii=rng.random() < 0.5, separators=(",", ":")).encode("utf-8", "surrogatepass")


def invalid_utf8(line: bytes, rng: random.Random) -> bytes:
    """Bytes that are not UTF-8, inside one field's string (or anywhere in the line)."""
    bad = rng.choice(BAD_UTF8)
    fields = [f'"{name}":"'.encode() for name in TEXT_FIELDS if f'"{name}":"'.encode() in line]
    if fields and rng.random() < 0.8:
        at = line.index(rng.choice(fields))
        at = line.index(b':"', at) + 2
        at += rng.randrange(3)
    else:
        at = rng.randrange(len(line) + 1)
    return line[:at] + bad + line[at:]


def bad_escape(line: bytes, rng: random.Random) -> bytes:
    quotes = [i for i, c in enumerate(line) if c == 0x22]
    at = rng.choice(quotes) + rng.choice([0, 1]) if quotes else 0
    return line[:at] + rng.choice(ESCAPES) + line[at:]


def bit_flip(line: bytes, rng: random.Random) -> bytes:
    data = bytearray(line)
    for _ in range(rng.choice([1, 1, 2, 8])):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data).replace(b"\n", b" ")  # a flipped byte may not end the line


def truncate(line: bytes, rng: random.Random) -> bytes:
    return line[:rng.randrange(len(line))]


def deep_nesting(line: bytes, rng: random.Random) -> bytes:
    ev = _loads(line)
    if ev is None:
        return line
    depth = rng.choice([64, 1023, 1024, 1025, 5000, 100_000])
    opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
    _set_somewhere(ev, rng, ("detail", "ops", "range", "files", "x", "repl_id"), MARK)
    return _dumps_with(ev, opener * depth + "1" + closer * depth if rng.random() < 0.8 else opener * depth)


def odd_text(line: bytes, rng: random.Random) -> bytes:
    """Valid JSON text that is odd as a name: NUL, controls, U+2028, a BOM, escaped or not."""
    ev = _loads(line)
    if ev is None:
        return line
    name = rng.choice([k for k in TEXT_FIELDS if isinstance(ev.get(k), str)] or ["repl_id"])
    ev[name] = str(ev.get(name, "")) + rng.choice(["\x00", "\x01\x1f", "\u2028", "\ufeff", "\\", "'", "é😀", "\x7f"])
    return json.dumps(ev, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")


def drop_field(line: bytes, rng: random.Random) -> bytes:
    ev = _loads(line)
    if not ev:
        return line
    del ev[rng.choice(list(ev))]
    return json.dumps(ev, ensure_ascii=False).encode("utf-8", "surrogatepass")


LINE_MUTATIONS = {f.__name__: f for f in (out_of_range, wrong_type, lone_surrogate, invalid_utf8, bad_escape,
                                          bit_flip, truncate, deep_nesting, odd_text, drop_field)}
# twin: the same seq with other content; respelled: the same event in other bytes (a duplicate)
FILE_MUTATIONS = ("duplicate", "swap", "twin", "respelled")
MUTATIONS = tuple(LINE_MUTATIONS) + FILE_MUTATIONS


def mutate(lines: list[bytes], name: str, rng: random.Random) -> None:
    """Apply one mutation to a random line (or two) of lines, in place."""
    i = rng.randrange(len(lines))
    if not lines[i]:  # truncated to nothing earlier: now a blank line, which readers skip
        return
    if name == "duplicate":
        lines.insert(rng.randrange(len(lines) + 1), lines[i])
    elif name == "swap":
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif name == "twin":
        ev = _loads(lines[i])
        if ev is not None:
            ev["ts"] = "2030-01-01T00:00:00.000000Z"
            lines.insert(rng.randrange(len(lines) + 1), json.dumps(ev).encode())
    elif name == "respelled":
        ev = _loads(lines[i])
        if ev is not None:
            keys = list(ev)
            rng.shuffle(keys)
            absent = [k for k in ("crc32", "user_id", "detail", "session_id", "extra") if k not in ev]
            if absent and rng.random() < 0.5:  # a null field is the same as an absent one
                null = rng.choice(absent)
                ev[null] = None
                keys.insert(rng.randrange(len(keys) + 1), null)
            lines.insert(rng.randrange(len(lines) + 1),
                         json.dumps({k: ev[k] for k in keys}, ensure_ascii=True, indent=None).encode())
    else:
        lines[i] = LINE_MUTATIONS[name](lines[i], rng)


@functools.cache
def session() -> tuple[bytes, ...]:
    """A small simulated session (two repls, every kind), as write_jsonl writes it."""
    events = simulate(2, seed=21)
    return tuple(json.dumps(ev, ensure_ascii=False, separators=(",", ":")).encode() for ev in events)


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def counted_lines(lines: list[bytes]) -> int:
    """Records ingest will see: lines that are not blank (as iter_lines reads them)."""
    return sum(1 for line in b"\n".join(lines).split(b"\n") if line.rstrip(b"\r").strip())


FOLDED = ("ot", "file")  # the kinds the fold checks against the events before them


def _claims(line: bytes) -> list[tuple[str, int, object, object, dict | None]]:
    """(repl_id, seq, kind, path, event) that a line which is not a session line may be stored under, read as
    leniently as any reader could: bad bytes and control characters allowed; if it is not JSON, every
    repl_id and seq its text names (kind and path too where it names one of each, else None: unknown)."""
    try:
        ev = json.loads(line.decode("utf-8", "surrogateescape"), strict=False)
    except (ValueError, RecursionError):
        ev = None
    if isinstance(ev, dict):
        seq = ev.get("seq")
        if isinstance(seq, float) and seq.is_integer():
            seq = int(seq)
        if isinstance(ev.get("repl_id"), str) and isinstance(seq, int) and not isinstance(seq, bool):
            return [(ev["repl_id"], seq, ev.get("kind"), ev.get("path"), ev)]
        return []
    kinds = set(re.findall(rb'"kind"\s*:\s*"(\w+)"', line))
    paths = set(re.findall(rb'"path"\s*:\s*"([^"\\]*)"', line))
    kind = kinds.pop().decode() if len(kinds) == 1 else None
    path = paths.pop().decode(errors="replace") if len(paths) == 1 else None
    return [(repl_id.decode(errors="replace"), int(seq), kind, path, None)
            for repl_id in set(re.findall(rb'"repl_id"\s*:\s*"([^"\\]*)"', line))
            for seq in set(re.findall(rb'"seq"\s*:\s*(\d+)', line))]


def _same(a: dict, b: dict) -> bool:
    """The same event: a null field is an absent one."""
    return {k: v for k, v in a.items() if v is not None} == {k: v for k, v in b.items() if v is not None}


def expected_stored(lines: list[bytes]) -> dict[tuple[str, int], dict]:
    """The session events ingest must store from these lines, by (repl_id, seq), worked out without ingest.

    A session line still in the file byte for byte must be stored, unless another line may take its
    (repl_id, seq) with other content (a twin, a damaged line whose seq now names it), or it is an ot or file
    event that the fold may refuse because of damage before it: from the first damaged or foreign ot event of
    a path, that path's later events; from a damaged or foreign file event (or one whose kind or path cannot be
    read), all the repl's later ot and file events; from the first file event after any such damage, too.
    """
    session_events = {line: json.loads(line) for line in session()}
    by_key = {(ev["repl_id"], ev["seq"]): ev for ev in session_events.values()}
    present = set(lines)
    claimed: set[tuple[str, int]] = set()
    repl_from: dict[str, float] = defaultdict(lambda: float("inf"))  # all the repl's folded events from this seq
    path_from: dict[tuple[str, str], float] = defaultdict(lambda: float("inf"))

    def damage(repl_id: str, seq: int, kind: object, path: object) -> None:
        if kind == "ot" and isinstance(path, str):
            path_from[repl_id, path] = min(path_from[repl_id, path], seq)
        elif kind in FOLDED or not isinstance(kind, str):  # a file event, or one that may be either
            repl_from[repl_id] = min(repl_from[repl_id], seq)

    for line, ev in session_events.items():
        if line not in present:  # damaged: what it was is missing
            damage(ev["repl_id"], ev["seq"], ev["kind"], ev.get("path"))
    for line in present - set(session_events):
        for repl_id, seq, kind, path, ev in _claims(line):
            if ev is not None and (repl_id, seq) in by_key and _same(ev, by_key[repl_id, seq]):
                continue  # the same event in other bytes: a duplicate
            claimed.add((repl_id, seq))
            damage(repl_id, seq, kind, path)
    for repl_id in {r for r, _ in path_from} | set(repl_from):
        first = min([repl_from[repl_id]] + [s for (r, _), s in path_from.items() if r == repl_id])
        moves = [ev["seq"] for ev in by_key.values() if ev["repl_id"] == repl_id and ev["kind"] == "file"
                 and ev["seq"] > first]
        repl_from[repl_id] = min([repl_from[repl_id], *moves])  # a file event may move or remove a damaged path
    expected = {}
    for line, ev in session_events.items():
        key = (ev["repl_id"], ev["seq"])
        if line not in present or key in claimed:
            continue
        if ev["kind"] in FOLDED:
            paths = [s for (r, _), s in path_from.items() if r == key[0]] if ev["kind"] == "file" \
                else [path_from[key[0], ev["path"]]]
            if key[1] >= min([repl_from[key[0]], *paths]):
                continue
        expected[key] = ev
    return expected


def assert_whole_lines_stored(wh: Warehouse, lines: list[bytes]) -> int:
    """Every event expected_stored names is in `events`, kind and content as written; how many."""
    expected = expected_stored(lines)
    stored = {(r, s): (kind, event) for r, s, kind, event in
              wh.con.execute("SELECT repl_id, seq, kind, event FROM events").fetchall()}
    missing = sorted(key for key in expected if key not in stored)
    assert not missing, f"{len(missing)} undamaged line(s) not stored, first {missing[:5]}"
    for key, ev in expected.items():
        kind, event = stored[key]
        assert kind == ev["kind"] and _same(json.loads(event), ev), (key, event)
    return len(expected)


def ingest_twice(home: Path, f: Path, lines: list[bytes], chunk_records: int = 200_000) -> tuple[IngestReport, int]:
    """Ingest f (written from lines), check the reconciliation and that the whole lines are stored, ingest it
    again: nothing may change. The first report, and how many whole lines had to be stored."""
    records = counted_lines(lines)
    with Warehouse(home) as wh:
        first = ingest_files(wh, [f], chunk_records=chunk_records)
        assert first.balanced(), first.summary()
        assert first.records_in == records
        if not first.repls_rebuilt:  # (a rebuild, after a late event in a later chunk, restages stored rows)
            stored, quarantined = wh.con.execute(
                "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM quarantine)").fetchone()
            # quarantine keys are per distinct record: a repeated bad line is counted as already quarantined
            assert (stored, quarantined) == (first.stored, first.quarantined)
        whole = assert_whole_lines_stored(wh, lines)
        before = dump(wh)
        second = ingest_files(wh, [f], chunk_records=chunk_records)
        assert second.balanced(), second.summary()
        assert (second.stored, second.quarantined, second.repls_rebuilt) == (0, 0, 0), second.summary()
        assert second.duplicates + second.already_quarantined == records
        assert dump(wh) == before
        runs = [(status, json.loads(r)) for status, r in wh.con.execute(
            "SELECT status, reconciliation FROM runs ORDER BY started_at").fetchall()]
        assert [status for status, _ in runs] == ["done", "done"]
        assert all(r["in"] == r["out"] + sum(r["dropped"].values()) + r["quarantined"] for _, r in runs), runs
    return first, whole


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(MUTATIONS), st.randoms(use_true_random=False)), min_size=1, max_size=8),
       st.sampled_from([200_000, 50]))
def test_mutated_sessions_ingest_balanced_and_idempotent(tmp_path_factory, mutations, chunk_records):
    lines = list(session())
    for name, rng in mutations:
        mutate(lines, name, rng)
    tmp = tmp_path_factory.mktemp("fuzz")
    f = write(tmp / "in.jsonl", lines)
    ingest_twice(tmp / "wh", f, lines, chunk_records)


@pytest.mark.parametrize("name", MUTATIONS)
def test_each_mutation_many_times(tmp_path, name):
    """A deterministic batch: 40 mutations of one kind in one file."""
    rng = random.Random(f"otlake-{name}")
    lines = list(session())
    for _ in range(40):
        mutate(lines, name, rng)
    f = write(tmp_path / "in.jsonl", lines)
    report, whole = ingest_twice(tmp_path / "wh", f, lines)
    if name in ("duplicate", "respelled"):  # the same events again, in the same or other bytes
        assert (report.stored, report.duplicates, report.quarantined) == (len(session()), 40, 0), report.summary()
    if name in ("duplicate", "respelled", "swap"):  # nothing damaged: every session line must be stored
        assert whole == len(session())


def test_the_cli_reports_a_damaged_file_without_a_traceback(tmp_path, monkeypatch):
    rng = random.Random(7)
    lines = list(session())
    for _ in range(60):
        mutate(lines, rng.choice(MUTATIONS), rng)
    f = write(tmp_path / "in.jsonl", lines)
    monkeypatch.setenv("OTLAKE_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(main, ["ingest", str(f)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and result.exception is None
    assert f"in {counted_lines(lines)} = stored " in result.output
    again = CliRunner().invoke(main, ["ingest", str(f)])
    assert again.exit_code == 0 and "stored 0 + " in again.output and " + quarantined 0 + " in again.output
    with Warehouse(tmp_path / "home", read_only=True) as wh:
        assert assert_whole_lines_stored(wh, lines) > 0


# -- lines that crashed ingest before (the whole chunk was lost) ---------------------------------------

LINE = ('{"repl_id":"%s","seq":2,"ts":"2024-03-01T12:00:00.000000Z","kind":"%s","path":"%s","action":"cursor",'
        '"%s":1}')


def line(repl_id="r1", kind="editor", path="a.py", key="x") -> bytes:
    return (LINE % (repl_id, kind, path, key)).encode("utf-8", "surrogateescape")  # \udcff: the byte 0xff


@pytest.mark.parametrize("bad, kind, message", [
    (line(repl_id="r\\ud800"), "invalid_unicode", "repl='r\\ud800' seq=2 path='a.py': event.repl_id holds a lone surrogate"),
    (line(repl_id="r\\udc00x"), "invalid_unicode", "event.repl_id holds a lone surrogate"),
    (line(path="a\\ud800.py"), "invalid_unicode", "event.path holds a lone surrogate"),
    (line(kind="edit\\udfffor"), "invalid_unicode", "event.kind holds a lone surrogate"),
    (line(key="k\\ud800"), "invalid_unicode", "event key 'k\\ud800' holds a lone surrogate"),
    (line(repl_id="r\udcff"), "invalid_unicode", "event.repl_id holds bytes that are not UTF-8 (first: 0xff at byte offset 13 of the line"),
    (line(path="a\udced\udca0\udc80"), "invalid_unicode", "event.path holds bytes that are not UTF-8 (first: 0xed"),
    (line(kind="ed\udcc0\udc80itor"), "invalid_unicode", "event.kind holds bytes that are not UTF-8 (first: 0xc0"),
    (line() + b"\xff", "malformed_json", "not valid JSON: Extra data"),
])
def test_text_that_is_not_unicode_is_quarantined_in_any_field(tmp_path, bad, kind, message):
    good = line(repl_id="r0")
    f = write(tmp_path / "in.jsonl", [good, bad])
    with Warehouse(tmp_path / "wh") as wh:
        report = ingest_files(wh, [f])
        assert (report.stored, report.quarantined) == (1, 1), report.summary()
        ((error_kind, key, repl_id, got, raw),) = wh.con.execute(
            "SELECT error_kind, key, repl_id, message, raw FROM quarantine").fetchall()
        assert error_kind == kind and message in got, got
        # what was not text is stored as backslash escapes: every column is printable UTF-8
        assert raw == bad.decode("utf-8", "backslashreplace")
        assert key.isprintable() and got.isprintable() and (repl_id is None or repl_id.isprintable())
        again = ingest_files(wh, [f])
        assert (again.stored, again.duplicates, again.quarantined, again.already_quarantined) == (0, 1, 0, 1)


def test_op_lists_orjson_cannot_write_break_their_file(tmp_path):
    """Nested past orjson's 255 levels, counts past 64 bits or infinite: refused by the fold, not a crash."""
    base = '{"repl_id":"r","seq":%d,"ts":"2024-03-01T12:00:0%d.000000Z","kind":"ot","path":"%s","version":%d,"ops":%s}'
    lines = [base % (1, 1, "a.py", 1, '[{"insert":"ab"}]'),
             base % (2, 2, "a.py", 2, "[" * 300 + "]" * 300),
             base % (3, 3, "b.py", 1, '[{"insert":"ab"},{"skip":18446744073709551616}],"x":NaN'),
             base % (4, 4, "c.py", 1, '[{"skip":1e400}]'),
             base % (5, 5, "a.py", 3, '[{"insert":"c"}]')]
    with Warehouse(tmp_path / "wh") as wh:
        report = ingest_files(wh, [write(tmp_path / "in.jsonl", [x.encode() for x in lines])])
        assert (report.stored, report.quarantined) == (1, 4), report.summary()
        got = wh.con.execute("SELECT seq, error_kind, message FROM quarantine ORDER BY seq").fetchall()
        assert [(seq, kind) for seq, kind, _ in got] == [
            (2, "unknown_op"), (3, "wrong_type"), (4, "wrong_type"), (5, "after_broken_packet")]
        assert "op #1 skip must be a non-negative integer, got 1.8446744073709552e+19" in got[1][2]
        assert "op #0 skip must be a non-negative integer, got 'inf'" in got[2][2]


def test_python_events_without_a_json_form_are_quarantined(wh):
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    ok = {"repl_id": "r", "seq": 1, "ts": "2024-03-01T12:00:00Z", "kind": "shell", "command": "ls"}
    events = [ok, {**ok, "seq": 2, "x": deep}, {**ok, "seq": 3, "x": b"bytes"}, {**ok, "seq": 4, "repl_id": "r\ud800"},
              {**ok, "seq": 5, "x": {"k\udc00": deep}}, 5, ["not", "an", "event"]]
    report = ingest_events(wh, events)
    assert report.balanced() and (report.stored, report.quarantined) == (1, 6), report.summary()
    got = wh.con.execute("SELECT seq, error_kind, message, raw FROM quarantine ORDER BY origin").fetchall()
    assert [(seq, kind) for seq, kind, _, _ in got] == [
        (2, "wrong_type"), (3, "wrong_type"), (4, "invalid_unicode"), (5, "invalid_unicode"),
        (None, "wrong_type"), (None, "wrong_type")]
    assert "cannot be written as JSON" in got[0][2] and "bytes" in got[1][2]
    assert got[2][3].startswith('{"repl_id":"r\\ud800"')  # its JSON text, the surrogate escaped
    assert all(raw.isprintable() for _, _, _, raw in got)


def test_a_file_name_that_is_not_utf8(tmp_path):
    """Origins and the run's parameters are stored: the name is escaped there, the file read as usual."""
    f = write(tmp_path / os.fsdecode(b"in\xff.jsonl"), [line(repl_id="r0"), b"{oops"])
    with Warehouse(tmp_path / "wh") as wh:
        report = ingest_files(wh, [f])
        assert (report.stored, report.quarantined) == (1, 1)
        (origin,) = wh.con.execute("SELECT origin FROM quarantine").fetchone()
        assert origin == str(tmp_path / "in\\udcff.jsonl:2")
        assert wh.con.execute("SELECT params->>'$.files[0]' FROM runs").fetchone() == (str(tmp_path / "in\\udcff.jsonl"),)
