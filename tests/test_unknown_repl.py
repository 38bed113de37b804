"""A repl id the warehouse does not know: an error from the Python API, not an empty result."""

from __future__ import annotations

import pytest

from events.errors import OtlakeError
from otlake.stages import ingest_events, verify
from warehouse.timetravel import UnknownRepl, require_repls

from .conftest import Log

LATER = 1_900_000_000_000_000  # µs, after every event of the logs here


@pytest.fixture
def stored(wh):
    log = Log("r1")
    log.type("main.py", "hi")
    log.snapshot()
    ingest_events(wh, log.events)
    return wh


def test_files_at_and_paths_at_refuse_an_unknown_repl(stored):
    travel = stored.travel()
    try:
        for read in (travel.files_at, travel.paths_at):
            with pytest.raises(UnknownRepl) as e:
                read("r2", LATER)
            assert e.value.repl_ids == ["r2"] and str(e.value).startswith("no repl 'r2' in the warehouse")
            assert isinstance(e.value, OtlakeError) and isinstance(e.value, LookupError)
        assert travel.files_at("r1", LATER) == {"main.py": "hi"}
        # a known repl before its first file is empty, not an error
        assert travel.paths_at("r1", 0) == [] and travel.files_at("r1", 0) == {}
        # the batched reader answers as the SQL function does: no file there
        assert travel.file_at(["r2", "r1"], ["main.py", "main.py"], [LATER, LATER]) == [None, "hi"]
    finally:
        travel.cur.close()
    assert stored.con.execute("SELECT file_at('r2', 'main.py', now())").fetchall() == [(None,)]


def test_require_repls_names_every_unknown_id_and_the_nearest_known_one(stored):
    require_repls(stored.con, ["r1", "r1"])
    with pytest.raises(UnknownRepl) as e:
        require_repls(stored.con, ["zz", "r1", "ab"])
    assert e.value.repl_ids == ["ab", "zz"] and "no repl 'ab', 'zz' in the warehouse" in str(e.value)
    with pytest.raises(UnknownRepl, match="did you mean r1[?]"):
        require_repls(stored.con, ["r1-"])


def test_verify_refuses_an_unknown_repl_before_recording_a_run(stored):
    with pytest.raises(UnknownRepl, match="no repl 'r9'"):
        verify(stored, ["r1", "r9"])
    assert stored.con.execute("SELECT count(*) FROM runs WHERE stage = 'verify'").fetchall() == [(0,)]
    report = verify(stored, ["r1"])
    assert (report.repls, report.snapshots, report.matched) == (1, 1, 1)
