"""Late events rebuild a repl; regressions from review: what a rebuild must keep, heal and count."""

from __future__ import annotations

import zlib

from otlake.stages import ingest_events, ingest_files

from .conftest import write_jsonl


def ot(seq: int, version: int, text: str, ops: list, ts: str | None = None) -> dict:
    return {"repl_id": "r1", "seq": seq, "ts": ts or f"2024-03-01T12:00:{seq:02d}.000000Z", "kind": "ot",
            "path": "main.py", "version": version, "ops": ops, "crc32": zlib.crc32(text.encode())}


REPL = {"repl_id": "r1", "seq": 1, "ts": "2024-03-01T12:00:01.000000Z", "kind": "repl", "is_private": False}


def test_a_late_packet_after_a_refused_one_heals_the_file(wh):
    first = ingest_events(wh, [REPL, ot(2, 1, "a", [{"insert": "a"}]), ot(4, 3, "abc", [{"skip": 2}, {"insert": "c"}])])
    assert first.quarantined == 1  # version 3 without version 2: the file breaks
    late = ingest_events(wh, [ot(3, 2, "ab", [{"skip": 1}, {"insert": "b"}])])
    assert late.repls_rebuilt == 1
    assert (late.records_in, late.stored, late.quarantined) == (1, 1, 0)  # only this run's record counts
    assert (late.rebuilt_stored, late.rebuilt_quarantined) == (3, 0)      # the refused packet is now stored
    assert wh.con.execute("SELECT file_at('r1', 'main.py', now())").fetchall() == [("abc",)]
    assert wh.con.execute("SELECT count(*) FROM quarantine").fetchall() == [(0,)]


def test_a_rebuild_leaves_records_that_failed_validation_untouched(wh, tmp_path):
    lines = [REPL, ot(2, 1, "a", [{"insert": "a"}]), ot(5, 2, "ab", [{"skip": 1}, {"insert": "b"}])]
    f = write_jsonl(tmp_path / "a.jsonl", lines, [
        b'{"repl_id":"r1","seq":9,"ts":"2024-03-01T12:00:09.000000Z","kind":"shell","command":"l\xffs"}'])
    ingest_files(wh, [f])
    before = wh.con.execute("SELECT key, error_kind, raw FROM quarantine").fetchall()
    assert [k for _, k, _ in before] == ["invalid_unicode"]
    late = ingest_events(wh, [{**REPL, "seq": 3, "kind": "shell", "command": "ls"}])
    assert late.repls_rebuilt == 1 and late.stored == 1
    assert wh.con.execute("SELECT key, error_kind, raw FROM quarantine").fetchall() == before
    assert wh.con.execute("SELECT count(*) FROM events WHERE seq = 9").fetchall() == [(0,)]
    again = ingest_files(wh, [f])  # and re-ingesting the original file still changes nothing
    assert (again.stored, again.quarantined, again.already_quarantined) == (0, 0, 1)


def test_conflicting_records_with_bad_op_lists_are_both_accounted_for(wh):
    a = ot(2, 1, "", [{"skip": -1}])
    b = ot(2, 1, "", [{"bogus": 1}])
    report = ingest_events(wh, [REPL, a, b])
    kinds = sorted(k for (k,) in wh.con.execute("SELECT error_kind FROM quarantine").fetchall())
    assert kinds == ["duplicate_seq", "wrong_type"]
    assert (report.stored, report.duplicates, report.quarantined) == (1, 0, 2)


def test_resuming_a_repl_whose_only_file_broke_matches_one_run(tmp_path):
    from warehouse.store import Warehouse

    bad_first = {**ot(2, 1, "x", [{"insert": "x"}]), "crc32": 1}
    create = {"repl_id": "r1", "seq": 3, "ts": "2024-03-01T12:00:03.000000Z", "kind": "file", "op": "create",
              "path": "main.py"}
    with Warehouse(tmp_path / "split") as split, Warehouse(tmp_path / "one") as one:
        ingest_events(split, [bad_first])
        ingest_events(split, [create])
        ingest_events(one, [bad_first, create])
        q = "SELECT seq, error_kind FROM quarantine ORDER BY seq"
        assert split.con.execute(q).fetchall() == one.con.execute(q).fetchall() == [
            (2, "crc_mismatch"), (3, "file_exists")]



def test_a_resent_refused_packet_with_other_content_is_a_conflict(wh):
    """A refused packet is part of its repl's stream: a record with its seq and other content conflicts with it
    (the derived tables have no key constraints to catch a second break row); the same content in other bytes
    is already quarantined."""
    from otlake.stages import verify
    from warehouse.schema import KEYS

    bad = ot(2, 2, "a", [{"insert": "a"}])  # version 2 first: a version gap, refused
    ingest_events(wh, [REPL, bad])
    other = ingest_events(wh, [{**bad, "author": "BOT"}])
    assert (other.stored, other.quarantined) == (0, 1)
    again = ingest_events(wh, [{**bad, "author": "BOT2"}])
    assert (again.stored, again.quarantined) == (0, 1)
    same = ingest_events(wh, [dict(reversed(list(bad.items())))])  # other bytes, same event
    assert (same.stored, same.duplicates, same.already_quarantined) == (0, 0, 1)
    kinds = sorted(k for (k,) in wh.con.execute("SELECT error_kind FROM quarantine").fetchall())
    assert kinds == ["duplicate_seq", "duplicate_seq", "version_gap"]
    for table, key in KEYS.items():
        cols = ", ".join(key)
        assert wh.con.execute(f"SELECT count(*) - count(DISTINCT ({cols})) FROM {table}").fetchone() == (0,), table
    late = ingest_events(wh, [{**REPL, "seq": 0, "kind": "shell", "command": "ls"}])  # a rebuild still balances
    assert late.repls_rebuilt == 1 and late.balanced() and late.stored == 1
    assert verify(wh).ok()


def test_a_stored_event_a_stricter_rule_now_refuses_leaves_the_stream_on_rebuild(wh):
    """Restaged events are validated again; one that no longer passes goes to quarantine (restaged), the
    rebuild goes on and nothing is lost."""
    ingest_events(wh, [REPL, ot(2, 1, "a", [{"insert": "a"}])])
    raw = ('{"repl_id":"r1","seq":3,"ts":"2024-03-01T12:00:03.000000Z","kind":"snapshot","files":{},'
           '"path":"../x"}')
    wh.con.execute("INSERT INTO events VALUES ('r1', 3, TIMESTAMPTZ '2024-03-01 12:00:03+00', 'snapshot', NULL, "
                   "NULL, '../x', ?, 7)", [raw])  # what an older otlake stored
    late = ingest_events(wh, [{**REPL, "seq": 0, "kind": "shell", "command": "ls"}])
    assert late.repls_rebuilt == 1 and late.balanced()
    assert (late.stored, late.rebuilt_stored, late.rebuilt_quarantined) == (1, 2, 1)
    assert wh.con.execute("SELECT error_kind, raw FROM quarantine").fetchall() == [("bad_path", raw)]
    assert wh.con.execute("SELECT seq FROM events ORDER BY seq").fetchall() == [(0,), (1,), (2,)]
