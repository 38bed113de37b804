"""DebugBench repls with several bugs: combined files, sessions that ingest cleanly, fixed into the oracle."""

from __future__ import annotations

import ast
import itertools
import json
from collections import defaultdict

import pytest

from events.simulator.debugbench import (
    FIX_STYLES,
    DebugBenchError,
    debugbench_sessions,
    multi_bug_files,
    normalized_lines,
    write_manifest,
)
from events.simulator.diagnostics import LintState, ruff_linter
from events.simulator.jsonl import write_jsonl
from events.validate import parse_ts
from lsp_runner.diagnostic import normalize_message
from lsp_runner.linter import MetaLspLinter
from otlake.dataset_cli import DEBUGBENCH
from otlake.stages import ingest_files, verify
from warehouse.store import Warehouse

from .conftest import apply_contract_ops

REPLS, SEED = 3, 5


@pytest.fixture(scope="module")
def files():
    return multi_bug_files(DEBUGBENCH, REPLS, SEED)


@pytest.fixture(scope="module")
def events(files):
    return debugbench_sessions(DEBUGBENCH, REPLS, SEED, linter=MetaLspLinter(), files=files)


def by_repl(events: list[dict]) -> dict[str, list[dict]]:
    out = defaultdict(list)
    for e in events:
        out[e["repl_id"]].append(e)
    return {r: sorted(evs, key=lambda e: e["seq"]) for r, evs in out.items()}


def ast_dump(code: str) -> str:
    return ast.dump(ast.parse(code))


def test_each_file_plants_bugs_of_distinct_kinds_that_undo_into_the_oracle():
    many = multi_bug_files(DEBUGBENCH, 12, 3)
    assert len({f.slug for f in many}) == 12  # a round of slugs before any repeats
    assert {f.fix_style for f in many} == set(FIX_STYLES)
    for f in many:
        assert 2 <= len(f.bugs) <= 4
        assert len({b.subtype for b in f.bugs}) == len(f.bugs)
        assert not _parses(f.buggy) or ast_dump(f.buggy) != ast_dump(f.oracle)
        oracle, buggy = f.oracle.split("\n"), f.buggy.split("\n")
        hunks = sorted((h for b in f.bugs for h in b.hunks), key=lambda h: h.oracle_start)
        for a, b in itertools.pairwise(hunks):
            assert a.oracle_end < b.oracle_start  # at least one untouched line between two bugs
        undone, at = [], 0  # put the oracle's lines back in place of every planted hunk
        for h in hunks:
            undone += buggy[at : h.buggy_start] + oracle[h.oracle_start : h.oracle_end]
            at = h.buggy_end
        assert undone + buggy[at:] == oracle, f.slug
        for bug in f.bugs:
            assert bug.lines and all(0 <= line < len(buggy) for line in bug.lines)


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


def test_normalized_lines_drop_tabs_trailing_spaces_and_outer_blank_lines():
    assert normalized_lines("\n\nclass A:\r\n\tx = 1   \n\n") == ["class A:", "    x = 1"]


def test_sessions_ingest_without_quarantine_and_snapshots_match(events, tmp_path):
    log = tmp_path / "db.jsonl"
    write_jsonl(events, log)
    with Warehouse(tmp_path / "wh") as wh:
        report = ingest_files(wh, [log])
        assert (report.records_in, report.stored, report.quarantined) == (len(events), len(events), 0)
        assert wh.con.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)
        rows = wh.con.execute("SELECT repl_id, is_private, language FROM repls ORDER BY repl_id").fetchall()
        assert len(rows) == REPLS and all(private is False and lang == "python3" for _, private, lang in rows)
        check = verify(wh)
        assert (check.snapshots, check.matched, len(check.mismatches)) == (REPLS, REPLS, 0)


def test_the_final_main_py_is_the_oracle_and_errors_were_logged_before_the_fix(events, files):
    oracle_errors = [{(d["code"], normalize_message(d["message"])) for d in found if d["severity"] == 1}
                     for found in MetaLspLinter()([LintState("main.py", f.oracle, {"main.py": f.oracle}) for f in files])]
    repls = by_repl(events)
    assert sorted(repls) == sorted(f.repl_id for f in files)
    for f, known in zip(files, oracle_errors):
        evs = repls[f.repl_id]
        assert evs[0]["kind"] == "repl" and evs[0]["is_private"] is False and evs[-1]["kind"] == "snapshot"
        text, typed, before_fix = "", False, []
        for e in evs:
            if e["kind"] == "ot":
                assert e["path"] == "main.py"
                if typed and text == f.buggy:
                    break  # the first edit of the fixing
                text = apply_contract_ops(text, e["ops"])
            elif e["kind"] == "run":
                typed = True
            elif e["kind"] == "lsp_diagnostic" and e["severity"] == 1:
                before_fix.append((e["code"], normalize_message(e["message"]), e["range"]["start"]["line"]))
        assert typed and text == f.buggy, f"{f.repl_id}: the buggy file was not typed whole before the run"
        planted = {d for d in before_fix if d[:2] not in known}  # errors the oracle does not have
        assert len(planted) >= 2, (f.repl_id, before_fix)
        final = evs[-1]["files"]["main.py"]
        assert ast_dump(final) == ast_dump(f.oracle), f.repl_id
    styles = {f.fix_style for f in files}
    assert styles == set(FIX_STYLES)


def test_scattered_fixes_add_unrelated_lines_and_one_burst_has_no_pause_between_fixes(files):
    many = multi_bug_files(DEBUGBENCH, 9, 2)
    evs = by_repl(debugbench_sessions(DEBUGBENCH, 9, 2, linter=ruff_linter, files=many))
    for f in many:
        final = evs[f.repl_id][-1]["files"]["main.py"]
        assert ast_dump(final) == ast_dump(f.oracle)
        if f.fix_style == "scattered":
            assert final != f.oracle  # a comment or a blank line more
        else:
            assert final == f.oracle
    burst = next(f for f in many if f.fix_style == "one_burst")
    ots = [e for e in evs[burst.repl_id] if e["kind"] == "ot"]
    runs = [e["seq"] for e in evs[burst.repl_id] if e["kind"] == "run"]
    fixing = [e["ts"] for e in ots if runs[0] < e["seq"] < runs[1]]
    gaps = [parse_ts(b) - parse_ts(a) for a, b in itertools.pairwise(fixing)]
    assert fixing and max(gaps) < 2_000_000  # under the user-fix miner's pause


def test_same_seed_same_events_other_seed_differs(tmp_path):
    first = debugbench_sessions(DEBUGBENCH, 2, 9, linter=ruff_linter)
    assert debugbench_sessions(DEBUGBENCH, 2, 9, linter=ruff_linter) == first
    assert debugbench_sessions(DEBUGBENCH, 2, 10, linter=ruff_linter) != first
    write_manifest(multi_bug_files(DEBUGBENCH, 2, 9), tmp_path / "m.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["repl_id"] for r in rows] == sorted({e["repl_id"] for e in first})
    assert all(b["subtype"] and b["lines"] for r in rows for b in r["bugs"])


def test_a_folder_without_debugbench_files_is_a_clear_error(tmp_path):
    with pytest.raises(DebugBenchError, match="no DebugBench files"):
        multi_bug_files(tmp_path, 1, 0)
    (tmp_path / "python3_missing_colons.json").write_text("{not json")
    with pytest.raises(DebugBenchError, match="python3_missing_colons.json: not a DebugBench JSON list"):
        multi_bug_files(tmp_path, 1, 0)
