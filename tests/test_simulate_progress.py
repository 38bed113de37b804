"""`otlake simulate` says what it is doing while it runs, and ends with commands that work on its log."""

from __future__ import annotations

import shlex

from click.testing import CliRunner

from events.simulator import simulate
from otlake.cli import main


def test_progress_reports_each_repl_then_the_check_and_changes_no_event():
    calls = []
    events = simulate(3, seed=4, progress=lambda *call: calls.append(call))
    states = calls[3][2]
    assert calls == [("typing", 1, 3), ("typing", 2, 3), ("typing", 3, 3), ("checking", 0, states),
                     ("checking", states, states)]
    assert states > 3  # several file states per repl went to the linter
    assert events == simulate(3, seed=4)


def test_the_cli_prints_its_steps_and_real_commands_to_try(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OTLAKE_HOME", str(tmp_path / "wh"))
    runner = CliRunner()
    result = runner.invoke(main, ["simulate", "--repls", "2", "--seed", "1", "--diagnostics", "ruff",
                                  "--out", "s.jsonl"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == "simulating 2 repls (seed 1) ..."
    assert "typed 2 repls in " in result.stderr
    assert "checking " in result.stderr and " file states with ruff: the diagnostics the users saw" in result.stderr
    tried = result.stdout.split("then, e.g. (a diagnostic was logged in repl-000000-8ad902 at ", 1)[1]
    commands = [line.strip() for line in tried.splitlines()[1:]]
    assert [c.split()[:2] for c in commands] == [["otlake", "ingest"], ["otlake", "replay"], ["otlake", "sql"]]
    outputs = []
    for command in commands:
        done = runner.invoke(main, shlex.split(command)[1:], catch_exceptions=False)
        assert done.exit_code == 0, (command, done.output)
        outputs.append(done.stdout)
    assert "stored" in outputs[0] and outputs[1].strip()  # the file as it was when the diagnostic was logged
    assert "main.py" in outputs[2]
