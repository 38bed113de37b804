"""Ingest: idempotent writes, resumable after SIGKILL, late events, Parquet, chunk boundaries."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from events.parquet import events_to_table
from otlake.stages import ingest_events, ingest_files
from warehouse.store import Warehouse

from .conftest import Log, write_jsonl
from .killing import kill_at_progress

TABLES = ("events", "ot_ops", "path_events", "file_breaks", "checkpoints", "diagnostics", "repls", "quarantine")


def dump(wh, skip=()) -> dict:
    """Every data table's rows (without run ids and wall-clock columns), sorted."""
    out = {}
    for t in TABLES:
        cols = [c for (c,) in wh.con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position", [t]
        ).fetchall() if c not in ("run_id", "quarantined_at", "origin", *skip)]
        out[t] = sorted(wh.con.execute(f"SELECT {', '.join(cols)} FROM {t}").fetchall(), key=repr)
    return out


def busy_log(repl_id: str, seed: int, packets: int) -> Log:
    """Random edits over three files, a move, a diagnostic and a snapshot."""
    rng = random.Random(seed)
    log = Log(repl_id)
    for i in range(packets):
        path = rng.choice(["a.py", "a.py", "b.py", "src/c.py"])
        text = log.texts.get(path, "")
        pos = rng.randint(0, len(text))
        ops = [{"skip": pos}] if pos else []
        if text[pos:] and rng.random() < 0.3:
            ops.append({"delete": rng.randint(1, min(3, len(text) - pos))})
        ops.append({"insert": rng.choice(["x", "é", "😀", "\n", "def f():\n    pass\n"])})
        log.edit(path, ops)
        if i == packets // 2:
            log.move("a.py", "pkg/a.py")
            log.edit("pkg/a.py", [{"insert": "# moved\n"}])
            # the next edit of a.py starts a new file at version 1
            log.texts["a.py"], log.versions["a.py"] = "", 0
    log.add("lsp_diagnostic", path="b.py", range={"start": {"line": 0, "character": 0},
            "end": {"line": 0, "character": 1}}, severity=1, code="ruff[F821]", message="Undefined name `x`",
            has_code_action=False)
    log.snapshot()
    return log


def test_reingest_changes_nothing(wh, tmp_path):
    log = busy_log("r1", 1, 300)
    f = write_jsonl(tmp_path / "in.jsonl", log.events, [b"not json"])
    first = ingest_files(wh, [f])
    before = dump(wh)
    second = ingest_files(wh, [f])
    assert dump(wh) == before
    assert (second.stored, second.quarantined) == (0, 0)
    assert second.duplicates == first.stored and second.already_quarantined == first.quarantined == 1
    runs = wh.con.execute("SELECT stage, status, reconciliation FROM runs ORDER BY started_at").fetchall()
    assert [(stage, status) for stage, status, _ in runs] == [("ingest", "done"), ("ingest", "done")]
    recon = [json.loads(r) for _, _, r in runs]
    assert [(r["in"], r["out"], r["dropped"], r["quarantined"]) for r in recon] == [
        (first.records_in, first.stored, {}, 1), (first.records_in, 0, {"duplicates": first.stored,
                                                                         "already_quarantined": 1}, 0)]
    steps = wh.con.execute("SELECT json_keys(timings->'steps') FROM runs ORDER BY started_at LIMIT 1").fetchall()[0][0]
    assert sorted(steps) == ["classify", "fold", "stage", "write"]
    # the quarantine row went through the one writer: the first run's id, kept by the second run
    (first_run,), = wh.con.execute("SELECT run_id FROM runs ORDER BY started_at LIMIT 1").fetchall()
    stamped = wh.con.execute("SELECT run_id, error_kind, ts FROM quarantine").fetchall()
    assert stamped == [(first_run, "malformed_json", None)]


def test_quarantine_rows_of_every_chunk_carry_the_runs_id_and_instant(wh, tmp_path):
    """Ingest's quarantine rows go through the one writer (events.stages.stamp_quarantine): the run's id and
    its one instant, whatever chunk (transaction) they were written in."""
    log = busy_log("r1", 4, 150)
    f = write_jsonl(tmp_path / "in.jsonl", log.events[:60] + [{"kind": "ot"}] + log.events[60:], [b"not json"])
    report = ingest_files(wh, [f], chunk_records=40)
    assert report.quarantined == 2
    rows = wh.con.execute("SELECT run_id, quarantined_at, error_kind FROM quarantine ORDER BY error_kind").fetchall()
    assert [r[2] for r in rows] == ["malformed_json", "missing_field"]
    assert {r[0] for r in rows} == {report.run_id} and len({r[1] for r in rows}) == 1


def test_chunk_boundaries_inside_a_repl_resume_file_state(tmp_path):
    log = busy_log("r1", 2, 900)
    f = write_jsonl(tmp_path / "in.jsonl", log.events)
    with Warehouse(tmp_path / "one") as one, Warehouse(tmp_path / "many") as many:
        ingest_files(one, [f], checkpoint_every=16)
        ingest_files(many, [f], checkpoint_every=16, chunk_records=97)
        assert dump(one) == dump(many)
        assert many.con.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)
        assert many.travel().files_at("r1", 2**62) == {p: t for p, t in log.texts.items() if p != "a.py" or t}


def test_late_events_rebuild_the_repl(tmp_path):
    log = busy_log("r1", 3, 200)
    events = list(log.events)
    late = events[50:60]
    with Warehouse(tmp_path / "split") as split, Warehouse(tmp_path / "whole") as whole:
        first = ingest_events(split, events[:50] + events[60:])
        assert first.quarantined > 0  # the gap breaks a file until the missing packets come
        report = ingest_events(split, late)
        assert report.repls_rebuilt == 1
        ingest_events(whole, events)
        assert dump(split) == dump(whole)
        assert split.con.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)


def test_parquet_input_gives_the_same_tables(wh, tmp_path):
    log = busy_log("r1", 4, 150)
    f = write_jsonl(tmp_path / "in.jsonl", log.events)
    table = events_to_table(log.events)
    pq.write_table(table, tmp_path / "in.parquet")
    ingest_files(wh, [tmp_path / "in.parquet"])
    with Warehouse(tmp_path / "j") as other:
        ingest_files(other, [f])
        # the raw records differ (JSON line vs Parquet row); everything derived from them is equal
        assert dump(wh, skip=("event", "event_hash")) == dump(other, skip=("event", "event_hash"))
    assert wh.con.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)
    # and the same events in the other format are recognised as duplicates, not conflicts
    again = ingest_files(wh, [f])
    assert (again.duplicates, again.stored, again.quarantined) == (len(log.events), 0, 0)


def test_sigkill_mid_ingest_then_restart_equals_one_clean_run(tmp_path):
    logs = [busy_log(f"r{i}", 10 + i, 1500) for i in range(8)]
    events = sorted((e for log in logs for e in log.events), key=lambda e: (e["ts"], e["repl_id"]))
    f = write_jsonl(tmp_path / "in.jsonl", events, [b"{broken"])
    env = {**os.environ, "OTLAKE_HOME": str(tmp_path / "killed"), "OTLAKE_TRACE": "1"}
    cmd = [sys.executable, "-m", "otlake", "ingest", str(f), "--chunk-records", "1000"]
    kill_at_progress(cmd, env, 3)
    with Warehouse(tmp_path / "killed") as wh:
        partial = wh.con.execute("SELECT count(*) FROM events").fetchone()[0]
        assert 0 < partial < len(events)
    done = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with Warehouse(tmp_path / "killed") as wh, Warehouse(tmp_path / "clean") as clean:
        ingest_files(clean, [f], chunk_records=1000)
        assert dump(wh) == dump(clean)
        statuses = [s for (s,) in wh.con.execute("SELECT status FROM runs ORDER BY started_at").fetchall()]
        assert statuses == ["interrupted", "done"]  # the killed run stays visible: the rerun saw its process gone


def test_a_rebuild_keeps_records_that_are_still_bad_in_quarantine(wh):
    log = busy_log("r1", 6, 60)
    bad = {**log.events[10], "seq": 1000, "version": "x"}  # identified (repl, seq) but ill-typed
    events = list(log.events)
    first = ingest_events(wh, events[:20] + events[30:] + [bad])
    before = wh.con.execute("SELECT key, error_kind FROM quarantine ORDER BY key").fetchall()
    assert any(k.startswith("r1/1000/") for k, _ in before)
    assert first.quarantined > 1  # the bad record, and the packets the gap broke
    late = ingest_events(wh, events[20:30])  # fills the gap: the repl is rebuilt from all its events
    assert (late.repls_rebuilt, late.stored, late.quarantined) == (1, 10, 0)
    after = wh.con.execute("SELECT key, error_kind FROM quarantine ORDER BY key").fetchall()
    assert [k for k in after if k[0].startswith("r1/1000/")] == [k for k in before if k[0].startswith("r1/1000/")]
    assert [kind for _, kind in after] == ["wrong_type"]  # the version gap healed, the bad record stays


def test_a_chunk_larger_than_a_duckdb_row_group(wh, tmp_path):
    """Over 122,880 records in one transaction (a regression: staged rows once came back unmatched)."""
    events = [{"repl_id": "big", "seq": 1, "ts": "2024-03-01T12:00:00.000000Z", "kind": "repl",
               "is_private": False}]
    for i in range(130_000):
        ops = [{"insert": "x"}] if i % 2 == 0 else [{"delete": 1}]
        events.append({"repl_id": "big", "seq": i + 2, "ts": f"2024-03-01T12:{i // 6000 % 60:02d}:00.{i:06d}Z",
                       "kind": "ot", "path": "a.py", "version": i + 1, "ops": ops})
    events.append({**events[-1], "seq": 130_002, "version": 130_001, "ops": [{"insert": "ok"}]})
    report = ingest_files(wh, [write_jsonl(tmp_path / "big.jsonl", events)])
    assert (report.stored, report.quarantined, report.slow_lane) == (len(events), 0, 0)
    assert wh.con.execute("SELECT file_at('big', 'a.py', now()), count(*) FROM ot_ops").fetchall() == [("ok", 130_001)]


def test_real_world_file_quirks_are_read_as_the_same_events(wh, tmp_path):
    """A byte order mark, CRLF line ends, blank lines and other spellings of the same instants."""
    log = busy_log("r1", 12, 80)
    clean = write_jsonl(tmp_path / "clean.jsonl", log.events)
    quirky = [dict(e) for e in log.events]
    quirky[3]["ts"] = quirky[3]["ts"].replace("Z", "000Z")                     # nanoseconds
    quirky[4]["ts"] = quirky[4]["ts"].replace("Z", "+00:00")                   # an offset
    quirky[5]["ts"] = quirky[5]["ts"].replace("T", " ")                       # RFC 3339's space form
    body = b"\r\n".join(orjson.dumps(e) for e in quirky)
    (tmp_path / "quirky.jsonl").write_bytes(b"\xef\xbb\xbf" + body.replace(b"\r\n", b"\r\n\r\n", 1) + b"\r\n")
    report = ingest_files(wh, [tmp_path / "quirky.jsonl"])
    assert (report.stored, report.quarantined) == (len(log.events), 0)
    again = ingest_files(wh, [clean])  # the same events spelled plainly: all duplicates
    assert (again.duplicates, again.stored, again.quarantined) == (len(log.events), 0, 0)


def test_parquet_timestamps_without_a_zone_are_utc(wh, tmp_path):
    log = busy_log("r1", 13, 30)
    table = events_to_table(log.events)
    naive = table.column("ts").cast(pa.timestamp("us"))
    pq.write_table(table.set_column(table.schema.get_field_index("ts"), "ts", naive), tmp_path / "n.parquet")
    report = ingest_files(wh, [tmp_path / "n.parquet"])
    assert (report.stored, report.quarantined) == (len(log.events), 0)
    again = ingest_files(wh, [write_jsonl(tmp_path / "j.jsonl", log.events)])
    assert again.duplicates == len(log.events)


def test_gzipped_jsonl_takes_the_fast_lane_and_gives_the_same_tables(wh, tmp_path):
    import gzip

    log = busy_log("r1", 14, 120)
    plain = write_jsonl(tmp_path / "in.jsonl", log.events)
    (tmp_path / "IN.JSONL.GZ").write_bytes(gzip.compress(plain.read_bytes()))  # suffixes in any case
    report = ingest_files(wh, [tmp_path / "IN.JSONL.GZ"])
    assert any(e["kind"] == "snapshot" for e in log.events)
    assert (report.stored, report.slow_lane) == (len(log.events), 0)  # every kind takes the compiled lane
    with Warehouse(tmp_path / "plain") as other:
        ingest_files(other, [plain])
        assert dump(wh) == dump(other)


def test_duckdb_spills_beside_the_warehouse_file(wh):
    (where,) = wh.con.execute("SELECT current_setting('temp_directory')").fetchone()
    assert where == str(wh.path) + ".tmp"
