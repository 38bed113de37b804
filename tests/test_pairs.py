"""The pairs stage on real pyright and ruff processes: filters, reproduction at the logged instant, resume."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib

import pytest

from lsp_runner.config import LspConfig
from otlake.stages import (
    PairsOptions,
    SynthOptions,
    build_pairs,
    ingest_events,
    ingest_files,
    run_synth,
)
from warehouse.store import Warehouse

from .conftest import Log, write_jsonl
from .killing import kill_at_progress

ATTR = "pyright[reportAttributeAccessIssue]"
MAIN = "import turtle\nimport util\n\nscreen = turtle.screen\nutil.nothere()\n"


def diag(log: Log, path: str, line: int, code: str, message: str, action: bool = False, severity: int = 1):
    return log.add("lsp_diagnostic", path=path, range={"start": {"line": line, "character": 0},
                                                       "end": {"line": line, "character": 5}},
                   severity=severity, code=code, message=message, has_code_action=action)


def scenario() -> list[dict]:
    """Two repls; each logged diagnostic ends in a different, known place."""
    log = Log("r1")
    log.edit("util.py", [{"insert": "def helper(n):\n    return n\n"}])
    log.edit("main.py", [{"insert": MAIN}])
    log.edit("big.py", [{"insert": "x = 1\n" * 100}])
    log.edit("notes.md", [{"insert": "# notes\n"}])
    diag(log, "main.py", 3, ATTR, '"screen" is not a known attribute of module "turtle"')    # pair
    diag(log, "main.py", 4, ATTR, "'nothere' is not a known attribute of module 'util'")     # pair: imports resolve
    diag(log, "main.py", 1, ATTR, '"helper" is not a known attribute of module "util"')      # not reproduced
    diag(log, "main.py", 3, "ruff[E501]", "Line too long (99 > 88)", severity=2)              # stylistic
    diag(log, "main.py", 0, "ruff[F401]", "`turtle` imported but unused", action=True)       # code action
    diag(log, "notes.md", 0, "pyright[error]", "not python")                                  # non-Python file
    diag(log, "gone.py", 0, "ruff[F821]", "Undefined name `x`")                               # no such file
    diag(log, "big.py", 0, "ruff[F821]", "Undefined name `x`")                                # too large
    # the user fixes line 3; the same diagnostic logged afterwards no longer reproduces
    log.edit("main.py", [{"skip": 43}, {"delete": 6}, {"insert": "Screen()"}])
    diag(log, "main.py", 3, ATTR, '"screen" is not a known attribute of module "turtle"')    # not reproduced
    # a packet whose CRC is wrong: the file's content is unknown from then on
    log.edit("bad.py", [{"insert": "y = z\n"}])
    broken = log.edit("bad.py", [{"skip": 6}, {"insert": "w = 1\n"}])
    broken["crc32"] = zlib.crc32(b"something else")
    diag(log, "bad.py", 0, "ruff[F821]", "Undefined name `z`")                                # content unknown
    private = Log("r2", private=True)
    private.edit("main.py", [{"insert": "print(x)\n"}])
    diag(private, "main.py", 0, "pyright[reportUndefinedVariable]", '"x" is not defined')     # private repl
    return log.events + private.events


OPTIONS = PairsOptions(config=LspConfig(max_file_bytes=300), batch_snapshots=2)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    home = tmp_path_factory.mktemp("pairs") / "wh"
    with Warehouse(home) as wh:
        ingest_events(wh, scenario())
        report = build_pairs(wh, OPTIONS)
        tables = _dump(wh)
    return home, report, tables


def _dump(wh) -> dict:
    return {
        "pairs": wh.con.execute(
            """SELECT pair_id, repl_id, seq, path, ts, code, severity, message, start_line, error_line, content,
                      reproduced_message, language, owner, title FROM pairs ORDER BY pair_id""").fetchall(),
        "pair_checks": wh.con.execute(
            "SELECT repl_id, seq, outcome, reason, code, pair_id FROM pair_checks ORDER BY repl_id, seq").fetchall(),
        "quarantine": wh.con.execute(
            """SELECT key, repl_id, seq, path, error_kind, ts FROM quarantine WHERE source = 'pairs'
               ORDER BY key""").fetchall(),
    }


def test_each_diagnostic_ends_where_it_should(built):
    _, report, _ = built
    assert report.diagnostics_in == 11 and report.balanced()
    assert report.pairs == 2 and report.pairs_written == 2
    assert report.not_reproduced == 2
    assert dict(report.filtered) == {"stylistic_rule": 1, "has_code_action": 1, "non_python_file": 1,
                                     "file_too_large": 1, "private_repl": 1}
    assert dict(report.quarantined) == {"file_missing": 1, "file_content_unknown": 1}
    # four reached the language servers with this rule; two reproduced
    assert report.rates() == [(ATTR, 4, 2, 0.5)]


def test_pairs_hold_the_code_at_the_logged_instant(built):
    _, _, tables = built
    rows = {r[8]: r for r in tables["pairs"]}  # by start line
    assert sorted(rows) == [3, 4]
    line3, line4 = rows[3], rows[4]
    assert line3[9] == "screen = turtle.screen" and line3[10] == MAIN  # before the fix, not after
    assert line4[9] == "util.nothere()"
    assert line4[11] == '"nothere" is not a known attribute of module "util"'  # what pyright says now
    assert line3[12:] == ("python3", "ada", "demo")
    assert len({r[0] for r in tables["pairs"]}) == 2


def test_quarantine_names_the_diagnostic(built):
    _, _, tables = built
    assert sorted((q[3], q[4]) for q in tables["quarantine"]) == [("bad.py", "file_content_unknown"),
                                                                  ("gone.py", "file_missing")]
    assert all(q[0] == f"{q[1]}/{q[2]}" for q in tables["quarantine"])


def test_a_second_run_decides_nothing_again(built):
    home, _, tables = built
    with Warehouse(home) as wh:
        again = build_pairs(wh, OPTIONS)
        assert (again.diagnostics_in, again.already_decided, again.snapshots) == (0, 11, 0)
        assert _dump(wh) == tables
        runs = wh.con.execute("SELECT status, reconciliation->>'$.out' FROM runs WHERE stage = 'pairs' "
                              "ORDER BY started_at").fetchall()
        assert runs == [("done", "2"), ("done", "0")]


def test_repls_and_since_narrow_the_run(tmp_path):
    with Warehouse(tmp_path / "wh") as wh:
        events = scenario()
        ingest_events(wh, events)
        only_private = build_pairs(wh, PairsOptions(repls=("r2",)))
        assert (only_private.diagnostics_in, dict(only_private.filtered)) == (1, {"private_repl": 1})
        late_us = wh.con.execute("SELECT epoch_us(max(ts)) FROM diagnostics WHERE repl_id = 'r1'").fetchall()[0][0]
        last = build_pairs(wh, PairsOptions(since_us=late_us, config=OPTIONS.config))
        assert (last.diagnostics_in, dict(last.quarantined)) == (1, {"file_content_unknown": 1})


def _killed_env(home) -> dict:
    return {**os.environ, "OTLAKE_HOME": str(home), "OTLAKE_TRACE": "1", "PYRIGHT_PYTHON_IGNORE_WARNINGS": "1"}


def _many_repls() -> list[dict]:
    events = []
    for r in range(6):  # six repls (partitions), each with three instants of its own
        log = Log(f"r{r + 3}")
        log.edit("main.py", [{"insert": "import os\n"}])
        for i in range(3):
            log.edit("main.py", [{"skip": len(log.texts["main.py"])}, {"insert": f"v{i} = os.nothing{i}\n"}])
            diag(log, "main.py", i + 1, ATTR, f'"nothing{i}" is not a known attribute of module "os"')
        events += log.events
    return events


def test_batch_snapshots_caps_the_snapshots_of_one_checker_call(tmp_path):
    """Snapshots go to the checker (one ruff process each call) in chunks of batch_snapshots, gathered across
    repls: a repl with fewer snapshots than that does not cost a call of its own."""
    f = write_jsonl(tmp_path / "in.jsonl", _many_repls())
    runs = {}
    for n in (2, 64):
        with Warehouse(tmp_path / f"wh{n}") as wh:
            ingest_files(wh, [f])
            report = build_pairs(wh, PairsOptions(batch_snapshots=n))
            runs[n] = (report.snapshots, report.lsp["ruff_runs"], _dump(wh)["pair_checks"])
    assert runs[2][0] == runs[64][0] == 18 and runs[2][2] == runs[64][2]
    assert (runs[2][1], runs[64][1]) == (12, 1)  # six repls of three snapshots: 2 + 1 calls each, or 1 in all


def test_a_killed_run_restarts_and_ends_like_a_clean_one(tmp_path):
    f = write_jsonl(tmp_path / "in.jsonl", _many_repls())
    cmd = [sys.executable, "-m", "otlake", "pairs", "--batch-snapshots", "1"]
    for name in ("killed", "clean"):
        with Warehouse(tmp_path / name) as wh:
            ingest_files(wh, [f])
    kill_at_progress(cmd, _killed_env(tmp_path / "killed"), 2)
    with Warehouse(tmp_path / "killed") as wh:
        partial = dict(wh.con.execute("SELECT repl_id, count(*) FROM pair_checks GROUP BY 1").fetchall())
        (status,) = wh.con.execute("SELECT status FROM runs WHERE stage = 'pairs'").fetchall()[0]
    # whole repls only: a partition's rows and its markers are committed together or redone
    assert 2 <= len(partial) < 6 and set(partial.values()) == {3}
    assert status == "running"
    done = subprocess.run(cmd, env=_killed_env(tmp_path / "killed"), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    left = 18 - 3 * len(partial)
    assert f"diagnostics in {left} = pairs {left} " in done.stdout
    with Warehouse(tmp_path / "killed") as killed, Warehouse(tmp_path / "clean") as clean:
        build_pairs(clean, PairsOptions())
        assert _dump(killed) == _dump(clean)
        assert len(_dump(clean)["pairs"]) == 18


def test_a_killed_synth_run_restarts_and_ends_like_a_clean_one(tmp_path):
    """synth, killed after two of six repls: their diffs rows stay, the rerun does the other four."""
    f = write_jsonl(tmp_path / "in.jsonl", _many_repls())
    for name in ("killed", "clean"):
        with Warehouse(tmp_path / name) as wh:
            ingest_files(wh, [f])
            build_pairs(wh, PairsOptions())
    cmd = [sys.executable, "-m", "otlake", "synth"]
    kill_at_progress(cmd, _killed_env(tmp_path / "killed"), 2)
    diffs = """SELECT p.repl_id, d.source, d.model, d.diff, d.accepted, d.failed_step, d.reason
               FROM diffs d JOIN pairs p USING (pair_id) ORDER BY ALL"""
    with Warehouse(tmp_path / "killed") as wh:
        partial = dict(wh.con.execute("SELECT p.repl_id, count(*) FROM diffs d JOIN pairs p USING (pair_id) "
                                      "GROUP BY 1").fetchall())
        assert wh.con.execute("SELECT status FROM runs WHERE stage = 'synth'").fetchall() == [("running",)]
    assert 2 <= len(partial) < 6 and set(partial.values()) == {3}  # whole repls only
    done = subprocess.run(cmd, env=_killed_env(tmp_path / "killed"), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert f"user: pairs {18 - 3 * len(partial)} = " in done.stdout
    with Warehouse(tmp_path / "killed") as killed, Warehouse(tmp_path / "clean") as clean:
        run_synth(clean, SynthOptions())
        assert killed.con.execute(diffs).fetchall() == clean.con.execute(diffs).fetchall()
        assert len(clean.con.execute(diffs).fetchall()) == 18
