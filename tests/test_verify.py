"""verify: snapshots that match, that differ, and files whose stream broke."""

from __future__ import annotations

from warehouse.ingest import ingest_events
from warehouse.verify import verify

from .test_ingest import busy_log


def test_verify_matches_every_snapshot(wh):
    log = busy_log("r1", 7, 400)
    log.snapshot()
    ingest_events(wh, log.events, checkpoint_every=8)
    report = verify(wh)
    assert (report.snapshots, report.matched, report.ok()) == (2, 2, True)
    assert wh.con.execute("SELECT count(*) FROM quarantine WHERE source = 'verify'").fetchone() == (0,)


def test_verify_reports_a_snapshot_that_does_not_reproduce(wh, log):
    log.type("main.py", "print(1)\nprint(2)\n")
    snap = log.add("snapshot", files={"main.py": "print(1)\nprint(3)\n", "extra.py": ""})
    ingest_events(wh, log.events)
    report = verify(wh)
    assert report.matched == 0 and len(report.mismatches) == 1
    message = report.mismatches[0]["message"]
    assert "missing after replay: extra.py" in message and "main.py: differs from line 2" in message
    assert wh.con.execute("SELECT key, error_kind FROM quarantine WHERE source = 'verify'").fetchall() == [
        (f"r1/{snap['seq']}/snapshot_mismatch", "snapshot_mismatch")]
    # a second verify replaces its own findings instead of piling them up
    verify(wh)
    assert wh.con.execute("SELECT count(*) FROM quarantine WHERE source = 'verify'").fetchone() == (1,)


def test_verify_names_a_file_whose_stream_broke(wh, log):
    log.type("main.py", "ab")
    log.add("ot", path="main.py", version=3, ops=[{"skip": 5}], crc32=None)
    log.snapshot()
    ingest_events(wh, log.events)
    report = verify(wh)
    assert not report.projection_errors
    assert "main.py: content unknown" in report.mismatches[0]["message"]


def test_verify_catches_a_damaged_checkpoint(wh):
    log = busy_log("r1", 8, 300)
    ingest_events(wh, log.events, checkpoint_every=16)
    assert verify(wh).ok()
    wh.con.execute("UPDATE checkpoints SET content = content || 'X' "
                   "WHERE version = 16 AND file_id = (SELECT min(file_id) FROM checkpoints)")
    report = verify(wh)
    assert [e["kind"] for e in report.projection_errors] == ["checkpoint_mismatch"]
    assert "at version 16" in report.projection_errors[0]["message"]
