"""The compiled fast lane (native/scan.c via warehouse.scan_native) against the Python lane.

The Python lane (decode_record + validate_event + staged_row) is the oracle: every line the scanner
accepts must be accepted there with the same values; lines it refuses are merely slower.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import random
import sys

import numpy as np
import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.errors import BadEvent
from events.schema import FIELDS
from events.simulator import long_session, simulate
from events.validate import validate_event
from otlake.stages import ingest_events, ingest_files
from warehouse import _scan
from warehouse.scan_native import SCHEMA, scan_lines
from warehouse.stage import (
    FAST_KINDS,
    STAGED,
    content_hash,
    decode_record,
    staged_row,
)
from warehouse.store import Warehouse

from .conftest import Log, write_jsonl
from .test_fast_lane import dump

TS = "2024-03-01T13:00:00.000000Z"
# the kinds the scanner takes (snapshot and package_install are staged with the common columns only)
SCAN_KINDS = FAST_KINDS


def dumps(ev: dict, **kw) -> bytes:
    """A line as events.simulator.write_jsonl writes it (unless told otherwise)."""
    kw.setdefault("ensure_ascii", False)
    kw.setdefault("separators", (",", ":"))
    return json.dumps(ev, **kw).encode()


def lines_table(lines: list[bytes], nos: list[int] | None = None, batch: int = 4096) -> pa.Table:
    """(line_no, line) built as ingest._lines_table builds it: Arrow-checked UTF-8, record batches."""
    nos = list(range(1, len(lines) + 1)) if nos is None else nos
    offsets = np.zeros(len(lines) + 1, np.int64)
    np.cumsum([len(x) for x in lines], out=offsets[1:])
    arr = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(lines),
                                           [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(lines))])
    table = pa.table({"line_no": pa.array(nos, pa.int64()), "line": arr.cast(pa.large_string())})
    return pa.Table.from_batches(table.to_batches(max_chunksize=batch), schema=table.schema)


def python_lane(line: bytes, line_no: int) -> dict | None:
    """The staged row the slow lane makes of a line (origin left out), or None if it refuses it."""
    try:
        record = decode_record(line, "x")
    except RecursionError:  # json.loads (orjson's fallback) on a line nested too deep
        return None
    if record.error is not None:
        return None
    try:
        ev = validate_event(record.event, record.trusted, ops=False)
        row = staged_row(ev, line_no, "x", line.decode(), content_hash(line))
    except (BadEvent, TypeError):  # TypeError: staged_row cannot dump the ops (e.g. inf): not storable
        return None
    del row["origin"]
    return row


def same_row(mine: dict, ref: dict) -> bool:
    mine, ref = dict(mine), dict(ref)
    ops_mine, ops_ref = mine.pop("ops"), ref.pop("ops")
    if (ops_mine is None) != (ops_ref is None):
        return False
    # the scanner keeps the ops text as written; the fold parses it with orjson
    return mine == ref and (ops_mine is None or orjson.loads(ops_mine) == orjson.loads(ops_ref))


def check(lines: list[bytes], threads: int = 2) -> tuple[set[int], set[int]]:
    """Scan lines; assert no false accept and equal values. Returns (accepted, python-accepted) indexes."""
    table, slow = scan_lines(lines_table(lines), threads=threads)
    assert table.schema == SCHEMA
    rows = table.to_pylist()
    accepted = {row["line_no"] - 1 for row in rows}
    assert [row["line_no"] - 1 for row in rows] == sorted(accepted)  # input order
    assert sorted(set(range(1, len(lines) + 1)) - {i + 1 for i in accepted}) == slow
    python_ok = set()
    for i, line in enumerate(lines):
        if python_lane(line, i + 1) is not None:
            python_ok.add(i)
    for row in rows:
        i = row["line_no"] - 1
        ref = python_lane(lines[i], i + 1)
        assert ref is not None, f"false accept: {lines[i][:300]!r}"
        assert same_row(row, ref), f"values differ for {lines[i][:300]!r}:\n{row}\n{ref}"
    return accepted, python_ok


# -- the simulator's lines: all fast, same values as the Python lane ------------------------

@pytest.fixture(scope="module")
def sim_lines() -> list[bytes]:
    events = simulate(20, seed=11) + long_session(3000, seed=5)
    return [dumps(ev) for ev in events]


def test_every_simulated_line_of_a_scanned_kind_is_accepted_with_python_values(sim_lines):
    accepted, python_ok = check(sim_lines)
    kinds = [orjson.loads(line)["kind"] for line in sim_lines]
    fast = {i for i, kind in enumerate(kinds) if kind in SCAN_KINDS}
    assert accepted == fast
    assert fast <= python_ok
    assert {"snapshot", "package_install"} <= {kinds[i] for i in accepted}


def test_threads_and_chunking_do_not_change_the_result(sim_lines):
    one, slow_one = scan_lines(lines_table(sim_lines, batch=len(sim_lines)), threads=1)
    assert one.num_rows > 0
    for threads, batch in ((2, 4096), (3, 1000), (16, 7)):
        table, slow = scan_lines(lines_table(sim_lines, batch=batch), threads=threads)
        assert slow == slow_one and table.equals(one)
    # record batches of a given number of lines (ingest asks for a row group's worth)
    for threads, batch_lines in ((2, 1000), (1, 4096), (3, 1)):
        table, slow = scan_lines(lines_table(sim_lines, batch=3000), threads=threads, batch_lines=batch_lines)
        assert slow == slow_one and table.equals(one)
        sizes = [b.num_rows for b in table.to_batches()]
        assert max(sizes) <= batch_lines and len(sizes) == -(-len(sim_lines) // batch_lines)
    with pytest.raises(ValueError, match="part_lines"):
        _scan.scan([], 1, -1)
    # a sliced table: Arrow arrays with a non-zero offset
    sliced = lines_table(sim_lines).slice(1000, 2000)
    table, slow = scan_lines(sliced)
    want = one.filter(pa.compute.is_in(one["line_no"], sliced["line_no"]))
    assert table.equals(want) and len(slow) + table.num_rows == 2000


def test_snapshots_and_package_installs_store_what_the_python_lane_stores(tmp_path):
    """End to end: the scanner's snapshot and package_install rows give the tables the Python lane gives."""
    log = Log()
    log.type("main.py", "print('é😀')\n")
    log.add("package_install", packages=["numpy", "é"], manager="pip", status="success")
    log.add("package_install", packages=[], manager=None, path="main.py")
    log.snapshot()
    log.add("snapshot", files={"main.py": "x", "src/a b.py": "\"\\\n\t"}, path="src")
    log.add("snapshot", files={"a//b.py": "x"})  # valid, but normalize_path changes the key: slow lane
    log.add("package_install", packages=["a", 1])  # invalid: quarantined by the slow lane
    f = write_jsonl(tmp_path / "in.jsonl", log.events)
    with Warehouse(tmp_path / "fast") as fast, Warehouse(tmp_path / "slow") as slow:
        fast_report = ingest_files(fast, [f])
        slow_report = ingest_events(slow, log.events)
        assert fast_report.slow_lane == 2 and slow_report.slow_lane == len(log.events)
        assert fast_report.stored == slow_report.stored == len(log.events) - 1
        assert fast_report.quarantined == slow_report.quarantined == 1
        assert dump(fast) == dump(slow)


# -- hand-picked lines ----------------------------------------------------------------------------------

def ev(kind: str, **fields) -> dict:
    return {"repl_id": "r1", "seq": 50, "ts": TS, "kind": kind, "session_id": "s1", "user_id": 7, **fields}


OT = ev("ot", path="main.py", version=1, ops=[{"skip": 1}, {"insert": "x"}], crc32=5, author="USER", nonce=1)
LSP = ev("lsp_diagnostic", path="a.py", range={"start": {"line": 0, "character": 1}, "end": {"line": 2, "character": 3}},
         severity=2, code="E1", message="m", has_code_action=True)
BASES = [
    ev("repl", language="python3", is_private=False, owner="ada", title="démo 😀"),
    OT,
    ev("ot", path="a/b.py", version=4294967295, ops=[], spooky_version=None, crc32=None, author=None, nonce="n"),
    ev("file", op="create", path="src/util.py"),
    ev("file", op="move", path="src/util.py", dest="lib/util.py"),
    ev("file", op="remove", path="x.py", dest=None),
    LSP,
    ev("lsp_diagnostic", path="a.py", range={"start": {"line": 1, "character": 0}, "end": {"line": 1, "character": 9}},
       severity=4, code=None, message="n"),
    ev("run", command="python main.py", exit_code=0, output_tail="ok"),
    ev("shell", command="ls", path="src"),
    ev("editor", action="cursor", path="main.py", detail={"a": [1, 2.5, None, True], "b": {"c": "d"}}),
    ev("editor", action="x", path=None, detail=1.5),
    ev("snapshot", files={"a.py": "x", "src/é 😀.py": "line\n\"q\"\\ \u2028", "...": "", "ab:c": "é"}),
    ev("package_install", packages=["numpy", "é😀", ""], manager="pip", status=None),
]
SNAPSHOT, PACKAGES = BASES[-2], BASES[-1]


def raw(text: str) -> bytes:
    return text.encode()


PLAIN = '{"repl_id":"r1","seq":50,"ts":"%s","kind":"shell","command":"ls"%s}'

ACCEPT = [
    dumps(b) for b in BASES] + [
    raw(PLAIN % ("2024-02-29T00:00:00.000000Z", "")),  # leap day
    raw(PLAIN % ("2000-02-29T23:59:59.999999Z", "")),
    raw(PLAIN % ("0001-01-01T00:00:00.000000Z", "")),
    raw(PLAIN % ("9999-12-31T23:59:59.999999Z", "")),
    raw(PLAIN % (TS, ',"x":[1,-2.5e-3,{"a":{"a":null}},"\\u00e9"] ,"y":{"k":1,"k":2}')),  # repeats below top level
    raw(PLAIN % (TS, ',"path":"a\\/b","session_id":"s\\u0000\\n\\"\\\\"')),  # escapes decoded
    raw(PLAIN % (TS, ',"path":"\u00e9/\u00e9","user_id":null,"session_id":null')),
    raw(PLAIN % (TS, ',"path":"ab:c","nonce":-1,"version":"v","range":7')),  # fields of other kinds: not read
    raw(PLAIN % (TS, ',"path":"...","x":1E+99,"z":123456789012345678')),
    raw(PLAIN % (TS, "") + " \t\r\n"),  # trailing whitespace
    raw(PLAIN.replace(":", " : ").replace(",", " ,\t") % (TS, "")),
    raw(PLAIN % (TS, ',"x":' + "[" * 63 + "]" * 63)),  # MAX_DEPTH (64) levels, the line's own object included
    dumps(ev("shell", command="é😀\u2028", seq=10**18 - 1, user_id=0)),
    dumps(ev("shell", command="x"), ensure_ascii=True),
    dumps({**OT, "ops": [{"insert": "a\"\\\n\té"}, {"skip": 0}, {"delete": 10**18 - 1}]}, ensure_ascii=True),
    dumps({**LSP, "range": {"x": 1, "start": {"line": 999999999, "character": 0, "y": [1]},
                            "end": {"line": 0, "character": 0}}}),
    dumps({**LSP, "has_code_action": None}),
    dumps(ev("run", command="x", exit_code=999999999)),
    # snapshot: files an object of clean paths to strings; path, if any, a clean string
    dumps(ev("snapshot", files={})), dumps(ev("snapshot", files={}, path="a/b", x={"files": 1})),
    dumps(ev("snapshot", files={"a": "x"}, path=None, packages=5, manager=[])),  # other kinds' fields: not read
    dumps({**SNAPSHOT, "files": {"a": "\x00\té\u2028", "b": "x" * 100_000}}, ensure_ascii=True),  # escapes in values
    raw(dumps(SNAPSHOT).decode().replace('"files":{', '"files" : {\t"f" :\r"\\u00e9\\/" ,')),
    dumps(ev("snapshot", files={f"d/f{i}.py": str(i) for i in range(1024)})),  # MAX_SNAPSHOT_FILES
    dumps(ev("snapshot", files={"a": "1", "a/b": "2", "b/a": "3", "ab": "4", "a.": "5", ".a": "6", "a..": "7"})),
    # package_install: packages a list of strings
    dumps(ev("package_install", packages=[])), dumps(ev("package_install", packages=["a"], manager=None, status="ok")),
    dumps(ev("package_install", packages=["a\"\\\n", "é"], path="a/b.txt"), ensure_ascii=True),
    raw(dumps(PACKAGES).decode().replace('"packages":[', '"packages":[ "x" ,\t"y",')),
    raw(dumps(ev("package_install", packages=[])).decode().replace("[]", "[ \t ]")),
]

REFUSE = [
    b"", b"{", b"}", b"{}", b"[]", b"null", b" " + ACCEPT[0], b"\t" + ACCEPT[0], ACCEPT[0] + b"x",
    ACCEPT[0] + b"\x00", ACCEPT[0][:-1], ACCEPT[0] + b"{}",
    # the lines of tests/test_fast_lane.py that must take the slow lane
    b'{"repl_id":"r1","seq":50,"ts":"2024-03-01T13:00:00.000000Z","kind":"shell","command":"ls","seq":"x"}',
    b'{"repl_id":"r1","seq":50,"ts":"2024-03-01T13:00:00.000000Z","kind":"shell","command":"ls","command":5}',
    (b'{"repl_id":"r1","seq":50,"ts":"2024-03-01T13:00:00.000000Z","kind":"lsp_diagnostic","path":"a.py",'
     b'"range":{"start":{"line":0,"character":0,"line":-1},"end":{"line":0,"character":1}},"severity":1,'
     b'"code":null,"message":"m"}'),
    b'{"repl_id":"r1","seq":50,"ts":"2024-02-30T13:00:00.000000Z","kind":"shell","command":"ls"}',
    b'{"repl_id":"r1","seq":50,"ts":"2024-03-01T13:00:00.000000Z","kind":"repl","is_private":1}',
    b'{"repl_id":"","seq":50,"ts":"2024-03-01T13:00:00.000000Z","kind":"shell","command":"ls"}',
    (b'{"repl_id":"r1","seq":50,"ts":"2024-03-01T13:00:00.000000Z","kind":"ot","path":"a.py","version":1,'
     b'"ops":[],"crc32":4294967296}'),
    (b'{"repl_id":"r1","seq":50,"ts":"2024-03-01T13:00:00.000000Z","kind":"ot","path":"../a.py","version":1,'
     b'"ops":[]}'),
    b'{"repl_id":"r1","seq":50,"ts":"2024-03-01T13:00:00.000000Z","kind":"run","command":"ls","path":5}',
    b'{"repl_id":"r1","seq":50,"ts":"2024-03-01T13:00:00.000000Z","kind":"shell","command":"ls","path":"/etc"}',
    # dates and times
    *(raw(PLAIN % (ts, "")) for ts in (
        "2023-02-29T00:00:00.000000Z", "1900-02-29T00:00:00.000000Z", "2024-04-31T00:00:00.000000Z",
        "2024-03-01T24:00:00.000000Z", "2024-03-01T23:60:00.000000Z", "2024-03-01T23:00:60.000000Z",
        "0000-01-01T00:00:00.000000Z", "2024-13-01T00:00:00.000000Z", "2024-00-10T00:00:00.000000Z",
        "2024-03-01T13:00:00Z", "2024-03-01T13:00:00.000000+00:00", "2024-03-01t13:00:00.000000z",
        "2024-03-01 13:00:00.000000Z", "2024-03-01T13:00:00.0000000Z", "\\u0032024-03-01T13:00:00.000000Z",
        "٢٠٢٤-03-01T13:00:00.000000Z")),
    # surrogates, escapes, control characters
    *(raw(PLAIN % (TS, extra)) for extra in (
        ',"x":"\\ud800"', ',"x":"\\udfff"', ',"x":"\\ud83d\\ude00"', ',"x":{"\\uD834\\uDD1E":1}',
        ',"command":"x"', ',"x":"\t"', ',"x":"\\x"', ',"x":"\\u12"', ',"x":"\\u12G4"',
        ',"ki\\u006ed":"shell"', ',"x":1,"x":2', ',"x":NaN', ',"x":Infinity', ',"x":01', ',"x":1.', ',"x":.5',
        ',"x":1e', ',"x":-', ',"x":+1', ',"x":1e400', ',"x":1e100', ',"x":1234567890123456789', ',"x":tru',
        ',"x":[1,]', ',"x":{"a":1,}', ',', ',"x"', ',"x":', ',"x":[', ',"x":"',
        ',"x":' + "[" * 64 + "]" * 64,  # one level too deep
        ',"x":' + "[" * 100000 + "]" * 100000,
        ',"path":""', ',"path":"a//b"', ',"path":"a/"', ',"path":"./a"', ',"path":"a/."', ',"path":"a/../b"',
        ',"path":".."', ',"path":"\\\\a"', ',"path":"C:a"', ',"path":"\u00e9:a"', ',"path":"1:a"',
        ',"path":"a\\u0000b"', ',"path":"\\/etc"', ',"path":"a\\/\\/b"', ',"path":null,"path":"a"',
        ',"path":["a"]', ',"session_id":1', ',"user_id":"7"', ',"user_id":-7', ',"user_id":7.0',
        ',"user_id":true', ',"user_id":1234567890123456789',
    )),
    # kinds and their fields
    dumps({**OT, "kind": "OT"}), dumps({**OT, "kind": None}), dumps({k: v for k, v in OT.items() if k != "kind"}),
    dumps({**OT, "repl_id": 5}), dumps({**OT, "seq": -1}), dumps({**OT, "seq": 1.0}), dumps({**OT, "seq": 10**18}),
    dumps({**OT, "seq": None}), dumps({**OT, "ts": None}), dumps({k: v for k, v in OT.items() if k != "ts"}),
    dumps({**OT, "version": 2**32}), dumps({**OT, "version": -1}), dumps({**OT, "version": None}),
    dumps({**OT, "ops": {}}), dumps({**OT, "ops": None}), dumps({**OT, "crc32": True}),
    dumps({**OT, "author": 5}), dumps({**OT, "nonce": 1.5}), dumps({**OT, "spooky_version": "1"}),
    dumps({**OT, "path": None}), dumps({k: v for k, v in OT.items() if k != "path"}),
    raw('{"repl_id":"r1","seq":1,"ts":"' + TS + '","kind":"ot","path":"a","version":1,"ops":[{"skip":1e400}]}'),
    dumps(ev("file", op="copy", path="a")), dumps(ev("file", op="move", path="a")),
    dumps(ev("file", op="move", path="a", dest="")), dumps(ev("file", op="move", path="a", dest="../b")),
    dumps(ev("file", op="move", path="a", dest="b/")), dumps(ev("file", op="create", path="a", dest=5)),
    dumps(ev("file", op="cr\u0065ate", path="a", dest=5)), dumps(ev("file", op=None, path="a")),
    dumps({**LSP, "severity": 0}), dumps({**LSP, "severity": 5}), dumps({**LSP, "severity": True}),
    dumps({**LSP, "severity": 10}), dumps({**LSP, "code": 5}), dumps({**LSP, "message": None}),
    dumps({**LSP, "has_code_action": 1}), dumps({**LSP, "range": []}),
    dumps({**LSP, "range": {"start": {"line": 0, "character": 0}}}),
    dumps({**LSP, "range": {"start": {"line": 0}, "end": {"line": 0, "character": 0}}}),
    dumps({**LSP, "range": {"start": {"line": 10**9, "character": 0}, "end": {"line": 0, "character": 0}}}),
    dumps({**LSP, "range": {"start": {"line": -1, "character": 0}, "end": {"line": 0, "character": 0}}}),
    dumps({**LSP, "range": {"start": [0, 0], "end": {"line": 0, "character": 0}}}),
    raw(dumps(LSP).decode().replace('"end"', '"x":1,"x":2,"end"')),
    raw(dumps(LSP).decode().replace('"end"', '"start":{"line":0,"character":0},"end"')),
    raw(dumps(LSP).decode().replace('"line":2', '"z":1,"z":1,"line":2')),
    raw(dumps(LSP).decode().replace('"line":2', '"li\\u006ee":2')),
    dumps(ev("repl", is_private=None)), dumps(ev("repl", is_private="false")), dumps(ev("repl")),
    dumps(ev("repl", is_private=True, title=1)),
    dumps(ev("run", command="x", exit_code=-1)), dumps(ev("run", command="x", exit_code=10**9)),
    dumps(ev("run", command=None)), dumps(ev("shell", command=["ls"])), dumps(ev("editor", action=None)),
    dumps(ev("editor", action="x", path=5)),
    # snapshot: a files key normalize_path would change or refuse, written with escapes, repeated; a value or
    # files itself not a string / object; a path that is not a clean string (Python takes any, unchecked)
    *(dumps(ev("snapshot", files={"a.py": "x", key: "y"})) for key in (
        "../x", "/abs", "a//b", "a/./b", "", "a/", "./a", ".", "..", "a/..", "\\a", "C:x", "é:x", "1:x",
        "a\x00b", "\x00")),
    dumps(ev("snapshot", files={"é": "x"}), ensure_ascii=True),  # an escaped key
    raw(dumps(ev("snapshot", files={"a": "x", "b": "y"})).decode().replace('"b"', '"\\u0062"')),
    raw(dumps(ev("snapshot", files={"a/b": "x"})).decode().replace('"a/b"', '"a\\/b"')),
    raw(dumps(ev("snapshot", files={"a": "x", "b": "y"})).decode().replace('"b"', '"a"')),  # repeated key
    raw(dumps(ev("snapshot", files={"a": 1, "b": "y"})).decode().replace('"b"', '"a"')),  # orjson keeps "y"
    raw(dumps(ev("snapshot", files={"a": "x", "b": "y", "c": "z"})).decode().replace('"c"', '"a"')),
    raw(dumps(ev("snapshot", files={})).decode().replace('"files":{}', '"files":{},"files":{}')),
    *(dumps(ev("snapshot", files={"a.py": "x", "b": value})) for value in (
        None, 1, 1.5, True, [], ["x"], {}, {"c": "d"}, {"c": {"d": "e"}})),
    *(dumps(ev("snapshot", files=value)) for value in (None, [], [["a", "x"]], "a", 1)),
    dumps(ev("snapshot")), dumps(ev("snapshot", files={"a": "😀"}), ensure_ascii=True),  # a surrogate pair
    dumps(ev("snapshot", files={f"f{i}": "" for i in range(1025)})),  # over MAX_SNAPSHOT_FILES: slow lane
    *(dumps(ev("snapshot", files={"a": "x"}, path=value)) for value in (
        5, "../x", "a/./b", "", [], {"a": "b"}, True, 1.5)),
    # package_install: packages with anything but strings, not a list; manager/status not string or null
    *(dumps(ev("package_install", packages=value)) for value in (
        [1], [None], ["a", 1], ["a", None], [["a"]], [{"a": "b"}], [True], ["a", 1.5], {}, {"a": "b"}, "numpy",
        None, 1)),
    dumps(ev("package_install")), dumps(ev("package_install", packages=["a"], manager=5)),
    dumps(ev("package_install", packages=["a"], status=True)), dumps(ev("package_install", packages=["a"], path=5)),
    dumps(ev("package_install", packages=["a"], path="a//b")),
    dumps(ev("package_install", packages=["😀"]), ensure_ascii=True),
    raw(dumps(PACKAGES).decode().replace('"packages":[', '"packages":["a",')
        .replace('"manager":"pip"', '"manager":"pip","packages":[1]')),
    # valid, but rare enough to leave to the slow lane
    dumps(ev("shell", command="😀"), ensure_ascii=True),  # an escaped surrogate pair
    raw(PLAIN % (TS, ',"x":-9223372036854775808')), raw(PLAIN % (TS, ',"x":1e123')),  # orjson-safe, not ours
    dumps(ev("shell", command="x", path="a:b")),  # refused by Python too ('a' is a drive letter)
]


def test_hand_picked_lines():
    accepted, python_ok = check(ACCEPT + REFUSE)
    assert accepted == set(range(len(ACCEPT))), [ACCEPT[i] for i in set(range(len(ACCEPT))) - accepted]
    assert python_ok >= accepted


# -- mutated lines --------------------------------------------------------------------------------------

FIELD_NAMES = sorted({"repl_id", "seq", "ts", "kind", "session_id", "user_id"} | {
    f for spec in FIELDS.values() for f in spec} | {"x", "start", "end", "line", "character"})
VALUES = [None, True, False, 0, 1, 4, 7, -1, 10**9, 10**18 - 1, 10**18, 10**19, 2**32 - 1, 2**32, 2**64, 1.5, -0.0,
          1e300, "", "a", "é😀", "../x", "a/./b", "a//b", "C:x", "\x00", "line\n\"q\"\\", "\u2028", [], {},
          [1, "x"], {"k": "v"}, [{"skip": 1}, {"insert": "y"}], {"start": {"line": 1, "character": 2},
                                                                  "end": {"line": 3, "character": 4}},
          "2024-02-29T12:00:00.000000Z", "ot", "file", "move", "create"] + list(FIELDS)
TOKENS = ['"', "\\", "{", "}", "[", "]", ":", ",", " ", "\t", "0", "-", "e", ".", "1e400", "NaN", "null", "tru",
          "\\u0000", "\\ud800", "\\udc00", "\\ud83d\\ude00", "\\u00e9", "\\/", "é", "😀", "\x7f", "\x01", "\n"]
PATH_PARTS = ["a", "b.py", ".", "..", "", "/", "\\", ":", "C:", "é", "\x00", " ", "...", "\u2028"]


def timestamp(rng: random.Random) -> str:
    y = rng.choice([0, 1, 1900, 1970, 2000, 2023, 2024, 9999])
    m, d = rng.choice([0, 1, 2, 4, 12, 13]), rng.choice([0, 1, 28, 29, 30, 31, 32])
    h, mi, s = rng.choice([0, 9, 23, 24]), rng.choice([0, 59, 60]), rng.choice([0, 59, 60])
    frac = rng.choice(["000000", "123456", "12345", "1234567", ""])
    text = f"{y:04d}-{m:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}" + (f".{frac}" if frac else "") + "Z"
    if rng.random() < 0.2:
        text = rng.choice([text.lower(), text.replace("T", " "), text[:-1] + "+00:00", text[:-1]])
    return text


def json_value(rng: random.Random, depth: int = 0):
    if depth < 4 and rng.random() < 0.25:
        if rng.random() < 0.5:
            return [json_value(rng, depth + 1) for _ in range(rng.randrange(3))]
        return {rng.choice(FIELD_NAMES): json_value(rng, depth + 1) for _ in range(rng.randrange(3))}
    if rng.random() < 0.2:
        return "".join(rng.choice(PATH_PARTS) for _ in range(rng.randrange(5)))
    return rng.choice(VALUES)


def mutate(base: dict, rng: random.Random) -> bytes:
    """A variant of an event's line: changed fields, then one of several spellings, then text edits."""
    ev = dict(base)
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        what = rng.randrange(7)
        if what == 0 and ev:
            del ev[rng.choice(list(ev))]
        elif what == 1:
            ev[rng.choice(FIELD_NAMES)] = json_value(rng)
        elif what == 2:
            ev["ts"] = timestamp(rng)
        elif what == 3:
            ev[rng.choice(["path", "dest"])] = "/".join(rng.choice(PATH_PARTS) for _ in range(rng.randrange(1, 4)))
        elif what == 4 and isinstance(ev.get("range"), dict):
            rng_ = json.loads(json.dumps(ev["range"]))
            target = rng_.get(rng.choice(["start", "end"]))
            if isinstance(target, dict):
                target[rng.choice(["line", "character", "x"])] = json_value(rng)
            ev["range"] = rng_
        elif what == 5:
            ev[rng.choice(["x", "detail", "y"])] = json_value(rng)
        elif what == 6 and isinstance(ev.get("files"), dict):
            files = dict(ev["files"])
            key = "/".join(rng.choice(PATH_PARTS) for _ in range(rng.randrange(1, 4)))
            if files and rng.random() < 0.5:
                del files[rng.choice(list(files))]
            files[key if rng.random() < 0.7 else rng.choice(list(files) or [key])] = (
                "x" if rng.random() < 0.5 else json_value(rng))
            ev["files"] = files
        elif what == 6 and isinstance(ev.get("packages"), list):
            packages = list(ev["packages"])
            packages.insert(rng.randrange(len(packages) + 1), json_value(rng))
            ev["packages"] = packages
    style = rng.randrange(4)
    if style == 0:
        text = json.dumps(ev, ensure_ascii=False, separators=(",", ":"))
    elif style == 1:
        text = json.dumps(ev, ensure_ascii=True, separators=(",", ":"))  # \u escapes, surrogate pairs
    elif style == 2:
        text = json.dumps(ev, ensure_ascii=False)  # ", " and ": "
    else:
        text = json.dumps(ev, ensure_ascii=False, separators=(" ,\t", "\r:  "))
    for _ in range(rng.choice([0, 0, 0, 1, 1, 2])):
        pos = rng.randrange(len(text) + 1)
        what = rng.randrange(5)
        if what == 0:  # replace a few characters
            text = text[:pos] + rng.choice(TOKENS) + text[pos + rng.randrange(3):]
        elif what == 1:  # repeat a top-level key, or a key of snapshot.files
            files = ev.get("files")
            at = text.find('"files"')
            brace = text.find("{", at) if at >= 0 and isinstance(files, dict) and files else -1
            if brace >= 0 and rng.random() < 0.5:
                value = rng.choice(["x", json_value(rng)])
                text = (text[:brace + 1] + json.dumps(rng.choice(list(files))) + ":" + json.dumps(value) + ","
                        + text[brace + 1:])
            else:
                key = rng.choice(list(ev) or ["x"])
                text = "{" + json.dumps(key) + ":" + json.dumps(json_value(rng)) + "," + text[1:]
        elif what == 2:  # truncate
            text = text[:pos]
        elif what == 3:  # escape one character as \uXXXX (inside strings it means the same)
            if pos < len(text) and text[pos].isalnum() and ord(text[pos]) < 0x10000:
                text = text[:pos] + f"\\u{ord(text[pos]):04x}" + text[pos + 1:]
        else:  # whitespace
            text = text[:pos] + rng.choice([" ", "\t", "\r", "  \t"]) + text[pos:]
    return text.encode("utf-8")


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(BASES), st.randoms(use_true_random=False)), min_size=1, max_size=6))
def test_mutated_lines_never_falsely_accepted(cases):
    check([mutate(base, rng) for base, rng in cases])


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=5)  # no lone surrogates: not UTF-8
FILE_KEYS = st.one_of(st.lists(st.sampled_from(PATH_PARTS + ["b", "é😀", "x:", "a/", "\t"]), max_size=4).map("/".join),
                      _TEXT)
VALUES_OR_TEXT = st.one_of(_TEXT, _TEXT, st.sampled_from(VALUES))
TOP_PATHS = st.sampled_from([None, "a", "a/b.py", "../x", "a//b", "", 5, [], {"a": "b"}]) | _TEXT


def snapshot_line(members: list[tuple[str, object, bool]], path, ascii_values: bool) -> bytes:
    """A snapshot line with files written member by member (so keys may repeat), each key escaped or not."""
    files = ",".join(json.dumps(k, ensure_ascii=escape) + ":" + json.dumps(v, ensure_ascii=ascii_values)
                     for k, v, escape in members)
    fields = ev("snapshot", files={}) if path is None else ev("snapshot", files={}, path=path)
    return dumps(fields, ensure_ascii=ascii_values).replace(b'"files":{}', b'"files":{' + files.encode() + b"}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.lists(st.tuples(FILE_KEYS, VALUES_OR_TEXT, st.booleans()), max_size=6),
                          TOP_PATHS, st.booleans()), min_size=1, max_size=4))
def test_snapshot_files_never_falsely_accepted(cases):
    lines = [snapshot_line(members, path, ascii_values) for members, path, ascii_values in cases]
    accepted, _ = check(lines)
    for i in accepted:  # and what the scanner takes, it takes for the reasons it should
        members, path, _ = cases[i]
        keys = [k for k, _, _ in members]
        assert len(set(keys)) == len(keys) and all(type(v) is str for _, v, _ in members)
        assert path is None or type(path) is str


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.lists(VALUES_OR_TEXT, max_size=5), st.sampled_from([None, "pip", 5, True, [], ""]),
                          st.booleans()), min_size=1, max_size=4))
def test_package_lists_never_falsely_accepted(cases):
    lines = [dumps(ev("package_install", packages=packages, manager=manager), ensure_ascii=ascii_)
             for packages, manager, ascii_ in cases]
    accepted, python_ok = check(lines)
    for i, (packages, manager, ascii_) in enumerate(cases):
        if i in accepted:
            assert all(type(p) is str for p in packages)
        elif i in python_ok and not ascii_:  # only escaped surrogate pairs (ensure_ascii) may take the slow lane
            pytest.fail(f"valid package_install line left to the slow lane: {lines[i]!r}")


def test_many_mutated_simulator_lines(sim_lines):
    rng = random.Random(20240301)
    events = [orjson.loads(line) for line in rng.sample(sim_lines, 1500)] + BASES * 20
    lines = [mutate(event, rng) for event in events for _ in range(3)]
    accepted, python_ok = check(lines)
    # the mutations must leave a fair share of valid lines, and most of them must stay fast
    assert len(python_ok) > len(lines) // 4 and len(accepted) > len(python_ok) // 2


# -- MD5, contract tables, robustness -------------------------------------------------------------------

def test_md5_equals_hashlib():
    rng = random.Random(5)
    for n in list(range(301)) + [1000, 4096, 65536 + 7, 1 << 20]:
        data = rng.randbytes(n)
        assert _scan.md5(data) == hashlib.md5(data).digest(), n
    assert _scan.md5(memoryview(b"abc")) == hashlib.md5(b"abc").digest()


def test_row_hashes_equal_hashlib():
    """h of rows of every length mod 64 (hashed four at a time in C), long ones among them."""
    rng = random.Random(6)
    lines = [dumps(ev("shell", command="x" * n)) for n in range(300)]
    lines += [dumps(ev("shell", command="é" * rng.randrange(100_000))) for _ in range(5)]
    rng.shuffle(lines)
    for threads in (1, 2):
        table, slow = scan_lines(lines_table(lines), threads=threads)
        assert slow == []
        for line, h in zip(lines, table.column("h").to_pylist()):
            assert h == int.from_bytes(hashlib.md5(line).digest()[8:16], "little") == content_hash(line)


def test_compiled_contract_matches_the_schema():
    assert _scan.COLUMNS == tuple(f.name for f in STAGED if f.name != "origin")
    assert _scan.KINDS == SCAN_KINDS
    want = {kind: {name: ({t.__name__ for t in types}, required) for name, (types, required) in FIELDS[kind].items()}
            for kind in SCAN_KINDS}
    got = {kind: {name: (set(types), required) for name, (types, required) in spec.items()}
           for kind, spec in _scan.fields().items()}
    assert got == want


def test_odd_input_never_crashes():
    valid = dumps(BASES[1])
    lines = ([b"", b" ", b"{", b'{"', b"\\", b'"'] + [bytes([c]) for c in range(1, 128)]
             + ["é".encode(), "😀".encode()] + [valid[:i] for i in range(len(valid))]
             + [b"[" * 200000, b"{" * 200000, b'{"a":' * 50000, b'{"x":"' + b"\\" * 10001])
    accepted, _ = check(lines)
    assert accepted == set()
    # empty tables, a string (not large_string) column, nulls in the line column
    empty, slow = scan_lines(lines_table([]))
    assert empty.num_rows == 0 and slow == [] and empty.schema == SCHEMA
    table = pa.table({"line_no": pa.array([3, 4, 5], pa.int64()), "line": pa.array([valid, None, valid], pa.string())})
    out, slow = scan_lines(table)
    assert out["line_no"].to_pylist() == [3, 5] and slow == [4]


def test_text_arrow_did_not_check_is_checked():
    """Invalid UTF-8 smuggled into a large_string array (no validation) takes the slow lane."""
    good = dumps(ev("shell", command="ok"))
    bad = [good.replace(b"ok", bytes(b)) for b in ([0xff, 0x41], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x82],
                                                   [0xf4, 0x90, 0x80, 0x80], [0x80])]
    lines = [good] + bad
    offsets = np.zeros(len(lines) + 1, np.int64)
    np.cumsum([len(x) for x in lines], out=offsets[1:])
    arr = pa.LargeStringArray.from_buffers(len(lines), pa.py_buffer(offsets), pa.py_buffer(b"".join(lines)))
    out, slow = scan_lines(pa.table({"line_no": pa.array(range(1, len(lines) + 1), pa.int64()), "line": arr}))
    assert out["line_no"].to_pylist() == [1] and slow == list(range(2, len(lines) + 1))


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_no_leaks(sim_lines):
    table = lines_table(sim_lines[:4000])
    line_buffers = table.column("line").chunk(0).buffers()
    refs = [sys.getrefcount(b) for b in line_buffers if b is not None]
    for _ in range(3):
        scan_lines(table)
    gc.collect()
    before, objects = rss(), len(gc.get_objects())
    for _ in range(40):
        out, slow = scan_lines(table)
        del out, slow
    gc.collect()
    assert [sys.getrefcount(b) for b in line_buffers if b is not None] == refs
    assert len(gc.get_objects()) <= objects + 10
    assert rss() - before < 16 << 20  # one result is a few MB: 40 leaked would show


def test_out_of_memory_is_a_memory_error(sim_lines):
    small = lines_table(sim_lines[:300])
    big = lines_table(sim_lines[:3000])
    want_small, want_big = scan_lines(small), scan_lines(big)
    try:
        for n in range(400):
            _scan._set_alloc_limit(n)
            try:
                got = scan_lines(small)
            except MemoryError:
                continue
            assert got[0].equals(want_small[0]) and got[1] == want_small[1]
            break
        else:
            pytest.fail("scan never succeeded")
        for n in (0, 5, 40, 100, 200, 300):  # in several threads' parts at once
            _scan._set_alloc_limit(n)
            with pytest.raises(MemoryError):
                scan_lines(big, threads=2)
    finally:
        _scan._set_alloc_limit(-1)
    got = scan_lines(big)
    assert got[0].equals(want_big[0]) and got[1] == want_big[1]
