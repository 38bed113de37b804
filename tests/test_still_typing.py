"""The still_typing filter: a diagnostic on a line the user was in the middle of typing is no repair example."""

from __future__ import annotations

from datetime import UTC, datetime

from otlake.stages import PairsOptions, build_pairs, ingest_events
from synth.still_typing import burst_versions, still_typing
from warehouse.store import Warehouse

from .conftest import BASE, Log


def test_bursts_are_cut_at_pauses():
    s = 1_000_000
    times = [0, s, 2 * s, 10 * s, 11 * s, 30 * s]
    assert burst_versions(times, 2) == (0, 4)   # its burst starts at 0; the next burst ends at 4
    assert burst_versions(times, 4) == (3, 5)
    assert burst_versions(times, 5) == (5, None)  # nothing follows the last packet


def test_a_line_that_grows_in_the_next_burst_was_being_typed():
    assert still_typing(1, "x = 1\n", "x = 1\nim\n", "x = 1\nimport os\n")
    assert still_typing(1, "x = 1\n", "x = 1\n    \n", "x = 1\n    y = 2\n")  # indentation, then code
    assert still_typing(1, "x = 1\n", "x = 1\nprint(x\n", "x = 1\nprint(x)\nprint(2)\n")


def test_a_line_not_typed_in_the_last_burst_or_not_extended_is_not():
    assert not still_typing(1, "x = 1\nim\n", "x = 1\nim\n", "x = 1\nimport os\n")  # typed long before
    assert not still_typing(1, "x = 1\n", "x = 1\nimprt os\n", "x = 1\nimport os\n")  # corrected, not extended
    assert not still_typing(1, "x = 1\n", "x = 1\nim\n", None)  # never touched again
    assert not still_typing(1, "x = 1\n", "x = 1\nim\n", "x = 1\nim\ny = 2\n")  # the line stayed as it was


def _undefined(log: Log, line: int, name: str) -> None:
    log.add("lsp_diagnostic", path="main.py", range={"start": {"line": line, "character": 0},
                                                     "end": {"line": line, "character": len(name)}},
            severity=1, code="pyright[reportUndefinedVariable]", message=f'"{name}" is not defined',
            has_code_action=False)


def test_the_pairs_stage_counts_still_typing_apart(wh):
    log = Log("t1")
    log.edit("main.py", [{"insert": "x = 1\n"}])
    log.clock += 10
    log.edit("main.py", [{"skip": 6}, {"insert": "pr"}])  # a burst that ends mid-word
    _undefined(log, 1, "pr")
    log.clock += 10
    log.edit("main.py", [{"skip": 8}, {"insert": "int(x)\n"}])  # the next burst finishes the line
    log.clock += 10
    log.edit("main.py", [{"skip": 15}, {"insert": "print(yy)\n"}])  # a real mistake ...
    log.clock += 10
    log.edit("main.py", [{"skip": 15}, {"insert": "z = 0\n"}])  # ... other work ...
    _undefined(log, 3, "yy")
    log.clock += 10
    log.edit("main.py", [{"skip": 27}, {"delete": 2}, {"insert": "z"}])  # ... fixed later
    ingest_events(wh, log.events)
    report = build_pairs(wh, PairsOptions())
    assert report.balanced()
    assert dict(report.filtered) == {"still_typing": 1} and report.pairs == 1, report.summary()
    reasons = wh.con.execute("SELECT seq, reason FROM pair_checks ORDER BY seq").fetchall()
    assert [r for _, r in reasons] == ["still_typing", None]


def _half_typed_session() -> tuple[list[dict], list[dict]]:
    log = Log("inc")
    log.clock = (datetime.now(UTC) - BASE).total_seconds() - 60  # a live session: it ran a minute ago
    log.edit("main.py", [{"insert": "x = 1\n"}])
    log.clock += 10
    log.edit("main.py", [{"skip": 6}, {"insert": "pr"}])
    _undefined(log, 1, "pr")
    first = list(log.events)  # the stream as ingested so far ends on the diagnostic
    log.clock += 10
    log.edit("main.py", [{"skip": 8}, {"insert": "int(x)\n"}])
    log.clock += 10
    log.add("run", command="python main.py", exit_code=0, output_tail="1\n")
    return first, log.events[len(first):]


def test_still_typing_waits_for_the_next_burst_of_a_live_session(tmp_path):
    # so ingesting a live session in two parts decides what ingesting it whole decides
    first, rest = _half_typed_session()
    with Warehouse(tmp_path / "a") as wh:
        ingest_events(wh, first)
        early = build_pairs(wh, PairsOptions())
        assert early.balanced() and (early.waiting, early.pairs) == (1, 0), early.summary()
        assert wh.con.execute("SELECT count(*) FROM pair_checks").fetchall() == [(0,)]  # nothing stored for it
        ingest_events(wh, rest)
        late = build_pairs(wh, PairsOptions())
        assert (late.waiting, dict(late.filtered)) == (0, {"still_typing": 1})
        incremental = wh.con.execute("SELECT seq, outcome, reason FROM pair_checks").fetchall()
    with Warehouse(tmp_path / "b") as wh:
        ingest_events(wh, first + rest)
        build_pairs(wh, PairsOptions())
        assert wh.con.execute("SELECT seq, outcome, reason FROM pair_checks").fetchall() == incremental


def test_a_session_that_ended_long_ago_does_not_wait(wh):
    log = Log("old")  # 2024: over
    log.edit("main.py", [{"insert": "x = 1\n"}])
    log.clock += 10
    log.edit("main.py", [{"skip": 6}, {"insert": "pr"}])
    _undefined(log, 1, "pr")
    ingest_events(wh, log.events)
    report = build_pairs(wh, PairsOptions())
    assert (report.waiting, report.pairs) == (0, 1), report.summary()


def test_a_line_of_a_paste_the_cursor_did_not_end_on_was_not_being_typed(wh):
    log = Log("paste")
    log.edit("main.py", [{"insert": "def f(x)\n    return x\n\nprint(f(1))\n"}])  # pasted: the cursor at the end
    log.add("lsp_diagnostic", path="main.py", range={"start": {"line": 0, "character": 8},
                                                     "end": {"line": 1, "character": 0}},
            severity=1, code="ruff[E999]", message="Expected `:`, found newline", has_code_action=False)
    log.clock += 10
    log.edit("main.py", [{"skip": 8}, {"insert": ":"}])  # the next burst: the missing colon, a fix
    ingest_events(wh, log.events)
    report = build_pairs(wh, PairsOptions())
    assert dict(report.filtered) == {} and report.pairs == 1, report.summary()
