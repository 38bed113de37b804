"""The compiled fold (ot_replay.fold_native, native/fold.c) against the Python Projector (ot_replay.fold).

Projector is the reference: every test folds the same rows both ways and
asserts the same tables, row for row and in order, and the same refusals.
"""

from __future__ import annotations

import gc
import json
import random
import sys
import threading
import zlib

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.errors import BadEvent
from events.simulator import long_session, simulate
from events.validate import validate_event
from ot_replay import _fold, fold_native
from ot_replay.buffer import TextBuffer, past_end
from ot_replay.fold import COLUMNS, Projector, Rows
from ot_replay.fold_native import ResumeFile, fold_rows
from ot_replay.state import FileState, ReplFiles

from .conftest import apply_contract_ops

NAMES = ("repl_id", "seq", "us", "kind", "path", "version", "ops", "crc32", "author", "op", "dest")
SCHEMA = pa.schema([("repl_id", pa.string()), ("seq", pa.int64()), ("us", pa.int64()), ("kind", pa.string()),
                    ("path", pa.string()), ("version", pa.int64()), ("ops", pa.string()), ("crc32", pa.uint64()),
                    ("author", pa.string()), ("op", pa.string()), ("dest", pa.string())])
TYPES = {"repl_id": pa.string(), "file_id": pa.int64(), "version": pa.int64(), "path": pa.string(),
         "seq": pa.int64(), "ts": pa.int64(), "ops": pa.string(), "crc32": pa.uint64(), "author": pa.string(),
         "content": pa.string(), "error_kind": pa.string()}
DEFAULT = _fold.CHUNK_BYTES  # the C text buffer's chunk size in bytes
TINY = 16  # the smallest chunk size: every few characters split, merge and combine CRCs


# ---------------------------------------------------------------------------------------------
# building rows and the reference fold
# ---------------------------------------------------------------------------------------------

def rows_table(records: list[dict]) -> pa.Table:
    """A rows table from dicts (missing keys are null)."""
    return pa.table({n: [r.get(n) for r in records] for n in NAMES}, schema=SCHEMA)


def rows_from_events(events: list[dict]) -> pa.Table:
    """ot/file events as ingest hands them to the fold: validated, by (repl_id, seq), us a running max."""
    evs = [ev for ev in (validate_event(dict(e), ops=False) for e in events) if ev["kind"] in ("ot", "file")]
    evs.sort(key=lambda e: (e["repl_id"], e["seq"]))
    records, last = [], {}
    for ev in evs:
        us = last[ev["repl_id"]] = max(ev["_us"], last.get(ev["repl_id"], ev["_us"]))
        rec = {"repl_id": ev["repl_id"], "seq": ev["seq"], "us": us, "kind": ev["kind"], "path": ev["path"]}
        if ev["kind"] == "ot":
            rec.update(version=ev["version"], ops=orjson.dumps(ev["ops"]).decode(), crc32=ev.get("crc32"),
                       author=ev.get("author"))
        else:
            rec.update(op=ev["op"], dest=ev.get("dest"))
        records.append(rec)
    return rows_table(records)


def _resumed(repl_id: str, files: list[ResumeFile]) -> ReplFiles:
    """The ReplFiles of these stored files, as the fold resumes from them."""
    out = ReplFiles(repl_id)
    for rf in files:
        state = FileState(file_id=rf.file_id, path=rf.path, buffer=TextBuffer(rf.content), version=rf.version)
        if rf.broken is not None:
            state.broken = BadEvent(rf.broken[0], "stored break", repl_id=repl_id, seq=rf.broken[1], path=rf.path)
        out.files[rf.path] = state
    return out


def reference(rows: pa.Table, every: int, resume: dict | None = None) -> tuple[Rows, list[tuple[int, BadEvent]]]:
    """ingest._fold's loop over Projector. Ops that are not JSON, which Projector.ot lets escape
    as orjson.JSONDecodeError, are refused as malformed_json like any unreadable op list."""
    resume = resume or {}
    data = rows.to_pydict()
    out, refused, projector = Rows(), [], None
    for i, (rid, seq, us, kind, path, version, ops, crc, author, op, dest) in enumerate(
            zip(*(data[n] for n in NAMES))):
        if projector is None or projector.repl_id != rid:
            projector = Projector(rid, out, _resumed(rid, resume[rid]) if rid in resume else None, every)
        if kind == "ot":
            try:
                orjson.loads(ops)
            except orjson.JSONDecodeError as e:
                error = unreadable(projector, seq, us, path, version, BadEvent("malformed_json", f"not valid JSON: {e}"))
            else:
                error = projector.ot(seq, us, path, version, ops, crc, author)
        else:
            error = projector.file(seq, us, op, path, dest)
        if error is not None:
            refused.append((i, error))
    return out, refused


def unreadable(projector: Projector, seq: int, us: int, path: str, version: int, e: BadEvent) -> BadEvent:
    """Projector.ot's handling of an op list parse_ops refuses, for one orjson cannot read."""
    files = projector.files
    state = files.files.get(path)
    error = e.located(repl_id=projector.repl_id, seq=seq, path=path, version=version)
    if state is None or state.broken is None:
        files.break_file(seq, path, error)
    else:
        error = files.after_break(seq, path, version, state)
    projector._record_break(seq, us, path)
    return error


def error_tuple(e: BadEvent) -> tuple:
    return e.kind, e.detail, e.repl_id, e.seq, e.path, e.version


def assert_same(rows: pa.Table, every: int = 256, resume: dict | None = None,
                chunks: tuple[int, ...] = (DEFAULT, TINY)) -> tuple[dict, list]:
    """fold_rows gives exactly the reference's tables and refusals, for each chunk size."""
    ref, ref_refused = reference(rows, every, resume)
    expected_errors = [(i, error_tuple(e)) for i, e in ref_refused]
    for chunk in chunks:
        got, refused = fold_rows(rows, every, resume, chunk_bytes=chunk)
        assert list(got) == list(COLUMNS)
        for table, columns in COLUMNS.items():
            assert [(f.name, f.type) for f in got[table].schema] == [(c, TYPES[c]) for c in columns]
            actual = [tuple(r[c] for c in columns) for r in got[table].to_pylist()]
            assert actual == ref.tables[table], (table, chunk)
        assert [(i, error_tuple(e)) for i, e in refused] == expected_errors, chunk
        assert all(type(e) is BadEvent for _, e in refused)
    return got, refused


def ot(repl_id, seq, path, version, ops, crc="auto", text=None, author="USER", us=None) -> dict:
    """An ot row; crc="auto" is the CRC of `text` (the file after the packet)."""
    if crc == "auto":
        crc = zlib.crc32(text.encode()) if text is not None else None
    return {"repl_id": repl_id, "seq": seq, "us": us if us is not None else 1000 * seq, "kind": "ot",
            "path": path, "version": version, "ops": ops if isinstance(ops, str) else orjson.dumps(ops).decode(),
            "crc32": crc, "author": author}


def file_ev(repl_id, seq, op, path, dest=None) -> dict:
    return {"repl_id": repl_id, "seq": seq, "us": 1000 * seq, "kind": "file", "path": path, "op": op, "dest": dest}


class Editor:
    """Writes valid packets for one repl, tracking each file's text, version and CRC."""

    def __init__(self, repl_id: str = "r1") -> None:
        self.repl_id, self.seq, self.rows = repl_id, 0, []
        self.texts: dict[str, str] = {}
        self.versions: dict[str, int] = {}

    def edit(self, path: str, ops: list[dict], crc: bool = True) -> str:
        self.seq += 1
        text = self.texts[path] = apply_contract_ops(self.texts.get(path, ""), ops)
        version = self.versions[path] = self.versions.get(path, 0) + 1
        self.rows.append(ot(self.repl_id, self.seq, path, version, ops, "auto" if crc else None, text))
        return text

    def file(self, op: str, path: str, dest: str | None = None) -> None:
        self.seq += 1
        self.rows.append(file_ev(self.repl_id, self.seq, op, path, dest))


# ---------------------------------------------------------------------------------------------
# whole logs of the simulator
# ---------------------------------------------------------------------------------------------

def test_simulated_sessions_fold_identically():
    rows = rows_from_events(simulate(30, seed=11))
    assert rows.num_rows > 5000
    got, refused = assert_same(rows, every=256)
    assert got["ot_ops"].num_rows > 5000 and got["checkpoints"].num_rows > 0 and not refused
    assert_same(rows, every=3, chunks=(64,))


def test_long_session_folds_identically():
    events = long_session(4000, seed=5)
    texts: dict[str, str] = {}
    for ev in events:  # a CRC on every packet (the simulator leaves a few without)
        if ev["kind"] == "ot":
            texts[ev["path"]] = apply_contract_ops(texts.get(ev["path"], ""), ev["ops"])
            ev["crc32"] = zlib.crc32(texts[ev["path"]].encode())
    rows = rows_from_events(events)
    got, refused = assert_same(rows, every=50, chunks=(DEFAULT, 256, TINY))
    assert not refused and got["ot_ops"]["crc32"].null_count == 0
    final = got["checkpoints"]["content"][-1].as_py()
    assert len(final.encode()) > 4 * DEFAULT  # larger than several default chunks


# ---------------------------------------------------------------------------------------------
# ot_ops.ops is orjson's JSON of the compact op list, byte for byte
# ---------------------------------------------------------------------------------------------

def _one_char_packets(chars: list[str], spell) -> tuple[pa.Table, list[str]]:
    """One packet per character (inserted at the start), its op list spelled by spell(ch)."""
    rows, text = [], ""
    for i, ch in enumerate(chars, 1):
        text = ch + text
        rows.append(ot("r", i, "f", i, spell(ch), text=text))
    return rows_table(rows), [orjson.dumps([ch]).decode() for ch in chars]


@pytest.mark.parametrize("spell", [
    lambda ch: orjson.dumps([{"insert": ch}]).decode(),                         # as orjson writes it
    lambda ch: '[{"insert":"' + "".join(f"\\u{ord(c):04X}" for c in ch) + '"}]',  # \u escapes, upper case
    lambda ch: json.dumps([{"insert": ch}], ensure_ascii=False, indent=1),      # stdlib, with whitespace
], ids=["orjson", "u-escape", "stdlib"])
def test_ops_json_matches_orjson_for_every_ascii_character(spell):
    chars = [chr(c) for c in range(0x80)] + ["ab\"\\/\x00\x1f\x7f\n", "é", "€", "\u2028\u2029", "\ufeff", "\uffff"]
    rows, expected = _one_char_packets(chars, spell)
    got, refused = assert_same(rows, every=40)
    assert not refused
    assert got["ot_ops"]["ops"].to_pylist() == expected


def test_ops_json_matches_orjson_for_the_whole_bmp_and_astral_characters():
    # every non-surrogate BMP code point written as a \u escape (the C reader decodes it and
    # writes what orjson writes), in packets of 512, then astral ones raw and as surrogate pairs
    cps = [c for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
    rows, text, expected, seq = [], "", [], 0
    for start in range(0, len(cps), 512):
        block = "".join(chr(c) for c in cps[start:start + 512])
        seq += 1
        text += block
        spelled = "".join(f"\\u{ord(c):04x}" for c in block)
        skip = len(text) - len(block)
        rows.append(ot("r", seq, "f", seq, f'[{{"skip":{skip}}},{{"insert":"{spelled}"}}]', text=text))
        expected.append(orjson.dumps(([skip] if skip else []) + [block]).decode())
    for astral in ("😀", "𝄞", "\U0010ffff", "\U00010000"):
        for spelled in (orjson.dumps([{"insert": astral}]).decode(), json.dumps([{"insert": astral}])):
            seq += 1
            text = astral + text
            rows.append(ot("r", seq, "f", seq, spelled, text=text))
            expected.append(orjson.dumps([astral]).decode())
    got, refused = assert_same(rows_table(rows), every=1000, chunks=(DEFAULT, 4096))
    assert not refused
    assert got["ot_ops"]["ops"].to_pylist() == expected


# ---------------------------------------------------------------------------------------------
# edge cases
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", [DEFAULT, TINY])
def test_empty_op_list_whole_delete_and_insert_at_end(chunk):
    ed = Editor()
    ed.edit("a.py", [])                                            # empty op list: version 1, nothing changes
    ed.edit("a.py", [{"insert": "hello wörld 😀\n"}])
    ed.edit("a.py", [{"skip": 14}, {"insert": "tail"}])            # insert at the very end
    ed.edit("a.py", [{"skip": 18}, {"insert": ""}, {"skip": 0}])   # empty insert and zero skip dropped
    ed.edit("a.py", [{"delete": 18}])                              # delete the whole file
    ed.edit("a.py", [{"insert": "again"}, {"delete": 0}])
    got, refused = assert_same(rows_table(ed.rows), every=2, chunks=(chunk,))
    assert not refused
    assert got["ot_ops"]["ops"].to_pylist() == ["[]", '["hello wörld 😀\\n"]', '[14,"tail"]', "[18]", "[-18]",
                                                '["again"]']
    assert got["checkpoints"]["content"].to_pylist() == ["hello wörld 😀\n", "hello wörld 😀\ntail", "again"]


@pytest.mark.parametrize("chunk", [DEFAULT, 64, TINY])
def test_file_growing_past_many_chunks_then_shrinking_to_empty(chunk):
    rng = random.Random(chunk)
    ed = Editor()
    pieces = ["x", "é", "€", "😀", "\n", "line of code\n", "ü" * 50, "a" * 3000, "日本語" * 300]
    while len(ed.texts.get("a.py", "").encode()) < 20_000:
        text = ed.texts.get("a.py", "")
        ed.edit("a.py", [{"skip": rng.randint(0, len(text))}, {"insert": rng.choice(pieces)}])
    while ed.texts["a.py"]:
        text = ed.texts["a.py"]
        pos = rng.randint(0, len(text) - 1)
        n = rng.randint(1, min(len(text) - pos, rng.choice([1, 7, 500, 5000])))
        ed.edit("a.py", [{"skip": pos}, {"delete": n}, {"skip": len(text) - pos - n}])
    ed.edit("a.py", [{"insert": "fresh"}])
    got, refused = assert_same(rows_table(ed.rows), every=7, chunks=(chunk,))
    assert not refused and got["checkpoints"].num_rows > 5


def test_resumed_long_non_ascii_file():
    content = "".join(random.Random(3).choice(["ä", "€", "😀", "a", "\n", "日"]) for _ in range(30_000))
    resume = {"r1": [ResumeFile("big.txt", file_id=7, version=41, content=content, broken=None)]}
    rows, text, rng = [], content, random.Random(4)
    for v in range(42, 140):
        pos = rng.randint(0, len(text))
        n = rng.randint(0, min(3, len(text) - pos))
        ins = rng.choice(["x", "ö", "😀😀", ""])
        text = text[:pos] + ins + text[pos + n:]
        rows.append(ot("r1", v, "big.txt", v, [{"skip": pos}, {"delete": n}, {"insert": ins}], text=text))
    got, refused = assert_same(rows_table(rows), every=16, resume=resume, chunks=(DEFAULT, 512, TINY))
    assert not refused and got["checkpoints"].num_rows == 6
    assert set(got["ot_ops"]["file_id"].to_pylist()) == {7}


def test_resume_with_broken_files_and_a_new_lineage():
    resume = {
        "r1": [ResumeFile("a.py", 3, 5, "abc", ("crc_mismatch", 9)), ResumeFile("b.py", 4, 2, "xy", None)],
        "r2": [],
    }
    rows = [
        ot("r1", 10, "a.py", 6, [{"skip": 3}, {"insert": "d"}], crc=None),   # after a stored break: refused
        ot("r1", 11, "b.py", 3, [{"skip": 2}, {"insert": "z"}], text="xyz"),
        file_ev("r1", 12, "remove", "a.py"),
        ot("r1", 13, "a.py", 1, [{"insert": "new"}], text="new"),             # a new lineage
        ot("r2", 1, "c.py", 1, '[{"insert":"é"}]', text="é"),
        ot("r3", 1, "a.py", 2, "[]", crc=None),                               # version gap on a new file
    ]
    _, refused = assert_same(rows_table(rows), every=2, resume=resume)
    assert [(i, e.kind) for i, e in refused] == [(0, "after_broken_packet"), (5, "version_gap")]
    assert refused[0][1].detail == "file state unknown since an earlier bad packet (crc_mismatch at seq 9)"


def test_file_events_moves_and_removes():
    rows = []
    for seq, path in enumerate(["a/b/c", "a/b/b/c", "a/b/d", "x", "a/bb", "ä/ö"], 1):
        rows.append(ot("r", seq, path, 1, [{"insert": path}], text=path))
    events = [
        ("move", "a/b", "a"),          # a/b/b/c -> a/b/c lands where a/b/c was: dict order kept
        ("move", "a", "a/q"),          # into itself
        ("move", "nope", "z"),         # nothing there
        ("move", "nope", None),        # nothing there, no dest
        ("move", "x", "a/bb"),         # onto an existing file: it is replaced
        ("create", "a"),               # a folder of files
        ("create", "x"),               # free again
        ("create", "x"),               # exists
        ("remove", "a/b"),             # the folder, sorted
        ("remove", "a/b"),             # gone
        ("remove", "ä"),
        ("move", "x", "ä"),
        ("create", "x/y"),
    ]
    for seq, (op, path, *dest) in enumerate(events, 100):
        rows.append(file_ev("r", seq, op, path, dest[0] if dest else None))
    rows.append(ot("r", 200, "a/bb", 2, [{"skip": 1}, {"insert": "!"}], crc=None))
    rows.append(ot("r", 201, "a/b/c", 2, [{"skip": 7}, {"insert": "!"}], crc=None))
    got, refused = assert_same(rows_table(rows), every=1)
    kinds = [e.kind for _, e in refused]
    assert kinds == ["bad_path", "file_not_found", "file_not_found", "file_exists", "file_exists",
                     "file_not_found", "version_gap"]  # a/b/c was removed: a new lineage at version 2
    moved = got["path_events"].filter(pa.compute.equal(got["path_events"]["seq"], 100))
    assert list(zip(moved["path"].to_pylist(), moved["file_id"].to_pylist())) == [
        ("a/b/b/c", None), ("a/b/c", 2), ("a/b/d", None), ("a/c", 1), ("a/d", 3)]
    assert refused[1][1].detail == "move of a path with no file or folder (to 'z')"
    assert refused[2][1].detail == "move of a path with no file or folder (to None)"


def test_errors_break_files_like_projector():
    rows = [
        ot("r", 1, "a", 1, [{"insert": "abc"}], text="abc"),
        ot("r", 2, "a", 3, [{"insert": "x"}], crc=None),                      # version gap breaks a
        ot("r", 3, "a", 2, [{"insert": "x"}], crc=None),                      # after the break
        ot("r", 4, "b", 1, [{"skip": 1}], crc=None),                          # past the end of a new file
        ot("r", 5, "c", 1, [{"insert": "abc"}], crc=123),                     # CRC mismatch, new file
        ot("r", 6, "d", 1, [{"insert": "abc"}], crc=2**40),                   # CRC beyond 32 bits
        ot("r", 7, "e", 1, [{"insert": "abc"}, {"delete": 1}], crc=None),    # delete past the end
        ot("r", 8, "f", 1, '[{"retain":1}]', crc=None),                       # unknown op, new file
        ot("r", 9, "f", 1, '[{"retain":1}]', crc=None),                       # after that
        ot("r", 10, "g", 1, [{"insert": "abc"}], text="abc"),
        ot("r", 11, "g", 1, [{"insert": "abc"}], crc=None),                  # version repeat
        ot("r", 12, "h", 1, '[{"skip":18446744073709551615}]', crc=None),    # a count past 2**53
        ot("r", 13, "i", 1, '[{"insert":"ab"},{"delete":9007199254740993}]', crc=None),
        ot("r", 14, "j", 1, '[{"skip":-1}]', crc=None),
        ot("r", 15, "k", 1, '[{"skip":1.5}]', crc=None),
        ot("r", 16, "l", 1, '[{"skip":1,"delete":1}]', crc=None),
        ot("r", 17, "m", 1, '[{"skip":0,"skip":0}]', text=""),               # duplicate keys: the last wins
        ot("r", 18, "n", 1, '[{"insert":"\\ud83d\\ude00"}]', text="😀"),
    ]
    _, refused = assert_same(rows_table(rows), every=1)
    assert [e.kind for _, e in refused] == [
        "version_gap", "after_broken_packet", "op_past_end", "crc_mismatch", "crc_mismatch", "op_past_end",
        "unknown_op", "after_broken_packet", "version_repeat", "op_past_end", "op_past_end", "wrong_type",
        "wrong_type", "unknown_op"]


def test_ops_that_are_not_json_are_refused_as_malformed_json():
    rows = [
        ot("r", 1, "a", 1, [{"insert": "abc"}], text="abc"),
        ot("r", 2, "a", 2, '[{"skip":1}', crc=None),                          # cut short
        ot("r", 3, "a", 3, "[]", crc=None),                                   # after the break
        ot("r", 4, "b", 1, '[{"insert":"\\ud800"}]', crc=None),               # a lone surrogate
        {**ot("r", 5, "c", 1, "[]", crc=None), "ops": None},                  # null ops
        ot("r", 6, "d", 1, '[{"skip":01}]', crc=None),
        ot("r", 7, "e", 1, "[] []", crc=None),
        ot("r", 8, "f", 1, "\ufeff[]", crc=None),
    ]
    _, refused = assert_same(rows_table(rows), every=1)
    assert [e.kind for _, e in refused] == ["malformed_json", "after_broken_packet"] + ["malformed_json"] * 5
    assert refused[0][1].detail.startswith("not valid JSON: ")


def test_ops_holding_invalid_utf8_do_not_crash():
    texts = [b'[{"insert":"ab"}]', b'[{"insert":"a\xffb"}]', b'[{"insert":"\xed\xa0\x80"}]', b'[{"insert":"\xc3"}]',
             b'[{"insert":"\xf4\x90\x80\x80"}]', b'[{"insert":"\xe0\x80\x80"}]']
    offsets = pa.array([0] + [sum(map(len, texts[:i + 1])) for i in range(len(texts))], pa.int32())
    ops = pa.Array.from_buffers(pa.string(), len(texts), [None, offsets.buffers()[1], pa.py_buffer(b"".join(texts))])
    rows = rows_table([ot("r", i, f"f{i}", 1, "[]", crc=None) for i in range(len(texts))])
    rows = rows.set_column(NAMES.index("ops"), "ops", ops)
    got, refused = fold_rows(rows, 5)
    assert [(i, e.kind) for i, e in refused] == [(i, "malformed_json") for i in range(1, len(texts))]
    assert got["ot_ops"]["ops"].to_pylist() == ['["ab"]']


def test_input_layouts_chunked_large_sliced_and_empty():
    ed = Editor("ré")
    for i in range(40):
        ed.edit("a.py" if i % 3 else "b/ü.py", [{"insert": f"{i}é\n"}])
    ed.file("move", "b", "c")
    base = rows_table(ed.rows)
    expected, _ = assert_same(base, every=4)
    large = base.cast(pa.schema([pa.field(f.name, pa.large_string() if f.type == pa.string() else f.type)
                                 for f in base.schema]))
    chunked = pa.Table.from_batches(base.to_batches(max_chunksize=7))
    padded = pa.concat_tables([rows_table([ot("zz", 1, "p", 1, "[]")]), base]).combine_chunks()
    sliced = padded.slice(1)
    narrow = base.cast(pa.schema([pa.field(f.name, pa.int32() if f.name == "seq" else f.type) for f in base.schema]))
    for rows in (large, chunked, sliced, narrow):
        got, refused = fold_rows(rows, 4)
        assert not refused
        assert all(got[t].equals(expected[t]) for t in COLUMNS)
    got, refused = fold_rows(base.slice(0, 0), 4)
    assert not refused and all(got[t].num_rows == 0 for t in COLUMNS)
    assert [(f.name, f.type) for f in got["ot_ops"].schema] == [(c, TYPES[c]) for c in COLUMNS["ot_ops"]]


def test_structurally_invalid_rows_raise_value_error():
    good = ot("r", 1, "a", 1, [{"insert": "x"}], crc=None)
    for broken in ({**good, "repl_id": None}, {**good, "seq": None}, {**good, "us": None},
                   {**good, "path": None}, {**good, "version": None}, file_ev("r", 1, "move", "a", None)):
        rows = rows_table([file_ev("r", 0, "create", "a"), broken])
        with pytest.raises(ValueError):
            fold_rows(rows, 1)
    rows = rows_table([good])
    columns = [fold_native._column(rows, name, kind) for name, kind in fold_native._INPUTS]
    ops = NAMES.index("ops")
    for offsets in ([0, 10_000], [5, 1], [-1, 2]):  # past the data, decreasing, negative
        columns[ops] = (1, 0, None, pa.array(offsets, pa.int32()).buffers()[1], pa.py_buffer(b"[]"), 4)
        with pytest.raises(ValueError):
            _fold.fold(tuple(columns), 1, 1, {}, fold_native._parse, past_end, BadEvent)
    columns[ops] = (1, 0, None, pa.py_buffer(b"\0" * 7), pa.py_buffer(b"[]"), 4)  # offsets too short
    with pytest.raises(ValueError):
        _fold.fold(tuple(columns), 1, 1, {}, fold_native._parse, past_end, BadEvent)
    with pytest.raises(ValueError):
        fold_rows(rows, 0)
    with pytest.raises(ValueError):
        fold_rows(rows, 1, chunk_bytes=8)


def test_crc32_matches_zlib():
    data = random.Random(9).randbytes(5000)
    for n in [*range(300), 1000, 2048, 4999]:
        for off in (0, 1, 5):
            for init in (0, 0xFFFFFFFF, 0x12345678):
                chunk = data[off:off + n]
                assert _fold._crc32(chunk, init) == zlib.crc32(chunk, init), (n, off, init)


# ---------------------------------------------------------------------------------------------
# robustness: memory errors, references, threads
# ---------------------------------------------------------------------------------------------

def _busy_rows() -> tuple[pa.Table, dict]:
    """A small input that takes every path of the C code: resume, errors, Python parses, moves."""
    ed = Editor("r1")
    for i in range(12):
        ed.edit("a.py", [{"skip": len(ed.texts.get("a.py", ""))}, {"insert": f"{i} é😀 " * 30}])
    ed.edit("a.py", [{"delete": 100}])
    ed.file("move", "a.py", "d/a.py")
    ed.file("create", "d/x.py")
    ed.file("remove", "d")
    ed.file("remove", "d")
    rows = ed.rows + [
        ot("r1", 100, "b.py", 2, [{"insert": "x"}], crc=None),
        ot("r1", 101, "c.py", 1, '[{"skip":18446744073709551615}]', crc=None),
        ot("r1", 102, "e.py", 1, '[{"insert":"\\ud83d\\ude00"}]', text="😀"),
        ot("r1", 103, "f.py", 1, "not json", crc=None),
        ot("r2", 1, "old.py", 3, [{"skip": 5}, {"insert": "!"}], text="abcde!"),
        ot("r2", 2, "dead.py", 2, [], crc=None),
    ]
    resume = {"r2": [ResumeFile("old.py", 1, 2, "abcde"), ResumeFile("dead.py", 1, 1, "", ("version_gap", 1))]}
    return rows_table(rows), resume


def test_out_of_memory_at_every_allocation_raises_memory_error():
    rows, resume = _busy_rows()
    expected, expected_refused = assert_same(rows, every=3, resume=resume, chunks=(TINY,))
    failures = 0
    try:
        for n in range(1, 100_000):
            _fold._fail_after(n)
            try:
                got, refused = fold_rows(rows, 3, resume, chunk_bytes=TINY)
            except MemoryError:
                failures += 1
                continue
            if _fold._fail_pending():  # the fold needed fewer than n allocations: all were tried
                break
            pytest.fail(f"allocation {n} failed without an error")
        else:
            pytest.fail("the fold kept allocating")
    finally:
        _fold._fail_after(0)
    assert failures > 50
    got, refused = fold_rows(rows, 3, resume, chunk_bytes=TINY)
    assert all(got[t].equals(expected[t]) for t in COLUMNS)
    assert [error_tuple(e) for _, e in refused] == [error_tuple(e) for _, e in expected_refused]


def test_no_reference_leaks():
    rows, resume = _busy_rows()
    watched = [BadEvent, fold_native._parse, past_end, resume, resume["r2"], *resume["r2"]]
    fold_rows(rows, 3, resume)
    gc.collect()
    before = [sys.getrefcount(o) for o in watched]
    objects = len(gc.get_objects())
    for _ in range(200):
        got, refused = fold_rows(rows, 3, resume)
    del got, refused
    gc.collect()
    assert [sys.getrefcount(o) for o in watched] == before
    assert len(gc.get_objects()) - objects < 50


def test_threads_fold_concurrently_with_the_same_results():
    rows = rows_from_events(simulate(4, seed=2))
    expected, _ = fold_rows(rows, 5)
    results = []

    def work():
        for _ in range(5):
            results.append(fold_rows(rows, 5)[0])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20
    assert all(r[t].equals(expected[t]) for r in results for t in COLUMNS)


# ---------------------------------------------------------------------------------------------
# differential: random streams of packets and file events
# ---------------------------------------------------------------------------------------------

PATHS = ("a.py", "b.py", "d/a.py", "d/b.py", "d/e/f.py", "d", "d/e", "é/ü.py")
CHARS = ["a", "b", " ", "\n", "\t", '"', "\\", "/", "\x00", "\x1f", "\x7f", "é", "€", "\u2028", "😀", "𝄞",
         "\ufeff", "日"]
ODD_OPS = [
    '[{"skip":1,"skip":2}]', '[{"skip":1,"insert":"x"}]', '[{"skip":-1}]', '[{"skip":-0}]', '[{"skip":1.0}]',
    '[{"skip":1e2}]', '[{"delete":2E0}]', '[{"skip":9007199254740993}]', '[{"skip":18446744073709551615}]',
    '[{"delete":18446744073709551615}]', '[{"delete":10000000000000000000}]', '[{"skip":1e400}]',
    '[{"skip":100000000000000000000000}]', '[{"insert":"ab"},{"skip":123456789012345678}]',
    '[{"skip":999999999999999}]', '[{"skip":1000000000000000}]', '[{"insert":"\\ud83d\\ude00"}]',
    r'[{"insert":"\u00e9\u00E9\u0041\u001F\u001f\/\t\n\r\b\f\"\\"}]', '[{"retain":1}]', "[1]", '["x"]', "{}",
    '{"skip":1}', "[{}]", "[[]]", '[{"insert":null}]', '[{"insert":5}]', '[{"skip":true}]', '[{"skip":"1"}]',
    '[{"skip":null}]', '"ops"', "null", "3", "[]", " [ ] ", '[{"skip":0},{"delete":0},{"insert":""}]',
    '[ {"skip" : 1} , {"insert":"x"} ]', r'[{"\u0073kip":1}]', '[{"insert":"a"},{"insert":"b"}]',
    '\t[\n{"delete":1}\r]\n', '[{"skip":1}', "[{'skip':1}]", "", "[]x", '[{"insert":"\\x"}]',
]

small_text = st.text(alphabet=st.sampled_from(CHARS) | st.characters(codec="utf-8"), max_size=6)
big_text = st.builds(lambda s, n: s * n, st.text(alphabet=st.sampled_from(CHARS), min_size=1, max_size=4),
                     st.integers(10, 400))
insert_text = st.one_of(small_text, small_text, small_text, big_text)
op_spec = st.one_of(st.tuples(st.just("skip"), st.integers(0, 105)), st.tuples(st.just("delete"), st.integers(0, 105)),
                    st.tuples(st.just("insert"), insert_text))
ot_action = st.tuples(
    st.just("ot"), st.sampled_from(PATHS), st.lists(op_spec, max_size=5),
    st.sampled_from(["next"] * 20 + ["gap", "repeat", "one"]),
    st.sampled_from(["ok"] * 16 + ["none"] * 4 + ["wrong", "big"]),
    st.sampled_from(["orjson"] * 12 + ["spaced", "ascii", "odd"]), st.sampled_from(ODD_OPS),
    st.sampled_from([None, "USER", "AI", "é"]),
)
file_action = st.tuples(st.just("file"), st.sampled_from(["create", "create", "move", "move", "remove", "?"]),
                        st.sampled_from(PATHS), st.sampled_from((*PATHS, "x", "x/y", "é")))
repl_actions = st.lists(st.one_of(ot_action, ot_action, ot_action, ot_action, file_action), min_size=8, max_size=40)
resume_file = st.builds(ResumeFile, st.sampled_from(PATHS), st.integers(1, 4), st.integers(0, 4), insert_text,
                        st.one_of(st.none(), st.none(), st.tuples(st.sampled_from(["crc_mismatch", "é"]),
                                                                  st.integers(0, 4))))
repl_spec = st.tuples(st.sampled_from(["r1", "r2", "ré", "r\x00"]), repl_actions,
                      st.one_of(st.none(), st.lists(resume_file, max_size=3)))


def _build_ops(text: str, specs: list) -> list[dict]:
    """A contract op list from relative specs: counts are percentages of what is left (over 100: past it)."""
    ops, pos, size = [], 0, len(text)
    for kind, arg in specs:
        if kind == "insert":
            ops.append({"insert": arg})
            pos += len(arg)
            size += len(arg)
        else:
            n = (size - pos) * arg // 100 + (arg > 100)
            ops.append({kind: n})
            if kind == "skip":
                pos += n
            else:
                size -= n
    return ops


def _stream(specs: list) -> tuple[list[dict], dict]:
    """Rows (and resume) for the repl specs; a model Projector tracks the files to aim ops and CRCs."""
    rows, resume, us = [], {}, 0
    for repl_id, actions, resumed in sorted({s[0]: s for s in specs}.values()):
        if resumed is not None:
            resume[repl_id] = resumed
        model = Projector(repl_id, Rows(), _resumed(repl_id, resumed or []), 1)
        seq = 0
        for action in actions:
            seq += 1
            us += 7
            if action[0] == "file":
                _, op, path, dest = action
                rows.append({"repl_id": repl_id, "seq": seq, "us": us, "kind": "file", "path": path, "op": op,
                             "dest": dest})
                model.file(seq, us, op, path, dest)
                continue
            _, path, op_specs, version_mode, crc_mode, form, odd, author = action
            state = model.files.files.get(path)
            text = state.buffer.text() if state is not None else ""
            version = state.version if state is not None else 0
            version = {"next": version + 1, "gap": version + 2, "repeat": version, "one": 1}[version_mode]
            ops = _build_ops(text, op_specs)
            if form == "orjson":
                ops_json = orjson.dumps(ops).decode()
            elif form == "spaced":
                ops_json = json.dumps(ops, ensure_ascii=False, indent=1)
            elif form == "ascii":
                ops_json = json.dumps(ops)
            else:
                ops_json = odd
            try:
                crc = zlib.crc32(apply_contract_checked(text, ops).encode())
            except IndexError:
                crc = 0
            crc = {"ok": crc, "none": None, "wrong": crc ^ 1, "big": crc + 2**32}[crc_mode]
            rows.append({"repl_id": repl_id, "seq": seq, "us": us, "kind": "ot", "path": path, "version": version,
                         "ops": ops_json, "crc32": crc, "author": author})
            try:
                orjson.loads(ops_json)
            except orjson.JSONDecodeError:
                unreadable(model, seq, us, path, version, BadEvent("malformed_json", "not JSON"))
            else:
                model.ot(seq, us, path, version, ops_json, crc, author)
    return rows, resume


def apply_contract_checked(text: str, ops: list[dict]) -> str:
    """apply_contract_ops, or IndexError when an op passes the end."""
    size, pos = len(text), 0
    for op in ops:
        if "insert" in op:
            pos += len(op["insert"])
            size += len(op["insert"])
        elif "skip" in op:
            pos += op["skip"]
            if pos > size:
                raise IndexError
        else:
            if pos + op["delete"] > size:
                raise IndexError
            size -= op["delete"]
    return apply_contract_ops(text, ops)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(specs=st.lists(repl_spec, min_size=1, max_size=3), every=st.sampled_from([1, 2, 3, 5]),
       chunk=st.sampled_from([TINY, 32, DEFAULT]))
def test_random_streams_fold_like_projector(specs, every, chunk):
    records, resume = _stream(specs)
    assert_same(rows_table(records), every, resume, chunks=(chunk,))


@settings(max_examples=150, deadline=None)
@given(text=st.one_of(st.text(st.characters(codec="utf-8"), max_size=40), st.sampled_from(ODD_OPS),
                      st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                                   lambda inner: st.lists(inner, max_size=3)
                                   | st.dictionaries(st.sampled_from(["skip", "insert", "delete", "x"]), inner,
                                                     max_size=2), max_leaves=6).map(json.dumps)))
def test_arbitrary_ops_text_never_crashes(text):
    rows = rows_table([ot("r", 1, "a", 1, [{"insert": "abcdef"}], text="abcdef"),
                       ot("r", 2, "a", 2, text, crc=None), ot("r", 3, "b", 1, text, crc=None)])
    assert_same(rows, every=1, chunks=(TINY,))
