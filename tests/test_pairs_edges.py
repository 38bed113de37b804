"""Edge cases of the pairs and synth stages found in review: privacy unknown, clocks that step back, late events,
lone carriage returns, and a fixed file the servers could not check."""

from __future__ import annotations

from lsp_runner.diagnostic import Diagnostic
from lsp_runner.result import CheckResult
from otlake.stages import PairsOptions, build_pairs, ingest_events
from synth.verify import Verification, lsp_verdict

from .conftest import Log

UNDEF = "pyright[reportUndefinedVariable]"


def _diag(log: Log, line: int, name: str) -> dict:
    return log.add("lsp_diagnostic", path="main.py", range={"start": {"line": line, "character": 0},
                                                            "end": {"line": line, "character": len(name)}},
                   severity=1, code=UNDEF, message=f'"{name}" is not defined', has_code_action=False)


def test_a_repl_with_no_repl_event_counts_as_private(wh):
    log = Log("p1")
    log.edit("main.py", [{"insert": "print(zz)\n"}])
    _diag(log, 0, "zz")
    events = [e for e in log.events if e["kind"] != "repl"]
    ingest_events(wh, events)
    report = build_pairs(wh, PairsOptions())
    assert (report.pairs, dict(report.filtered)) == (0, {"private_repl": 1})


def test_a_diagnostic_sees_the_files_before_it_even_when_the_clock_stepped_back(wh):
    log = Log("c1")
    log.edit("main.py", [{"insert": "x = yy\n"}])
    log.clock += 100
    log.edit("main.py", [{"skip": 4}, {"delete": 2}, {"insert": "1"}])  # x = 1, at t+100
    log.clock -= 90  # the clock steps back: what follows has earlier times than the edit above
    _diag(log, 0, "yy")  # logged after `x = 1`: it cannot reproduce
    log.edit("main.py", [{"skip": 4}, {"delete": 1}, {"insert": "yy"}])  # x = yy again, still before t+100
    _diag(log, 0, "yy")  # this one saw `x = yy` and reproduces
    ingest_events(wh, log.events)
    report = build_pairs(wh, PairsOptions())
    assert (report.pairs, report.not_reproduced) == (1, 1)
    (seq, content), = wh.con.execute("SELECT seq, content FROM pairs").fetchall()
    assert (seq, content) == (log.events[-1]["seq"], "x = yy\n")


def test_a_late_event_makes_the_repl_decided_again(wh):
    log = Log("l1")
    log.edit("main.py", [{"insert": "import os\n"}])
    late = log.edit("main.py", [{"skip": 10}, {"insert": "print(qq)\n"}])
    _diag(log, 1, "qq")
    ingest_events(wh, [e for e in log.events if e is not late])
    first = build_pairs(wh, PairsOptions())
    assert (first.pairs, first.not_reproduced) == (0, 1)  # line 1 was not typed yet, as far as it knew
    rebuilt = ingest_events(wh, [late])  # older than what is stored: the repl is rebuilt
    assert rebuilt.repls_rebuilt == 1
    again = build_pairs(wh, PairsOptions())
    assert (again.diagnostics_in, again.pairs) == (1, 1)  # decided again, on the healed stream


def test_a_file_with_lone_carriage_returns_is_filtered(wh):
    log = Log("r1")
    log.edit("main.py", [{"insert": "a = 1\rprint(ww)\n"}])
    _diag(log, 1, "ww")
    ingest_events(wh, log.events)
    report = build_pairs(wh, PairsOptions())
    assert dict(report.filtered) == {"lone_carriage_return": 1}


def test_a_fixed_file_the_servers_skipped_is_not_verified():
    target = Diagnostic("main.py", UNDEF, 0, 0, 0, 2, 1, '"zz" is not defined')
    before = CheckResult("b", "ok", {"main.py": [target]})
    after = CheckResult("a", "ok", {}, skipped={"main.py": "too_large: 600,000 bytes (limit 500,000)"})
    v = Verification()
    lsp_verdict(v, target, before, after, "zz\n")
    assert (v.failed.step, v.failed.reason) == ("target_gone", "not_checked: too_large: 600,000 bytes (limit 500,000)")
    assert not v.accepted
