"""A wrong program must not pass: each forgery of a verdict, planted in a real sandboxed run, fails.

The harness reports on a nonce-authenticated channel the candidate cannot write (eval/sandbox.py), LeetCode
outputs are compared outside the sandbox (eval/leetcode_harness.py), and JSONL tests run after the candidate's
module with every builtin and module attribute it changed put back (eval/functional.py). Each forgery is
tried against a wrong solution; the right solution passes the same tests, so the tests can tell them apart.
"""

from __future__ import annotations

import pytest

from eval.functional import ItemTests, Outcome, run_all
from eval.leetcode import derive_tests

WRONG_ADD = "def add(a, b):\n    return a - b\n"
RIGHT_ADD = "def add(a, b):\n    return a + b\n"
# helpers in the asserts, so a forgery that swaps the helpers would pass them all
ASSERTS = ItemTests(source="import math\nassert math.isclose(add(0.1, 0.2), 0.3)\nassert abs(add(1, 1) - 2) < 1e-9\n")
CHECK = ItemTests(source="def check(candidate):\n    assert candidate(2, 2) == 4\n    assert candidate(3, 4) == 7\n",
                  entry_point="add")

JSONL_FORGERIES = {
    "sys.exit(0) after the code": "import sys\nsys.exit(0)\n",
    "os._exit(0) at import": "import os\nos._exit(0)\n",
    "atexit exits 0": "import atexit, os\natexit.register(os._exit, 0)\n",
    "an exception swallowed at import": "try:\n    raise SystemExit(0)\nexcept BaseException:\n    pass\n"
                                        "import builtins\nbuiltins.__import__ = None\n",
    "a fake verdict on sys.__stdout__": "import sys\nsys.__stdout__.write('P\\n'); sys.__stdout__.flush()\n",
    "a fake verdict on fd 1 and every fd": "import os\nfor fd in range(64):\n    try:\n"
                                           "        os.write(fd, b'r P\\nP\\n')\n    except OSError:\n        pass\n",
    "builtins.AssertionError overridden": "import builtins\nclass Quiet(Exception):\n    pass\n"
                                          "builtins.AssertionError = Quiet\n",
    "monkeypatched assert helpers": "import builtins, math\nmath.isclose = lambda *a, **k: True\n"
                                    "builtins.abs = lambda x: 0\n",
    "helpers shadowed in the module": "import math\nmath.isclose = lambda *a, **k: True\ndef abs(x):\n    return 0\n",
    "__builtins__ replaced": "import math\nmath.isclose = lambda *a, **k: True\n"
                             "__builtins__ = {'abs': lambda x: 0, '__import__': __import__}\n",
    "sys.settrace skips the asserts": "import sys\nsys.settrace(lambda *a: None)\n",
    "the harness's frame through a traceback": (
        "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n"
        "    e.__traceback__.tb_frame.f_back.f_locals['report']('P')\n"),
    "the report function through gc": (
        "import gc\nfor o in gc.get_objects():\n    if getattr(o, '__name__', '') == 'report':\n        o('P')\n"),
    "a thread that reports later": "import threading, os, time\n"
                                   "threading.Thread(target=lambda: [time.sleep(0.2), os.write(1, b'P\\n')]).start()\n",
}


@pytest.fixture(scope="module")
def jsonl_outcomes() -> dict[tuple[str, str], Outcome]:
    jobs = {(name, style): (tests, WRONG_ADD + code)
            for name, code in {"wrong, no forgery": "", **JSONL_FORGERIES}.items()
            for style, tests in (("asserts", ASSERTS), ("check", CHECK))}
    jobs |= {("right", style): (tests, RIGHT_ADD) for style, tests in (("asserts", ASSERTS), ("check", CHECK))}
    return dict(zip(jobs, run_all(list(jobs.values())), strict=True))


@pytest.mark.parametrize("style", ["asserts", "check"])
def test_the_right_solution_passes_the_same_tests(jsonl_outcomes, style):
    assert jsonl_outcomes[("right", style)] == Outcome(True, 1, 1, "")


@pytest.mark.parametrize("style", ["asserts", "check"])
@pytest.mark.parametrize("forgery", ["wrong, no forgery", *JSONL_FORGERIES])
def test_a_forged_jsonl_pass_fails(jsonl_outcomes, forgery, style):
    outcome = jsonl_outcomes[(forgery, style)]
    assert outcome.passed is False, outcome
    assert outcome.detail  # says why


def test_each_forgery_fails_for_the_reason_it_tried():
    details = {name: o.detail for name, o in zip(JSONL_FORGERIES, run_all(
        [(ASSERTS, WRONG_ADD + code) for code in JSONL_FORGERIES.values()]), strict=True)}
    assert details["sys.exit(0) after the code"].startswith("the candidate's module raised: SystemExit: 0")
    assert "ended before its tests reported" in details["os._exit(0) at import"]
    assert details["a fake verdict on fd 1 and every fd"].startswith("forged: ")
    assert details["monkeypatched assert helpers"].startswith("a test failed: AssertionError")
    assert "sys.settrace is not available" in details["sys.settrace skips the asserts"]
    assert "object.__getattr__ is not available" in details["the harness's frame through a traceback"]
    assert "gc.get_objects is not available" in details["the report function through gc"]


NEGATE = ("class Solution:\n    def f(self, x: int) -> int:\n        return -x\n")
LEETCODE_FORGERIES = {
    "lines on sys.__stdout__": "import sys\nfor i in range(3):\n"
                               "    sys.__stdout__.write('{\"i\": %d, \"ok\": true}\\n' % i)\nsys.__stdout__.flush()\n",
    "lines on fd 1": "import os\nfor i in range(3):\n    os.write(1, b'{\"i\": %d, \"ok\": true}\\n' % i)\n",
    "lines on every fd": "import os\nfor fd in range(64):\n    for i in range(3):\n        try:\n"
                         "            os.write(fd, b'r {\"i\": %d, \"got\": \"%d\"}\\n' % (i, i + 1))\n"
                         "        except OSError:\n            pass\n",
    "atexit": "import atexit, os\natexit.register(lambda: os.write(1, b'{\"i\": 0, \"ok\": true}\\n'))\n",
    "os._exit(0) after printing": "import os\nos.write(1, b'{\"i\": 0, \"ok\": true}\\n')\nos._exit(0)\n",
    "a patched comparison": "import json\njson.loads = lambda *a, **k: 1\n",
}


def test_a_forged_leetcode_pass_fails():
    tests = ItemTests(derived=derive_tests({
        "slug": "t", "oracle_code": "class Solution:\n    def f(self, x: int) -> int:\n        return x\n",
        "examples": ["Input: x = 1\nOutput: 1", "Input: x = 2\nOutput: 2", "Input: x = 3\nOutput: 3"]}))
    right = "class Solution:\n    def f(self, x: int) -> int:\n        return x\n"
    jobs = [(tests, right), (tests, NEGATE)] + [(tests, code + NEGATE) for code in LEETCODE_FORGERIES.values()]
    right_outcome, wrong, *forged = run_all(jobs)
    assert (right_outcome.passed, right_outcome.cases_passed) == (True, 3)
    assert (wrong.passed, wrong.cases_passed) == (False, 0)
    for name, outcome in zip(LEETCODE_FORGERIES, forged, strict=True):
        assert (outcome.passed, outcome.cases_passed) == (False, 0), (name, outcome)


def test_a_candidate_whose_text_holds_the_programs_placeholder_words_runs_as_written():
    code = RIGHT_ADD + "TESTS = '$tests'\nENTRY_POINT = 'CODE $code'\n"
    assert run_all([(ASSERTS, code), (CHECK, code)]) == [Outcome(True, 1, 1, "")] * 2
