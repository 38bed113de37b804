"""ot_replay: the event log's replay (replay_to) and a repl's Timeline, against the warehouse and a str replay."""

from __future__ import annotations

import random

import pytest

from events.validate import parse_ts
from ot_replay import lineage
from ot_replay.replay import replay_to
from otlake.stages import ingest_events
from warehouse.stores import DuckDBStore, read_timeline

from .test_ingest import busy_log
from .test_timetravel import history


@pytest.mark.parametrize("native", [True, False])  # the compiled lineage replay, then its Python reference
def test_a_timeline_at_many_instants_matches_the_event_log_history_and_warehouse(wh, monkeypatch, native):
    monkeypatch.setattr(lineage, "NATIVE", native)
    log = busy_log("r1", 11, 500)
    hist = history(log)
    rng = random.Random(3)
    picks = sorted(rng.sample(range(len(hist)), 40))
    instants = [parse_ts(hist[p][0]) for p in picks]
    expected = [hist[p][1] for p in picks]
    assert [replay_to(log.events, t) for t in instants] == expected  # the event log's own replay
    ingest_events(wh, log.events)
    got = read_timeline(DuckDBStore(wh.con), "r1").states_at(instants)  # the derived rows, in one pass
    assert [got[t] for t in instants] == expected
    travel = wh.travel()
    try:
        for instant in instants[::8]:
            assert travel.files_at("r1", instant) == got[instant]
    finally:
        travel.cur.close()


def test_replay_to_the_end_and_before_the_start(log):
    log.type("a.py", "hi")
    log.move("a.py", "b.py")
    assert replay_to(log.events) == {"b.py": "hi"}
    assert replay_to(log.events, parse_ts(log.events[0]["ts"]) - 1) == {}


def test_a_clock_that_steps_back_does_not_reorder_events(log, wh):
    log.type("a.py", "abc")  # packets at 12:00:02, :03, :04
    first, second, third = log.events[1:4]
    third["ts"] = "2024-03-01T12:00:02.500000Z"  # the third packet's clock is behind the second's
    # "every event with ts <= T" at 12:00:02.6 would apply the third packet without the second;
    # the prefix rule applies neither: the third counts as happening at 12:00:03
    assert replay_to(log.events, parse_ts("2024-03-01T12:00:02.600000Z")) == {"a.py": "a"}
    assert replay_to(log.events, parse_ts(second["ts"])) == {"a.py": "abc"}
    assert first["ts"] < third["ts"] < second["ts"]
    ingest_events(wh, log.events)
    at = "SELECT file_at('r1', 'a.py', ?::TIMESTAMPTZ)"
    assert wh.con.execute(at, ["2024-03-01T12:00:02.600000Z"]).fetchall() == [("a",)]
    assert wh.con.execute(at, [second["ts"]]).fetchall() == [("abc",)]
