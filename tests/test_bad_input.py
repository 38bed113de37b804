"""Each kind of bad input ends in quarantine with its error kind; the rest of the batch is stored."""

from __future__ import annotations

import orjson
import pytest

from otlake.stages import ingest_files

from .conftest import Log, write_jsonl


def rows(wh, sql, *params):
    return wh.con.execute(sql, list(params)).fetchall()


def ingest_with(wh, tmp_path, log: Log, bad_lines: list[bytes]):
    """A good repl r2 beside the bad input, to show nothing else is lost."""
    other = Log("r2")
    other.type("main.py", "ok = 1\n")
    f = write_jsonl(tmp_path / "in.jsonl", log.events + other.events, bad_lines)
    report = ingest_files(wh, [f])
    assert report.records_in == len(log.events) + len(other.events) + len(bad_lines)
    assert rows(wh, "SELECT file_at('r2', 'main.py', now())") == [("ok = 1\n",)]
    assert rows(wh, "SELECT count(*) FROM events WHERE repl_id = 'r2'") == [(len(other.events),)]
    return report


def quarantined(wh):
    return rows(wh, "SELECT error_kind, repl_id, seq, origin, message FROM quarantine ORDER BY origin")


def test_malformed_json_line(wh, tmp_path, log):
    report = ingest_with(wh, tmp_path, log, [b'{"repl_id": "r1", "seq": 99,'])
    (q,) = quarantined(wh)
    assert q[0] == "malformed_json" and q[3].endswith(f":{len(log.events) + 9}")
    assert report.quarantined == 1 and report.stored == len(log.events) + 8


def test_unknown_kind(wh, tmp_path, log):
    ev = dict(log.events[0], seq=50, kind="telepathy")
    ingest_with(wh, tmp_path, log, [orjson.dumps(ev)])
    (q,) = quarantined(wh)
    assert q[:3] == ("unknown_kind", "r1", 50) and "telepathy" in q[4]


def test_missing_field(wh, tmp_path, log):
    ev = {"repl_id": "r1", "seq": 50, "ts": "2024-03-01T13:00:00Z", "kind": "ot", "path": "a.py", "version": 1}
    ingest_with(wh, tmp_path, log, [orjson.dumps(ev)])
    (q,) = quarantined(wh)
    assert q[:3] == ("missing_field", "r1", 50) and "'ops'" in q[4]


@pytest.mark.parametrize("field, value", [("seq", "7"), ("version", 1.5), ("ts", 12), ("user_id", "x")])
def test_wrong_type(wh, tmp_path, log, field, value):
    log.type("a.py", "x")
    ev = {**log.events[-1], "seq": 50, "version": 2, field: value}
    ingest_with(wh, tmp_path, log, [orjson.dumps(ev)])
    (q,) = quarantined(wh)
    assert q[0] == "wrong_type" and field in q[4]


def test_duplicate_seq_with_different_content(wh, tmp_path, log):
    log.type("a.py", "hi")
    twin = dict(log.events[-1], ts="2024-03-01T15:00:00Z")
    ingest_with(wh, tmp_path, log, [orjson.dumps(twin)])
    (q,) = quarantined(wh)
    assert q[:3] == ("duplicate_seq", "r1", twin["seq"])
    assert rows(wh, "SELECT file_at('r1', 'a.py', now())") == [("hi",)]


def test_duplicate_seq_with_same_content_is_not_an_error(wh, tmp_path, log):
    log.type("a.py", "hi")
    report = ingest_with(wh, tmp_path, log, [orjson.dumps(log.events[-1])])
    assert quarantined(wh) == [] and report.duplicates == 1


@pytest.mark.parametrize("version, kind", [(5, "version_gap"), (2, "version_repeat")])
def test_version_gap_or_repeat_breaks_the_file(wh, tmp_path, log, version, kind):
    log.type("a.py", "abc")  # versions 1..3
    log.type("b.py", "z")
    bad = log.add("ot", path="a.py", version=version, ops=[{"insert": "!"}], crc32=None)
    log.versions["a.py"] = version
    later = log.add("ot", path="a.py", version=version + 1, ops=[{"insert": "?"}], crc32=None)
    ingest_with(wh, tmp_path, log, [])
    got = quarantined(wh)
    assert [(k, s) for k, _, s, _, _ in got] == [(kind, bad["seq"]), ("after_broken_packet", later["seq"])]
    # the file's content is unknown after the break, known before it; other files are unaffected
    assert rows(wh, "SELECT file_at('r1', 'a.py', ?::TIMESTAMPTZ)", bad["ts"]) == [(None,)]
    assert rows(wh, "SELECT file_at('r1', 'a.py', ?::TIMESTAMPTZ)", log.events[4]["ts"]) == [("abc",)]
    assert rows(wh, "SELECT file_at('r1', 'b.py', now())") == [("z",)]


@pytest.mark.parametrize("op", [{"skip": 10}, {"delete": 4}])
def test_skip_or_delete_past_the_end(wh, tmp_path, log, op):
    log.type("a.py", "abc")
    bad = log.add("ot", path="a.py", version=4, ops=[op], crc32=None)
    ingest_with(wh, tmp_path, log, [])
    (q,) = quarantined(wh)
    assert q[:3] == ("op_past_end", "r1", bad["seq"]) and "past the end (3 code points)" in q[4]


def test_crc_mismatch(wh, tmp_path, log):
    log.type("a.py", "abc")
    bad = log.add("ot", path="a.py", version=4, ops=[{"insert": "x"}], crc32=12345)
    ingest_with(wh, tmp_path, log, [])
    (q,) = quarantined(wh)
    assert q[:3] == ("crc_mismatch", "r1", bad["seq"]) and "12345" in q[4]


def test_lone_surrogate(wh, tmp_path, log):
    line = b'{"repl_id":"r1","seq":60,"ts":"2024-03-01T13:00:00Z","kind":"shell","command":"echo \\ud800"}'
    ingest_with(wh, tmp_path, log, [line])
    (q,) = quarantined(wh)
    assert q[:3] == ("invalid_unicode", "r1", 60)


@pytest.mark.parametrize("path", ["../etc/passwd", "/abs.py", "a/../../x.py", "nul\u0000.py", ""])
def test_path_escaping_the_repl(wh, tmp_path, log, path):
    ev = log.add("ot", path=path, version=1, ops=[{"insert": "x"}], crc32=None)
    ingest_with(wh, tmp_path, log, [])
    (q,) = quarantined(wh)
    assert q[:3] == ("bad_path", "r1", ev["seq"])


def test_unknown_op_in_list(wh, tmp_path, log):
    ev = log.add("ot", path="a.py", version=1, ops=[{"insert": "x"}, {"retain": 1}], crc32=None)
    ingest_with(wh, tmp_path, log, [])
    (q,) = quarantined(wh)
    assert q[:3] == ("unknown_op", "r1", ev["seq"]) and "retain" in q[4]


def test_broken_packet_leaves_other_files_and_repls_alone(wh, tmp_path, log):
    log.type("a.py", "ab")
    log.type("b.py", "cd")
    log.add("ot", path="a.py", version=3, ops=[{"skip": 9}], crc32=None)
    log.type("b.py", "ef")
    ingest_with(wh, tmp_path, log, [])
    assert rows(wh, "SELECT file_at('r1', 'b.py', now())") == [("cdef",)]
    assert [k for k, *_ in quarantined(wh)] == ["op_past_end"]


@pytest.mark.parametrize("ts", ["20240301T120000Z", "2024-W09-5T12:00:00Z", "2024-03-01T12:00Z",
                                "2024-03-01T12:00:00", "2024-02-30T12:00:00.000000Z", "yesterday"])
def test_timestamps_that_are_not_rfc_3339(wh, tmp_path, log, ts):
    ev = {**log.events[0], "seq": 50, "ts": ts, "kind": "shell", "command": "ls"}
    ingest_with(wh, tmp_path, log, [orjson.dumps(ev)])
    (q,) = quarantined(wh)
    assert q[:3] == ("wrong_type", "r1", 50) and "ts" in q[4]


_TS = '"ts":"2024-03-01T13:00:00.000000Z"'


@pytest.mark.parametrize("line, kind", [
    # values that fit JSON but not the warehouse's columns: refused, not an overflow in the insert
    (f'{{"repl_id":"r1","seq":{2**63},{_TS},"kind":"shell","command":"ls"}}', "wrong_type"),
    (f'{{"repl_id":"r1","seq":90,{_TS},"kind":"shell","command":"ls","user_id":{2**64 - 1}}}', "wrong_type"),
    ((f'{{"repl_id":"r1","seq":91,{_TS},"kind":"lsp_diagnostic","path":"main.py","severity":1,"message":"m",'
     f'"range":{{"start":{{"line":{2**31},"character":0}},"end":{{"line":0,"character":1}}}}}}'), "wrong_type"),
    # nested deeper than any JSON decoder here follows
    ('{"repl_id":"r1","seq":92,' + _TS + ',"kind":"shell","command":"ls","x":' + "[" * 5000 + "]" * 5000 + "}",
     "malformed_json"),
    # a count too large for a 64-bit integer inside an op list
    (f'{{"repl_id":"r1","seq":93,{_TS},"kind":"ot","path":"main.py","version":9,"ops":[{{"skip":{10**30}}}]}}',
     "wrong_type"),
])
def test_values_too_large_or_too_deep(wh, tmp_path, log, line, kind):
    report = ingest_with(wh, tmp_path, log, [line.encode()])
    kinds = [q[0] for q in quarantined(wh)]
    assert kinds[:1] == [kind], kinds
    assert report.balanced()


def test_snapshot_with_a_path_that_is_not_a_string(wh, tmp_path, log):
    """A kind without a path field may carry one, snapshots too, but it must be a path (it once crashed staging)."""
    line = '{"repl_id":"r1","seq":96,' + _TS + ',"kind":"snapshot","files":{},"path":5}'
    report = ingest_with(wh, tmp_path, log, [line.encode()])
    assert [q[0] for q in quarantined(wh)] == ["wrong_type"]
    assert report.balanced()


def test_diagnostic_without_code_takes_either_lane_alike(wh, tmp_path, log):
    """`code` is optional: a diagnostic without one is stored with code NULL (it once crashed the slow lane)."""
    line = ('{"repl_id":"r1","seq":94,' + _TS + ',"kind":"lsp_diagnostic","path":"main.py","severity":1,'
            '"message":"m","range":{"start":{"line":0,"character":0},"end":{"line":0,"character":1}}}')
    slow = line.replace('"seq":94,', '"seq":95,"x":"\\ud800",')  # an escaped surrogate: slow lane
    report = ingest_with(wh, tmp_path, log, [line.encode(), slow.encode()])
    assert report.slow_lane >= 1
    assert rows(wh, "SELECT seq, code FROM diagnostics WHERE repl_id = 'r1' AND seq >= 94 ORDER BY seq") == [
        (94, None)]
    assert [q[0] for q in quarantined(wh)] == ["invalid_unicode"]
