"""Time travel in SQL: file_at / files_at against an independent replay at many instants."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import text as sql_text

from otlake.stages import ingest_events
from warehouse.store import Warehouse, sqlalchemy_engine

from .conftest import Log, apply_contract_ops
from .test_ingest import busy_log


def history(log: Log) -> list[tuple[str, dict[str, str]]]:
    """(ts, files after that event) for every event, by an independent str replay in the test."""
    files: dict[str, str] = {}
    out = []
    for ev in log.events:
        if ev["kind"] == "ot":
            files[ev["path"]] = apply_contract_ops(files.get(ev["path"], ""), ev["ops"])
        elif ev["kind"] == "file":
            if ev["op"] == "move":
                files[ev["dest"]] = files.pop(ev["path"])
            elif ev["op"] == "remove":
                files.pop(ev["path"])
            else:
                files[ev["path"]] = ""
        out.append((ev["ts"], dict(files)))
    return out


@pytest.mark.parametrize("every", [1, 7, 256])
def test_file_at_matches_replay_at_random_instants(tmp_path, every):
    log = busy_log("r1", 5, 700)
    hist = history(log)
    with Warehouse(tmp_path / "wh") as wh:
        ingest_events(wh, log.events, checkpoint_every=every)
        rng = random.Random(every)
        picks = [rng.randrange(len(hist)) for _ in range(150)]
        wh.con.execute("CREATE TABLE q (i INT, ts TIMESTAMPTZ)")
        wh.con.executemany("INSERT INTO q VALUES (?, ?::TIMESTAMPTZ)", [(i, hist[p][0]) for i, p in enumerate(picks)])
        for path in ("pkg/a.py", "b.py", "a.py"):
            got = wh.con.execute("SELECT file_at('r1', ?, ts) FROM q ORDER BY i", [path]).fetchall()
            assert [g for (g,) in got] == [hist[p][1].get(path) for p in picks], path


def test_file_at_before_creation_after_remove_and_recreate(wh, log):
    log.type("a.py", "one")
    t_one = log.events[-1]["ts"]
    log.remove("a.py")
    t_gone = log.events[-1]["ts"]
    log.add("file", op="create", path="a.py")
    log.texts["a.py"], log.versions["a.py"] = "", 0
    t_empty = log.events[-1]["ts"]
    log.type("a.py", "two")
    ingest_events(wh, log.events)
    q = "SELECT file_at('r1', 'a.py', ?::TIMESTAMPTZ)"
    assert wh.con.execute(q, ["2024-03-01T11:00:00Z"]).fetchall() == [(None,)]
    assert wh.con.execute(q, [t_one]).fetchall() == [("one",)]
    assert wh.con.execute(q, [t_gone]).fetchall() == [(None,)]
    assert wh.con.execute(q, [t_empty]).fetchall() == [("",)]
    assert wh.con.execute("SELECT file_at('r1', 'a.py', now())").fetchall() == [("two",)]
    assert wh.con.execute("SELECT file_at(NULL, 'a.py', now()), file_at('zz', 'a.py', now())").fetchall() == [
        (None, None)]


def test_folder_move_moves_every_file_under_it(wh, log):
    log.type("src/a.py", "a")
    log.type("src/sub/b.py", "b")
    log.type("srcx.py", "c")
    ev = log.add("file", op="move", path="src", dest="lib")
    ingest_events(wh, log.events)
    assert wh.con.execute("SELECT * FROM files_at('r1', ?::TIMESTAMPTZ)", [ev["ts"]]).fetchall() == [
        ("lib/a.py", "a"), ("lib/sub/b.py", "b"), ("srcx.py", "c")]
    # the version sequence continues under the new name
    later = log.add("ot", path="lib/sub/b.py", version=2, ops=[{"skip": 1}, {"insert": "!"}], crc32=None)
    ingest_events(wh, [later])
    assert wh.con.execute("SELECT file_at('r1', 'lib/sub/b.py', now())").fetchall() == [("b!",)]
    assert wh.con.execute("SELECT count(*) FROM quarantine").fetchall() == [(0,)]


def test_files_at_and_diagnostics_join(wh, log):
    log.type("main.py", "x = y\n")
    log.add("lsp_diagnostic", path="main.py", severity=1, code="ruff[F821]",
                   message="Undefined name `y`", has_code_action=False,
                   range={"start": {"line": 0, "character": 4}, "end": {"line": 0, "character": 5}})
    log.edit("main.py", [{"skip": 4}, {"delete": 1}, {"insert": "1"}])
    ingest_events(wh, log.events)
    got = wh.con.execute(
        "SELECT d.message, file_at(d.repl_id, d.path, d.ts) FROM diagnostics d").fetchall()
    assert got == [("Undefined name `y`", "x = y\n")]
    assert wh.con.execute("SELECT path, content FROM files_at('r1', now())").fetchall() == [("main.py", "x = 1\n")]


def test_sqlalchemy_engine_sees_tables_and_functions(wh, log, tmp_path):
    log.type("main.py", "hi")
    ingest_events(wh, log.events)
    wh.close()
    engine = sqlalchemy_engine(tmp_path / "wh")
    with engine.connect() as conn:
        assert conn.execute(sql_text("SELECT count(*) FROM ot_ops")).scalar() == 2
        assert conn.execute(sql_text("SELECT file_at('r1', 'main.py', now())")).scalar() == "hi"
    engine.dispose()


def test_a_timeline_agrees_with_file_at_everywhere(wh):
    """The Timeline the stages use equals TimeTravel at every event time, breaks included."""
    from warehouse.stores import DuckDBStore, read_timeline

    log = busy_log("h1", 5, 120)
    bad = log.edit("b.py", [{"insert": "z"}])
    bad["crc32"] = (bad["crc32"] + 1) % 2**32  # breaks b.py: unknown from here on
    log.edit("src/c.py", [{"insert": "after the break\n"}])
    log.remove("src/c.py")
    log.edit("src/c.py", [{"insert": "again"}])  # a new lineage at the same path
    ingest_events(wh, log.events)
    instants = [e for (e,) in wh.con.execute("SELECT DISTINCT epoch_us(ts) FROM events ORDER BY 1").fetchall()]
    instants = sorted({i + d for i in instants for d in (-1, 0, 1)})
    states = read_timeline(DuckDBStore(wh.con), "h1").states_at(instants)
    travel = wh.travel()
    try:
        expected = {i: travel.files_at("h1", i) for i in instants}
    finally:
        travel.cur.close()
    assert states == expected
    assert any(s.get("b.py", "") is None for s in states.values())  # the break is visible
    assert states[instants[-1]]["src/c.py"] == "again"
