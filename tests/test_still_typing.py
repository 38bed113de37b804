"""The still_typing filter: a diagnostic on a line the user was in the middle of typing is no repair example."""

from __future__ import annotations

from otlake.pairs import PairsOptions, build_pairs
from synth.still_typing import burst_versions, still_typing
from warehouse.ingest import ingest_events

from .conftest import Log


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
