"""verify: snapshots that match, that differ, and files whose stream broke."""

from __future__ import annotations

from otlake.stages import ingest_events, verify

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


def test_keys_stay_unique_and_verify_finds_a_duplicate(wh, tmp_path):
    """The derived tables' keys are kept by ingest, not by constraints: duplicates, a re-ingest and a late
    event leave every key unique, and verify reports a key that is not."""
    from otlake.stages import ingest_files
    from warehouse.schema import KEYS

    from .conftest import write_jsonl

    log = busy_log("r1", 5, 300)
    log.snapshot()
    events = log.events
    late = events[40]
    f = write_jsonl(tmp_path / "a.jsonl", events[:40] + events[41:] + events[10:30])  # duplicates inside the file
    ingest_files(wh, [f], chunk_records=50)  # and across chunks
    ingest_files(wh, [f])  # a re-ingest
    ingest_events(wh, [late])  # a late event: r1 is rebuilt
    for table, key in KEYS.items():
        cols = ", ".join(key)
        assert wh.con.execute(f"SELECT count(*) - count(DISTINCT ({cols})) FROM {table}").fetchone() == (0,), table
    assert wh.con.execute("SELECT count(*) FROM ot_ops").fetchone()[0] > 200
    assert verify(wh).ok()
    (lineages,) = wh.con.execute("SELECT count(*) FROM ot_ops WHERE version = 7").fetchone()
    wh.con.execute("INSERT INTO ot_ops SELECT * FROM ot_ops WHERE version = 7")
    report = verify(wh)
    found = {e["kind"]: e["message"] for e in report.projection_errors}
    assert f"{lineages} keys (repl_id, file_id, version) of ot_ops" in found["duplicate_key_ot_ops"]
    assert set(found) <= {"duplicate_key_ot_ops", "projection_mismatch"}  # file_at replays the op twice


def test_verify_names_a_damaged_stored_event_and_replays_no_further(wh, log):
    """A stored ot event whose ops no longer apply (the store was damaged after ingest): the event log's replay
    stops there with a replay_error naming the event, and nothing after it is compared."""
    log.type("main.py", "abc")
    log.snapshot()
    ingest_events(wh, log.events)
    assert verify(wh).ok()
    seq = wh.con.execute("SELECT max(seq) FROM events WHERE kind = 'ot'").fetchall()[0][0]
    wh.con.execute("""UPDATE events SET event = json_object('repl_id', 'r1', 'seq', seq, 'ts', '2024-03-01T12:00:09Z',
                                                            'kind', 'ot', 'path', 'main.py', 'version', 3,
                                                            'ops', json('[{"skip": 99}]'))
                      WHERE seq = ?""", [seq])
    report = verify(wh)
    assert [(e["kind"], e["seq"]) for e in report.projection_errors] == [("replay_error", seq)]
    assert "skip" in report.projection_errors[0]["message"] and report.snapshots == 0


def test_a_killed_verify_run_restarts_and_ends_like_a_clean_one(tmp_path):
    """SIGKILL after two of six repls: their findings are committed, the rest not; the rerun marks the killed
    run interrupted and ends with the quarantine of a clean run."""
    import os
    import subprocess
    import sys

    from otlake.stages import ingest_events
    from warehouse.store import Warehouse

    from .killing import kill_at_progress

    events = []
    for r in range(6):  # six repls, long enough to replay that the kill lands mid-run, each with a bad snapshot
        log = busy_log(f"v{r}", 20 + r, 3000)
        log.add("snapshot", files={"nope.py": ""})
        events += log.events
    for name in ("killed", "clean"):
        with Warehouse(tmp_path / name) as wh:
            ingest_events(wh, events)
    env = {**os.environ, "OTLAKE_HOME": str(tmp_path / "killed"), "OTLAKE_TRACE": "1"}
    kill_at_progress([sys.executable, "-m", "otlake", "verify"], env, 2)
    with Warehouse(tmp_path / "killed") as wh:
        partial = wh.con.execute("SELECT count(*) FROM quarantine WHERE source = 'verify'").fetchall()[0][0]
    assert 2 <= partial < 6  # whole repls: each one's findings are one commit
    done = subprocess.run([sys.executable, "-m", "otlake", "verify"], env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 1 and "6 repls, 12 snapshots: 6 match, 6 differ" in done.stdout, done.stdout
    with Warehouse(tmp_path / "clean") as clean:
        verify(clean)
        want = clean.con.execute("SELECT key, error_kind, message FROM quarantine ORDER BY key").fetchall()
    with Warehouse(tmp_path / "killed") as wh:
        got = wh.con.execute("SELECT key, error_kind, message FROM quarantine ORDER BY key").fetchall()
        statuses = [s for (s,) in wh.con.execute(
            "SELECT status FROM runs WHERE stage = 'verify' ORDER BY started_at").fetchall()]
    assert got == want and len(got) == 6
    assert statuses == ["interrupted", "done"]
