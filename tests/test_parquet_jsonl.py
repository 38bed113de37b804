"""A session written as Parquet (events.parquet) and as JSON lines is the same events: duplicates, never conflicts.

And a Parquet file is read row by row: a row that is not an event is a bad record, not a failed file.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from events.errors import OtlakeError
from events.parquet import events_to_table, read_parquet, write_parquet
from events.simulator import simulate, write_jsonl
from otlake.cli import main
from otlake.stages import ingest_files
from warehouse.store import Warehouse


@functools.cache
def session() -> tuple[dict, ...]:
    return tuple(simulate(3, seed=7))


def test_the_session_has_what_the_parquet_form_once_lost():
    """editor.detail objects (Parquet kept them as strings) and explicit `crc32: null` (Parquet dropped it)."""
    events = session()
    assert sum(1 for e in events if e["kind"] == "editor" and isinstance(e.get("detail"), dict)) > 50
    assert sum(1 for e in events if e["kind"] == "ot" and "crc32" in e and e["crc32"] is None) > 10


@pytest.mark.parametrize("first", ["jsonl", "parquet"])
def test_jsonl_and_parquet_of_one_session_are_duplicates(tmp_path, first):
    events = list(session())
    files = {"jsonl": tmp_path / "s.jsonl", "parquet": tmp_path / "s.parquet"}
    write_jsonl(events, files["jsonl"])
    write_parquet(events, files["parquet"])
    second = "parquet" if first == "jsonl" else "jsonl"
    with Warehouse(tmp_path / "wh") as wh:
        one = ingest_files(wh, [files[first]])
        assert (one.stored, one.quarantined) == (len(events), 0), one.summary()
        two = ingest_files(wh, [files[second]])
        assert (two.stored, two.duplicates, two.quarantined, two.already_quarantined) == (0, len(events), 0, 0), \
            two.summary()
        assert wh.con.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)


def _events_of(path: Path) -> list[dict]:
    records = list(read_parquet(path))
    assert all(r.error is None for r in records)
    return [r.event for r in records]


def test_parquet_keeps_every_json_value_of_detail_and_nonce(tmp_path):
    base = {"repl_id": "r", "ts": "2024-03-01T12:00:00.123456+00:00", "kind": "editor", "action": "cursor"}
    details = [{"line": 3, "character": 0}, "plain text", '{"looks": "like json"}', [1, "a", None], 1.5, 7, True,
               {"a": None, "b": {"c": []}}, ""]
    events = [{**base, "seq": i, "detail": d} for i, d in enumerate(details)]
    events += [{**base, "seq": 20, "kind": "ot", "path": "a.py", "version": 1, "ops": [{"insert": "x"}],
                "nonce": "n-1"},
               {**base, "seq": 21, "kind": "ot", "path": "a.py", "version": 2, "ops": [{"skip": 1}], "nonce": 5}]
    write_parquet(events, tmp_path / "e.parquet")
    assert _events_of(tmp_path / "e.parquet") == events


def test_write_parquet_refuses_a_field_it_has_no_column_for(tmp_path):
    event = {"repl_id": "r", "seq": 1, "ts": "2024-03-01T12:00:00Z", "kind": "shell", "command": "ls", "cwd": "/"}
    with pytest.raises(ValueError, match="no column for: cwd"):
        write_parquet([event], tmp_path / "e.parquet")


def test_a_plain_string_detail_column_of_another_writer_stays_text(tmp_path):
    table = pa.table({"repl_id": ["r"], "seq": [1], "ts": ["2024-03-01T12:00:00Z"], "kind": ["editor"],
                      "action": ["cursor"], "detail": ['{"line": 1}']})
    pq.write_table(table, tmp_path / "other.parquet")
    assert _events_of(tmp_path / "other.parquet")[0]["detail"] == '{"line": 1}'


# -- Parquet files that are damaged or odd --------------------------------------------------------------

def _unchecked_strings(values: list[bytes]) -> pa.Array:
    """A string array holding bytes that may not be UTF-8 (as a broken writer leaves them)."""
    return pa.array(values, pa.binary()).view(pa.string())


def test_rows_that_are_not_events_are_quarantined_and_the_rest_is_stored(tmp_path):
    good = [{"repl_id": "r", "seq": i, "ts": f"2024-03-01T12:00:0{i}.000000Z", "kind": "editor", "action": "cursor",
             "detail": {"line": i}} for i in range(1, 5)]
    table = events_to_table(good)
    table = table.set_column(0, "repl_id", _unchecked_strings([b"r", b"r\xff", b"r", b"r"]))
    at = table.schema.get_field_index("detail")
    detail = pa.ExtensionArray.from_storage(pa.json_(), pa.array(['{"line":1}', '{"line":2}', "{oops", '"x"']))
    table = table.set_column(at, "detail", detail)
    ns = table.column("ts").cast(pa.int64()).to_numpy() * 1000 + 789
    table = table.set_column(2, "ts", pa.array(ns, pa.timestamp("ns", tz="UTC")))
    pq.write_table(table, tmp_path / "odd.parquet")
    with Warehouse(tmp_path / "wh") as wh:
        report = ingest_files(wh, [tmp_path / "odd.parquet"])
        assert (report.records_in, report.stored, report.quarantined) == (4, 2, 2), report.summary()
        got = wh.con.execute("SELECT origin, error_kind, repl_id, message, raw FROM quarantine ORDER BY origin").fetchall()
        assert [(o.rsplit(":", 1)[1], k) for o, k, *_ in got] == [("row 2", "invalid_unicode"),
                                                                   ("row 3", "malformed_json")]
        assert got[0][2] == "r\\udcff" and "repl_id holds bytes that are not UTF-8" in got[0][3]
        assert got[0][4].startswith('{"repl_id":"r\\udcff","seq":2')  # the row as JSON, the bad byte escaped
        assert "column detail: not valid JSON" in got[1][3] and got[1][2] == "r"
        # nanoseconds are truncated to microseconds, as for RFC 3339 text
        assert wh.con.execute("SELECT strftime(ts, '%f') FROM events ORDER BY seq").fetchall() == [
            ("000000",), ("000000",)]


def test_a_file_that_is_not_parquet_is_an_error_naming_it(tmp_path, monkeypatch):
    bad = tmp_path / "not.parquet"
    bad.write_bytes(b"PAR1 but not really")
    with Warehouse(tmp_path / "wh") as wh, pytest.raises(OtlakeError, match=r"cannot read .*not\.parquet as Parquet"):
        ingest_files(wh, [bad])
    monkeypatch.setenv("OTLAKE_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(main, ["ingest", str(bad)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot read" in result.output and "not.parquet as Parquet" in result.output
