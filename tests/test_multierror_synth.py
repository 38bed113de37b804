"""User fixes in files with several errors at once, on real pyright and ruff: each error gets its own diff."""

from __future__ import annotations

import pytest

from lsp_runner.pool import LspPool
from lsp_runner.snapshot import Snapshot
from otlake.stages import PairsOptions, SynthOptions, build_pairs, ingest_events, run_synth
from synth.linediff import parse
from warehouse.store import Warehouse

from .conftest import Log

BUGGY = """import os, sys


def area(r)
    return 3.14 * r * r


def shout(p):
    return p.upper()


def total(xs):
    s = 0
    for x in xs
        s += x
    return s


print(area(2), shout("a"), totl([1, 2]), os.sep, sys.argv)
"""
# (line, bad text, fixed text): two syntax errors ten lines apart and an undefined name
BUGS = [(3, "def area(r)", "def area(r):"), (13, "    for x in xs", "    for x in xs:"),
        (18, "totl([1, 2])", "total([1, 2])")]


def _log_errors(log: Log, pool: LspPool) -> None:
    """Log what the meta-LSP reports on main.py now, as the editor would at a pause."""
    (result,) = pool.check([Snapshot("now", dict(log.texts), ("main.py",))])
    for d in result.diagnostics["main.py"]:
        if d.severity == 1:
            log.add("lsp_diagnostic", **d.to_event_fields())


def _replace(log: Log, bad: str, good: str) -> None:
    at = log.texts["main.py"].index(bad)
    log.edit("main.py", [{"skip": at}, {"delete": len(bad)}, {"insert": good}])


def _session(repl_id: str, pool: LspPool, burst: bool, order: list[int]) -> list[dict]:
    log = Log(repl_id)
    log.edit("main.py", [{"insert": BUGGY}])
    log.clock += 10
    log.edit("main.py", [{"skip": len(BUGGY)}, {"insert": "# done\n"}])  # a last burst elsewhere
    _log_errors(log, pool)
    for k in order:
        log.clock += 0 if burst else 10  # one burst (packets a second apart) or a pause after each fix
        _, bad, good = BUGS[k]
        _replace(log, bad, good)
        if not burst:
            _log_errors(log, pool)
    log.clock += 10
    return log.events


@pytest.fixture(scope="module")
def mined(tmp_path_factory):
    home = tmp_path_factory.mktemp("multi") / "wh"
    with LspPool(size=1) as pool:
        events = (_session("one-at-a-time", pool, burst=False, order=[0, 1, 2])
                  + _session("one-burst", pool, burst=True, order=[2, 0, 1]))
    with Warehouse(home) as wh:
        ingest_events(wh, events)
        pairs = build_pairs(wh, PairsOptions())
        run_synth(wh, SynthOptions())
        rows = wh.con.execute(
            """SELECT p.repl_id, p.code, p.start_line, d.accepted, d.failed_step, d.reason, d.diff
               FROM pairs p JOIN diffs d USING (pair_id) ORDER BY p.repl_id, p.start_line, p.code""").fetchall()
    return pairs, rows


def test_every_error_of_the_file_is_a_pair(mined):
    pairs, rows = mined
    assert pairs.balanced() and pairs.not_reproduced == 0, pairs.summary()
    for repl in ("one-at-a-time", "one-burst"):
        lines = {line for r, _, line, *_ in rows if r == repl}
        assert {3, 13, 18} <= lines, rows  # both syntax errors and the undefined name reproduce


@pytest.mark.parametrize("repl", ["one-at-a-time", "one-burst"])
def test_each_error_gets_an_accepted_diff_of_its_own_fix(mined, repl):
    _, rows = mined
    for line, bad, good in BUGS:
        mine = [r for r in rows if r[0] == repl and r[2] == line and r[4] != "no_fix_near_the_error"]
        assert mine, [r for r in rows if r[0] == repl]
        for *_, accepted, failed, reason, diff in mine:
            assert accepted, (line, failed, reason, diff)
            ops = parse(diff).ops
            # exactly this line rewritten, nothing of the other fixes
            assert [(op.sign, op.number) for op in ops] == [("-", line + 1), ("+", line + 1)], diff
            assert bad in ops[0].text and good in ops[1].text


def test_odd_files_go_through_pairs_and_synth(tmp_path):
    """CRLF line ends, a BOM, tabs, no final newline, an empty file and a diagnostic past the end."""
    log = Log("odd")
    crlf = "import os\r\n\r\ndef f(x)\r\n\treturn x\r\n\r\nprint(os.pth)"  # two errors, tabs, no final newline
    log.edit("a.py", [{"insert": crlf}])
    log.edit("b.py", [{"insert": "\ufeffprint(zz)\n"}])
    log.edit("c.py", [{"insert": ""}])
    with LspPool(size=1) as pool:
        (result,) = pool.check([Snapshot("now", dict(log.texts), ("a.py", "b.py"))])
    logged = [d for path in ("a.py", "b.py") for d in result.diagnostics[path] if d.severity == 1]
    for d in logged:
        log.add("lsp_diagnostic", **d.to_event_fields())
    log.add("lsp_diagnostic", path="c.py", range={"start": {"line": 5, "character": 0},
                                                  "end": {"line": 5, "character": 1}},
            severity=1, code="pyright[reportUndefinedVariable]", message='"q" is not defined', has_code_action=False)
    log.clock += 10
    _replace_in(log, "a.py", "def f(x)\r\n", "def f(x):\r\n")
    log.clock += 10
    _replace_in(log, "a.py", "os.pth", "os.path")
    log.clock += 10
    _replace_in(log, "b.py", "zz", "1")
    log.clock += 10
    with Warehouse(tmp_path / "wh") as wh:
        ingest_events(wh, log.events)
        pairs = build_pairs(wh, PairsOptions())
        assert pairs.balanced() and pairs.not_reproduced == 1, pairs.summary()  # c.py's line 5 does not exist
        report = run_synth(wh, SynthOptions())
        rows = wh.con.execute("""SELECT p.path, p.code, d.accepted, d.diff FROM pairs p JOIN diffs d USING (pair_id)
                                 ORDER BY p.path, p.start_line, p.code""").fetchall()
    assert report.by_source["user"].pairs == len(logged) == len(rows)
    assert all(accepted for _, _, accepted, _ in rows), rows
    assert {(path, diff) for path, _, _, diff in rows} == {
        ("a.py", "-3 def f(x)\r\n+3 def f(x):\r"), ("a.py", "-6 print(os.pth)\n+6 print(os.path)"),
        ("b.py", "-1 \ufeffprint(zz)\n+1 \ufeffprint(1)")}


def _replace_in(log: Log, path: str, bad: str, good: str) -> None:
    at = log.texts[path].index(bad)
    log.edit(path, [{"skip": at}, {"delete": len(bad)}, {"insert": good}])
