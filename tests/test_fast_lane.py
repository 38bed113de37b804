"""The fast lane (DuckDB checks) and the fold's fast paths agree exactly with the Python validator."""

from __future__ import annotations

import orjson
import pytest

from otlake.stages import ingest_events, ingest_files
from warehouse.store import Warehouse

from .conftest import Log, write_jsonl

TABLES = {
    "events": "SELECT repl_id, seq, ts, kind, session_id, user_id, path, event, event_hash FROM events",
    "ot_ops": "SELECT * FROM ot_ops",
    "diagnostics": "SELECT * FROM diagnostics",
    "repls": "SELECT * FROM repls",
    "path_events": "SELECT * FROM path_events",
    "quarantine": "SELECT key, repl_id, seq, error_kind, message FROM quarantine",
}


def sample_log() -> Log:
    log = Log()
    log.type("main.py", "print('héllo 😀')\n")
    log.edit("main.py", [{"skip": 3}, {"delete": 2}, {"insert": "\\\"q\"\n\t"}])
    log.add("file", op="create", path="src/util.py")
    log.type("src/util.py", "x = 1")
    log.add("file", op="move", path="src/util.py", dest="lib/util.py")
    log.add("lsp_diagnostic", path="main.py", range={"start": {"line": 0, "character": 1},
                                                     "end": {"line": 0, "character": 4}},
            severity=1, code="ruff[F821]", message="undefined", has_code_action=True)
    log.add("run", command="python main.py", exit_code=0, output_tail="ok")
    log.add("editor", action="cursor", path="main.py", detail=1.5)
    log.add("shell", command="ls")
    log.edit("main.py", [{"skip": 1}, {"insert": "x"}], crc=False)
    return log


def dump(wh) -> dict:
    return {name: sorted(map(repr, wh.con.execute(sql).fetchall())) for name, sql in TABLES.items()}


def test_fast_lane_stores_what_the_python_lane_stores(tmp_path):
    log = sample_log()
    f = write_jsonl(tmp_path / "in.jsonl", log.events)
    with Warehouse(tmp_path / "fast") as fast, Warehouse(tmp_path / "slow") as slow:
        fast_report = ingest_files(fast, [f])
        slow_report = ingest_events(slow, log.events)
        assert fast_report.slow_lane == 0  # every line took the fast lane
        assert slow_report.slow_lane == len(log.events)
        assert fast_report.stored == slow_report.stored == len(log.events)
        assert dump(fast) == dump(slow)


@pytest.mark.parametrize("line, kind", [
    # a repeated key: DuckDB reads the first value, the contract (orjson) the last
    (b'{"repl_id":"r1","seq":50,"ts":"2024-03-01T13:00:00.000000Z","kind":"shell","command":"ls","seq":"x"}',
     "wrong_type"),
    (b'{"repl_id":"r1","seq":50,"ts":"2024-03-01T13:00:00.000000Z","kind":"shell","command":"ls","command":5}',
     "wrong_type"),
    ((b'{"repl_id":"r1","seq":50,"ts":"2024-03-01T13:00:00.000000Z","kind":"lsp_diagnostic","path":"a.py",'
      b'"range":{"start":{"line":0,"character":0,"line":-1},"end":{"line":0,"character":1}},"severity":1,'
      b'"code":null,"message":"m"}'), "wrong_type"),
    (b'{"repl_id":"r1","seq":50,"ts":"2024-02-30T13:00:00.000000Z","kind":"shell","command":"ls"}', "wrong_type"),
    (b'{"repl_id":"r1","seq":50,"ts":"2024-03-01T13:00:00.000000Z","kind":"repl","is_private":1}', "wrong_type"),
    (b'{"repl_id":"","seq":50,"ts":"2024-03-01T13:00:00.000000Z","kind":"shell","command":"ls"}', "wrong_type"),
    ((b'{"repl_id":"r1","seq":50,"ts":"2024-03-01T13:00:00.000000Z","kind":"ot","path":"a.py","version":1,'
      b'"ops":[],"crc32":4294967296}'), "wrong_type"),
    ((b'{"repl_id":"r1","seq":50,"ts":"2024-03-01T13:00:00.000000Z","kind":"ot","path":"../a.py","version":1,'
      b'"ops":[]}'), "bad_path"),
    # a kind without a path field may carry one, but then it must be a path
    (b'{"repl_id":"r1","seq":50,"ts":"2024-03-01T13:00:00.000000Z","kind":"run","command":"ls","path":5}',
     "wrong_type"),
    (b'{"repl_id":"r1","seq":50,"ts":"2024-03-01T13:00:00.000000Z","kind":"shell","command":"ls","path":"/etc"}',
     "bad_path"),
])
def test_lines_the_fast_lane_must_not_pass(wh, tmp_path, line, kind):
    f = write_jsonl(tmp_path / "in.jsonl", Log().events, [line])
    report = ingest_files(wh, [f])
    assert report.quarantined == 1 and report.slow_lane >= 1
    assert wh.con.execute("SELECT error_kind FROM quarantine").fetchall() == [(kind,)]


def test_unusual_but_valid_lines_are_stored(wh, tmp_path):
    ev = {"repl_id": "r1", "seq": 50, "ts": "2024-03-01T13:00:00.000000Z", "kind": "run", "command": "x",
          "exit_code": -1, "user_id": None}
    f = write_jsonl(tmp_path / "in.jsonl", Log().events, [b"  " + orjson.dumps(ev), orjson.dumps(
        {**ev, "seq": 51, "kind": "shell", "extra": 1, "extra_": 2})])
    report = ingest_files(wh, [f])
    assert report.quarantined == 0 and report.stored == 3
