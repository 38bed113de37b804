"""The CLI, run in-process on real warehouses in temporary folders."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from otlake.cli import main

from .conftest import write_jsonl
from .test_ingest import busy_log


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("OTLAKE_HOME", str(tmp_path / "home"))
    runner = CliRunner()

    def invoke(*args, ok=True):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return invoke


@pytest.fixture
def ingested(cli, tmp_path):
    log = busy_log("r1", 9, 200)
    log.snapshot()
    f = write_jsonl(tmp_path / "in.jsonl", log.events, [b"{oops"])
    result = cli("ingest", str(f))
    return log, result


def test_every_command_has_help_with_an_example(cli):
    for name, command in main.commands.items():
        text = cli(name, "--help").output
        assert "Example" in text and f"otlake {name}" in text, name
        for sub in getattr(command, "commands", {}):  # a group's own commands too (otlake eval run, ...)
            text = cli(name, sub, "--help").output
            assert "Example" in text and f"otlake {name} {sub}" in text, f"{name} {sub}"


def test_ingest_prints_its_reconciliation(ingested):
    log, result = ingested
    assert f"in {len(log.events) + 1} = stored {len(log.events)} + duplicates 0 + quarantined 1" in result.output


def test_sql_formats(cli, ingested):
    as_json = json.loads(cli("sql", "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind",
                             "--format", "json").output)
    assert {"kind": "snapshot", "n": 2} in as_json
    csv_out = cli("sql", "SELECT error_kind FROM quarantine", "--format", "csv").output
    assert csv_out.splitlines() == ["error_kind", "malformed_json"]
    table = cli("sql", "SELECT 'a' AS x").output
    assert "| x |" in table and "| a |" in table and "1 row" in table


def test_sql_is_read_only_unless_write(cli, ingested):
    denied = cli("sql", "DELETE FROM events", ok=False)
    assert denied.exit_code == 1 and "read-only" in denied.output
    cli("sql", "CREATE TABLE notes (x INT)", "--write")
    assert json.loads(cli("sql", "SELECT count(*) AS n FROM notes", "--format", "json").output) == [{"n": 0}]


def test_replay_to_folder_and_one_file(cli, ingested, tmp_path):
    log, _ = ingested
    out = tmp_path / "tree"
    cli("replay", "r1", "--at", "2030-01-01T00:00:00Z", "--out", str(out))
    written = {str(p.relative_to(out)): p.read_text() for p in out.rglob("*") if p.is_file()}
    assert written == {p: t for p, t in log.texts.items() if t or p != "a.py"}
    assert cli("replay", "r1", "--path", "b.py").output == log.texts["b.py"]
    early = cli("replay", "r1", "--at", "2024-03-01T12:00:02Z", "--path", "b.py", ok=False)
    assert early.exit_code == 1 and "no readable file 'b.py'" in early.output


def test_replay_refuses_bad_arguments(cli, ingested, tmp_path):
    assert cli("replay", "r1", ok=False).exit_code == 2
    bad = cli("replay", "r1", "--at", "yesterday", "--path", "b.py", ok=False)
    assert bad.exit_code == 2 and "RFC 3339" in bad.output
    assert bad.output.count("e.g.") == 1


def test_replay_takes_an_instant_as_otlake_sql_prints_it(cli, ingested):
    log, _ = ingested
    printed = cli("sql", "SELECT max(ts) FROM events WHERE kind = 'ot' AND path = 'b.py'", "--format", "csv")
    instant = printed.output.strip().splitlines()[-1]
    assert " " in instant and instant.endswith("+00"), instant  # DuckDB's text, not RFC 3339
    assert cli("replay", "r1", "--at", instant, "--path", "b.py").output == log.texts["b.py"]


def test_an_unknown_repl_is_an_error_that_says_how_to_list_repls(cli, ingested, tmp_path):
    out = tmp_path / "tree"
    for args in (["replay", "r1x", "--at", "2030-01-01T00:00:00Z", "--out", str(out)],
                 ["replay", "r1x", "--at", "2030-01-01T00:00:00Z", "--path", "b.py"],
                 ["verify", "--repl", "r1x"]):
        result = cli(*args, ok=False)
        assert result.exit_code == 1, args
        assert "Error: no repl 'r1x' in the warehouse: did you mean r1?" in result.output, args
        assert 'otlake sql "SELECT repl_id, title FROM repls ORDER BY 1"' in result.output
        assert "Traceback" not in result.output
    assert not out.exists()  # nothing written for a repl that is not there
    # a refused verify records no run
    assert json.loads(cli("sql", "SELECT count(*) AS n FROM runs WHERE stage = 'verify'", "--format",
                          "json").output) == [{"n": 0}]
    both = cli("verify", "--repl", "r1", "--repl", "nope", "--repl", "gone", ok=False)
    assert both.exit_code == 1 and "no repl 'gone', 'nope' in the warehouse" in both.output


def test_a_repl_whose_every_record_was_quarantined_says_so(cli, tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"repl_id": "lost", "seq": 1, "ts": "yesterday", "kind": "repl"}])
    cli("ingest", str(bad))
    result = cli("replay", "lost", "--path", "main.py", ok=False)
    assert result.exit_code == 1
    assert "no repl 'lost' in the warehouse: 1 record was quarantined and none stored" in result.output
    assert "WHERE repl_id IN ('lost')" in result.output


def test_verify_command(cli, ingested):
    assert "2 snapshots: 2 match, 0 differ" in cli("verify").output


def test_commands_on_a_missing_warehouse_say_what_to_do(cli):
    result = cli("sql", "SELECT 1", ok=False)
    assert result.exit_code == 1 and "run `otlake ingest FILE` first" in result.output


def test_simulate_writes_a_session_log_that_ingests_cleanly(cli, tmp_path):
    out = tmp_path / "s.jsonl"
    written = cli("simulate", "--repls", "2", "--seed", "5", "--out", str(out)).output
    n = sum(1 for _ in out.open())
    assert f"wrote {n} events of 2 repls" in written
    ingested = cli("ingest", str(out)).output
    assert f"in {n} = stored {n} + duplicates 0 + quarantined 0" in ingested
    assert "2 snapshots: 2 match, 0 differ" in cli("verify").output


def test_demo_builds_verifies_and_shows_how_to_query(cli):
    first = cli("demo", "--repls", "2", "--seed", "3").output
    assert "snapshots: 2 match, 0 differ, 0 projection errors" in first
    assert "otlake replay repl-" in first and "file_at" in first
    # a second demo reuses the log and only finds duplicates
    second = cli("demo", "--repls", "2", "--seed", "3").output
    assert "stored 0 + duplicates" in second and "reusing the simulated sessions" in second
