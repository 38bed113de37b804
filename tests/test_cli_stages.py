"""`otlake pairs` and `otlake synth` options through the CLI, each on a copy of one small real warehouse.

Real pyright and ruff decide the pairs; the LM is tests/lm_server.py's scripted
server over real HTTP. Each test asserts on what its option changes.
"""

from __future__ import annotations

import shutil

import orjson
import pytest
from click.testing import CliRunner

from otlake.cli import main
from otlake.stages import ingest_events
from tests.lm_server import ScriptedLM, diff_reply, verdict_reply
from warehouse.store import Warehouse

from .test_pairs import scenario
from .test_synth_user import _session

ATTR = "pyright[reportAttributeAccessIssue]"
RIGHT = "-3 print(os.pth)\n+3 print(os.path)"
SCREEN = "-4 screen = turtle.screen\n+4 screen = turtle.Screen()"


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """A warehouse of three repls: u1 (three attribute typos, one fixed by the user), r1 and the private r2."""
    home = tmp_path_factory.mktemp("stages") / "wh"
    with Warehouse(home) as wh:
        ingest_events(wh, _session() + scenario())
    return home


@pytest.fixture
def home(ingested, tmp_path, monkeypatch):
    """A fresh copy of the ingested warehouse, as $OTLAKE_HOME."""
    copy = tmp_path / "wh"
    shutil.copytree(ingested, copy)
    monkeypatch.setenv("OTLAKE_HOME", str(copy))
    for name in ("OTLAKE_LM_MODEL", "OTLAKE_LM_API_BASE", "OTLAKE_LM_API_KEY", "OPENAI_API_BASE", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return copy


def otlake(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def query(home, sql: str, args: list | None = None) -> list[tuple]:
    with Warehouse(home, read_only=True) as wh:
        return wh.con.execute(sql, args or []).fetchall()


def decided(home) -> dict[str, int]:
    return dict(query(home, "SELECT repl_id, count(*) FROM pair_checks GROUP BY 1 ORDER BY 1"))


def test_pairs_repls_decides_only_those_repls_and_takes_commas_and_repeats(home):
    otlake("pairs", "--repls", "r2")
    assert decided(home) == {"r2": 1}
    assert query(home, "SELECT reason FROM pair_checks") == [("private_repl",)]
    otlake("pairs", "--repls", "u1,r2", "--repls", "nobody")
    assert decided(home) == {"r2": 1, "u1": 3}  # r2's diagnostic was decided already; u1's three now


def test_pairs_since_decides_only_later_diagnostics(home):
    (cut,) = query(home, "SELECT min(ts) FROM diagnostics WHERE repl_id = 'r1' AND code = 'ruff[F821]'")[0]
    later = query(home, "SELECT count(*) FROM diagnostics WHERE ts >= ?", [cut])[0][0]
    otlake("pairs", "--since", cut.isoformat().replace("+00:00", "Z"))
    assert sum(decided(home).values()) == later < query(home, "SELECT count(*) FROM diagnostics")[0][0]
    assert query(home, "SELECT count(*) FROM pair_checks c JOIN diagnostics d USING (repl_id, seq) "
                       "WHERE d.ts < ?", [cut]) == [(0,)]


def test_pairs_stylistic_replaces_the_rules_filtered_as_stylistic(home):
    otlake("pairs", "--repls", "u1,r1", "--stylistic", f"{ATTR},ruff[E999]")
    reasons = dict(query(home, "SELECT code, list(DISTINCT coalesce(reason, outcome)) FROM pair_checks "
                               "WHERE code IN (?, 'ruff[E501]') GROUP BY 1", [ATTR]))
    assert reasons[ATTR] == ["stylistic_rule"]  # every attribute diagnostic, in both repls
    assert "stylistic_rule" not in reasons["ruff[E501]"]  # no longer on the list: checked like any other
    (params,) = query(home, "SELECT params->'$.stylistic' FROM runs WHERE stage = 'pairs'")[0]
    assert orjson.loads(params) == [ATTR, "ruff[E999]"]


def test_pairs_workers_and_timeout_give_the_same_pairs_and_are_checked(home, ingested, tmp_path, monkeypatch):
    otlake("pairs", "--workers", "2", "--timeout", "60")
    two = query(home, "SELECT pair_id, content, reproduced_message FROM pairs ORDER BY 1")
    lsp = orjson.loads(query(home, "SELECT timings->'$.checker' FROM runs WHERE stage = 'pairs'")[0][0])
    params = orjson.loads(query(home, "SELECT params FROM runs WHERE stage = 'pairs'")[0][0])
    assert params["workers"] == 2 and 1 <= lsp["servers_started"] <= 2  # never more servers than workers
    one_home = tmp_path / "one"
    shutil.copytree(ingested, one_home)
    monkeypatch.setenv("OTLAKE_HOME", str(one_home))
    otlake("pairs")
    assert query(one_home, "SELECT pair_id, content, reproduced_message FROM pairs ORDER BY 1") == two
    assert len(two) == 5  # u1's three and r1's two
    refused = otlake("pairs", "--timeout", "0", ok=False)
    assert refused.exit_code == 2 and "--timeout" in refused.output and "0.1" in refused.output


def test_pairs_batch_snapshots_caps_the_snapshots_of_one_ruff_process(home, ingested, tmp_path):
    otlake("pairs", "--batch-snapshots", "1")
    ruff_q = "SELECT reconciliation->>'$.snapshots', timings->>'$.checker.ruff_runs', params->>'$.batch_snapshots' " \
             "FROM runs WHERE stage = 'pairs'"
    (snapshots, by_one, recorded) = query(home, ruff_q)[0]
    whole = tmp_path / "whole"
    shutil.copytree(ingested, whole)
    otlake("pairs", "--batch-snapshots", "64", "--home", str(whole))
    (snapshots_all, _, recorded_all) = query(whole, ruff_q)[0]
    assert int(snapshots) >= 3 and snapshots == snapshots_all and (recorded, recorded_all) == ("1", "64")
    assert int(by_one) == int(snapshots)  # one ruff process per snapshot (tests/test_pairs.py counts the rest)
    checks = "SELECT repl_id, seq, outcome, reason, code, pair_id FROM pair_checks ORDER BY ALL"
    assert query(home, checks) == query(whole, checks)


def test_synth_limit_caps_the_diffs_and_a_rerun_does_the_rest(home):
    otlake("pairs")
    first = otlake("synth", "--limit", "1")
    assert "user: pairs 1 = " in first.output
    assert query(home, "SELECT count(*), count(DISTINCT source) FROM diffs") == [(1, 1)]
    otlake("synth")
    assert query(home, "SELECT count(*) FROM diffs") == [(5,)]


def test_synth_workers_give_the_same_diffs(home, ingested, tmp_path, monkeypatch):
    otlake("pairs")
    otlake("synth", "--workers", "2")
    rows = "SELECT pair_id, source, diff, accepted, failed_step FROM diffs ORDER BY 1"
    two = query(home, rows)
    one_home = tmp_path / "one"
    shutil.copytree(home, one_home)
    monkeypatch.setenv("OTLAKE_HOME", str(one_home))
    with Warehouse(one_home) as wh:
        wh.con.execute("DELETE FROM diffs")
    otlake("synth")
    assert query(one_home, rows) == two and any(r[3] for r in two)


def _lm(judge_accepts: bool) -> ScriptedLM:
    """Right diffs for r1's screen pair and u1's pth pair, a diff that does not apply for the others."""
    return ScriptedLM(script=[
        ("## fixed_code ##", verdict_reply(judge_accepts, "fine" if judge_accepts else "not what was meant")),
        ('"screen" is not', diff_reply(SCREEN)),
        ('"pth" is not', diff_reply(RIGHT)),
    ], default=diff_reply("-1 nothing here"))


def test_synth_source_lm_with_limit_fewshot_concurrency_and_judge(home, monkeypatch):
    otlake("pairs")
    otlake("synth")  # the users' verified fixes: few-shot examples for the LM
    rows = """SELECT p.error_line, d.accepted, d.failed_step, d.fewshot_ids, d.verification FROM diffs d
              JOIN pairs p USING (pair_id) WHERE d.model = ? ORDER BY p.repl_id, p.ts"""
    pth = query(home, "SELECT pair_id FROM pairs WHERE message LIKE '\"pth\"%'")[0][0]
    # r1's two pairs come first (by repl, then time); u1's pth fix is outside that batch, so it is the demo
    with _lm(judge_accepts=False) as server:
        monkeypatch.setenv("OTLAKE_LM_API_BASE", server.api_base)
        otlake("synth", "--source", "lm", "--lm", "openai/judged", "--judge", "--fewshot", "1", "--limit", "2",
               "--concurrency", "1")
        assert server.max_in_flight <= 1
        repairs = [b for b in server.requests if "## fixed_code ##" not in str(b["messages"][-1])]
        assert len(repairs) == 2 and all("print(os.path)" in str(b["messages"][:-1]) for b in repairs)
    first = query(home, rows, ["openai/judged"])
    assert [(r[0], r[1], r[2]) for r in first] == [("screen = turtle.screen", False, "judge"),
                                                   ("util.nothere()", False, "applies")]
    assert all(orjson.loads(r[3]) == [pth] for r in first)
    with _lm(judge_accepts=True) as server:
        monkeypatch.setenv("OTLAKE_LM_API_BASE", server.api_base)
        otlake("synth", "--source", "lm", "--lm", "openai/judged", "--judge", "--fewshot", "0")
        assert all("print(os.path)" not in str(b["messages"][:-1]) for b in server.requests)
    rest = query(home, rows, ["openai/judged"])[2:]
    assert [(r[0], r[1]) for r in rest] == [("print(os.pth)", True), ("print(os.sepp)", False),
                                            ("print(os.nme)", False)]
    assert all(orjson.loads(r[3]) == [] for r in rest)
    assert [s["step"] for s in orjson.loads(rest[0][4])][-1] == "judge"
    with _lm(judge_accepts=False) as server:
        monkeypatch.setenv("OTLAKE_LM_API_BASE", server.api_base)
        otlake("synth", "--source", "lm", "--lm", "openai/plain", "--limit", "1")
        assert not any("## fixed_code ##" in m for m in server.user_messages())  # no --judge: no judge call
    (plain,) = query(home, rows, ["openai/plain"])
    assert plain[:3] == ("screen = turtle.screen", True, None)
    assert "judge" not in [s["step"] for s in orjson.loads(plain[4])]
