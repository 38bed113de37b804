"""User-fix mining and the verification chain: unit cases, then the synth stage on real pyright and ruff."""

from __future__ import annotations

import orjson
import pytest

from otlake.stages import PairsOptions, SynthOptions, build_pairs, ingest_events, run_synth
from synth.usermine import pause_points, user_diff, windowed_fix
from synth.verify import verify_static
from warehouse.store import Warehouse

from .conftest import Log

ATTR = "pyright[reportAttributeAccessIssue]"


def test_pause_points_end_bursts_and_keep_the_last_version():
    s = 1_000_000
    assert pause_points([0, 1 * s, 5 * s, 5 * s + 500_000, 9 * s]) == [1, 3, 4]
    assert pause_points([0, s // 2, s]) == [2]
    assert pause_points(list(range(0, 100 * 3 * s, 3 * s)), limit=5) == [0, 1, 2, 3, 99]


def test_the_fix_keeps_changes_near_the_error_and_drops_typing_on():
    old = "import os\nx = os.pth\nprint(x)\n"
    later = "import os\nx = os.path\nprint(x)\nmore = 1\nandmore = 2\n"
    assert windowed_fix(old, later, 1) == "import os\nx = os.path\nprint(x)\n"
    assert user_diff(old, later, 1) == "-2 x = os.pth\n+2 x = os.path"


def test_a_change_far_from_the_error_is_not_the_fix_but_an_import_is():
    old = "\n".join(f"v{i} = {i}" for i in range(40)) + "\nprint(sys.argv)\n"
    far = old.replace("v3 = 3", "v3 = 33")
    assert windowed_fix(old, far, 40) is None and user_diff(old, far, 40) is None
    with_import = "import sys\n" + far
    assert windowed_fix(old, with_import, 40) == "import sys\n" + old


def test_a_rewritten_last_line_is_kept_and_what_follows_it_dropped():
    old = "a = 1\nfrom pickl"
    later = "a = 1\nfrom pickle import dumps\nb = 2\nc = 3"
    assert windowed_fix(old, later, 1) == "a = 1\nfrom pickle import dumps"


def test_the_smallest_set_of_changes_that_parses_wins():
    old = "def f(x):\n    return x +\n\ny = f(1)\n"
    # the fix of line 2, and a half-typed line 4 that would not parse
    later = "def f(x):\n    return x + 1\n\ny = f(1) if\n"
    assert windowed_fix(old, later, 1) == "def f(x):\n    return x + 1\n\ny = f(1)\n"


@pytest.mark.parametrize("text, step, reason", [
    ("no diff here", "extracted", "no diff block in the answer"),
    ("<diff>\n-2 x = os.pth\n+2 x = os.path\nnonsense\n</diff>", "well_formed", "malformed"),
    ("<diff>\n-2 x = os.PTH\n+2 x = os.path\n</diff>", "applies", "text_mismatch"),
    ("<diff>\n-2 x = os.pth\n+2 x = os.pth\n</diff>", "changes", "the diff changes nothing"),
    ("<diff>\n-2 x = os.pth\n+2 x = (os.path\n</diff>", "parses", "SyntaxError"),
])
def test_static_steps_stop_at_the_first_failure(text, step, reason):
    v = verify_static("import os\nx = os.pth\n", text)
    assert v.failed.step == step and v.failed.reason.startswith(reason)
    assert [s.step for s in v.steps][-1] == step and not v.accepted


def test_a_good_answer_passes_the_static_steps():
    v = verify_static("import os\nx = os.pth\n", "Sure!\n<diff>\n-2 x = os.pth\n+2 x = os.path\n</diff>\nDone.")
    assert v.failed is None and v.fixed == "import os\nx = os.path\n"
    assert [s.step for s in v.steps] == ["extracted", "well_formed", "applies", "changes", "parses"]


def _diag(log: Log, line: int, name: str) -> None:
    log.add("lsp_diagnostic", path="main.py", range={"start": {"line": line, "character": 6},
                                                     "end": {"line": line, "character": 9}},
            severity=1, code=ATTR, message=f'"{name}" is not a known attribute of module "os"', has_code_action=False)


def _session() -> list[dict]:
    """Three mistakes: one fixed by the user, one 'fixed' into another error, one never fixed."""
    log = Log("u1")
    log.edit("main.py", [{"insert": "import os\n\nprint(os.pth)\nprint(os.sepp)\nprint(os.nme)\n"}])
    _diag(log, 2, "pth")
    _diag(log, 3, "sepp")
    _diag(log, 4, "nme")
    log.clock += 10
    log.edit("main.py", [{"skip": len(log.texts["main.py"])}, {"insert": "x = 1\n"}])  # typing on at the end
    log.clock += 10
    at = log.texts["main.py"].index("pth")
    log.edit("main.py", [{"skip": at}, {"delete": 3}, {"insert": "path"}])  # the real fix of line 3
    log.clock += 10
    at = log.texts["main.py"].index("sepp")
    log.edit("main.py", [{"skip": at}, {"delete": 4}, {"insert": "undefined_thing"}])  # line 4: another error
    log.clock += 10
    log.edit("main.py", [{"skip": len(log.texts["main.py"])}, {"insert": "y = 2\n"}])
    return log.events


@pytest.fixture(scope="module")
def mined(tmp_path_factory):
    home = tmp_path_factory.mktemp("synth") / "wh"
    with Warehouse(home) as wh:
        ingest_events(wh, _session())
        pairs = build_pairs(wh, PairsOptions())
        assert pairs.pairs == 3, pairs.summary()
        report = run_synth(wh, SynthOptions())
        rows = wh.con.execute(
            """SELECT p.message, d.accepted, d.failed_step, d.reason, d.diff, d.fix_version, d.verification
               FROM diffs d JOIN pairs p USING (pair_id) ORDER BY p.start_line""").fetchall()
    return home, report, rows


def test_user_fixes_are_mined_and_verified(mined):
    _, report, rows = mined
    user = report.by_source["user"]
    assert (user.pairs, user.accepted, dict(user.no_candidate)) == (3, 1, {"no_fix_near_the_error": 1})
    fixed, other, never = rows
    assert fixed[1:3] == (True, None) and fixed[4] == "-3 print(os.pth)\n+3 print(os.path)"
    assert fixed[5] == 3  # the third version of main.py holds the fix
    assert [s["step"] for s in orjson.loads(fixed[6])][-2:] == ["target_gone", "no_new_errors"]
    assert other[1:3] == (False, "no_new_errors") and "undefined_thing" in other[3]
    assert never[1:3] == (False, "no_fix_near_the_error") and never[4] is None


def test_a_second_synth_run_does_nothing_again(mined):
    home, _, rows = mined
    with Warehouse(home) as wh:
        again = run_synth(wh, SynthOptions())
        assert again.already_done == 3 and again.by_source["user"].pairs == 0
        assert wh.con.execute("SELECT count(*) FROM diffs").fetchall()[0][0] == len(rows) == 3


def test_a_state_with_two_candidates_checks_each_on_its_own(tmp_path):
    # the later state gives two candidates: the error line's own change (still broken), then that and
    # the definition two lines up (the fix); each must be judged on its own result
    log = Log("two")
    log.edit("main.py", [{"insert": "x = 1\ny = 2\nprint(total)\n"}])
    log.add("lsp_diagnostic", path="main.py", range={"start": {"line": 2, "character": 6},
                                                     "end": {"line": 2, "character": 11}},
            severity=1, code="pyright[reportUndefinedVariable]", message='"total" is not defined',
            has_code_action=False)
    log.clock += 10
    log.edit("main.py", [{"delete": 5}, {"insert": "total = 0"}, {"skip": 18}, {"insert": ", end=''"}])
    with Warehouse(tmp_path / "wh") as wh:
        ingest_events(wh, log.events)
        assert build_pairs(wh, PairsOptions()).pairs == 1
        run_synth(wh, SynthOptions())
        (accepted, diff, reason), = wh.con.execute("SELECT accepted, diff, reason FROM diffs").fetchall()
    assert accepted, reason
    assert diff == "-1 x = 1\n+1 total = 0\n-3 print(total)\n+3 print(total, end='')"
