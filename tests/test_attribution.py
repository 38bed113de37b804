"""What a diff did to a file's diagnostics, on real pyright and ruff: masking, several errors, positions."""

from __future__ import annotations

import pytest

from lsp_runner.diagnostic import Diagnostic
from lsp_runner.pool import LspPool
from lsp_runner.syntax import syntax_errors
from synth.attribution import bound_names, line_map, new_syntax_errors
from synth.linediff import render
from synth.verify import lsp_snapshots, lsp_verdict, verify_static


@pytest.fixture(scope="module")
def pool():
    with LspPool(size=1) as p:
        yield p


def _verify(pool, code: str, fixed: str, target_code: str, target_line: int, message_part: str):
    """The whole chain on a user-style diff; the target is found in pyright/ruff's own report."""
    before, after = lsp_snapshots("t", "main.py", code, fixed, {})
    results = {r.snapshot_id: r for r in pool.check([before, after])}
    found = [d for d in results["t:before"].diagnostics["main.py"]
             if d.code == target_code and d.start_line == target_line and message_part in d.message]
    assert found, results["t:before"].diagnostics["main.py"]
    v = verify_static(code, render(code, fixed), is_lm_output=False)
    if v.failed is None:
        lsp_verdict(v, found[0], results["t:before"], results["t:after"], code)
    return v


# a syntax error on line 4 hides ruff's E401 on line 1 and pyright's checks of line 6
MASKED = "import os, sys\n\n\ndef f(x)\n    return x\n\nprint(os.sep + 1)\nprint(sys.argv)\n"


def test_an_error_the_syntax_error_hid_is_not_the_fixs(pool):
    fixed = MASKED.replace("def f(x)\n", "def f(x):\n")
    v = _verify(pool, MASKED, fixed, "ruff[E999]", 3, "")
    assert v.accepted, v.as_list()


def test_an_error_the_fix_brings_in_is_still_rejected(pool):
    # the same fix, but it also renames the parameter: `return x` now uses a name nothing binds
    fixed = MASKED.replace("def f(x)\n", "def f(y):\n")
    v = _verify(pool, MASKED, fixed, "ruff[E999]", 3, "")
    assert (v.failed.step, v.failed.reason.split(" (")[0]) == (
        "no_new_errors", 'new error pyright[reportUndefinedVariable] "x" is not defined'), v.as_list()


def test_a_rename_breaks_users_on_untouched_lines(pool):
    code = "total = 1\nprint(totl)\nprint(total)\n"
    fixed = "totl = 1\nprint(totl)\nprint(total)\n"  # 'fixes' line 2 by renaming the definition
    v = _verify(pool, code, fixed, "pyright[reportUndefinedVariable]", 1, "totl")
    assert v.failed.step == "no_new_errors" and '"total" is not defined (line 3)' in v.failed.reason


def test_defining_a_missing_name_lets_pyright_check_its_users(pool):
    code = 'y = math.sqrt("a")\n'
    fixed = 'import math\n\ny = math.sqrt("a")\n'  # now pyright sees the argument is a str
    v = _verify(pool, code, fixed, "pyright[reportUndefinedVariable]", 0, "math")
    assert v.accepted, v.as_list()


def test_a_misspelt_name_written_by_the_fix_is_new(pool):
    code = "import os\nprint(os.pth)\n"
    fixed = "import os\nprint(os.pathh)\n"
    v = _verify(pool, code, fixed, "pyright[reportAttributeAccessIssue]", 1, "pth")
    assert v.failed.step == "no_new_errors" and "pathh" in v.failed.reason


def test_the_same_error_on_another_line_is_another_error(pool):
    code = "print(zz)\nprint(1)\nprint(zz)\n"
    first = "zz = 0\nprint(zz)\nprint(1)\nprint(zz)\n"  # fixes both: fine
    v = _verify(pool, code, first, "pyright[reportUndefinedVariable]", 2, "zz")
    assert v.accepted
    only_line_1 = "print(0)\nprint(1)\nprint(zz)\n"
    assert _verify(pool, code, only_line_1, "pyright[reportUndefinedVariable]", 0, "zz").accepted
    v = _verify(pool, code, only_line_1, "pyright[reportUndefinedVariable]", 2, "zz")
    assert (v.failed.step, v.failed.reason) == ("target_gone", "still reported on line 3")


def test_a_fix_may_keep_other_syntax_errors_but_not_add_one(pool):
    code = "def f(x)\n    return x\n\n\ndef g(y)\n    return y\n"
    one = code.replace("def f(x)\n", "def f(x):\n")
    v = _verify(pool, code, one, "ruff[E999]", 0, "")
    assert v.accepted, v.as_list()
    worse = code.replace("def f(x)\n", "def f(x):\n").replace("return y", "return (y")
    v = verify_static(code, render(code, worse), is_lm_output=False)
    assert (v.failed.step, v.failed.reason.split(":")[0]) == ("parses", "SyntaxError")


def test_syntax_errors_lists_every_error_with_its_line():
    code = "def f(x)\n    return x\n\nclass C\n    pass\ns = 'abc\n"
    assert [e.line for e in syntax_errors(code)] == [0, 3, 5]
    assert syntax_errors("x = 1\n") == ()
    fixed_one = code.replace("class C\n", "class C:\n")
    assert new_syntax_errors(code, fixed_one) == []
    moved = "\n\n" + code  # every error two lines down: mapped, not new
    assert new_syntax_errors(code, moved) == []
    unclosed = new_syntax_errors(fixed_one, fixed_one.replace("pass", "pass(", 1))
    assert unclosed[0].line == 4  # and the lines it swallows after it


def test_lines_map_through_a_diff():
    lm = line_map("a\nb\nc\nd", "a\nX\nY\nc\nd")
    assert lm.old_of_new == (0, None, None, 2, 3)
    assert list(lm.new_lines_of(1)) == [1, 2] and list(lm.new_lines_of(3)) == [4]
    gone = line_map("a\nb\nc", "a\nc")
    assert list(gone.new_lines_of(1)) == [1] and list(gone.new_lines_of(2)) == [1]


@pytest.mark.parametrize("line, names", [
    ("self.total = 0", {"total"}),
    ("a, (b, *c) = f()", {"a", "b", "c"}),
    ("items[i] = 2", set()),
    ("print(x, end='')", set()),
    ("def f(self, a: int = 2, *args, **kw):", {"f", "self", "a", "args", "kw"}),
    ("import os.path as p, sys", {"p", "sys"}),
    ("from a.b import (c as d, e)", {"d", "e"}),
    ("for i, (j, k) in enumerate(x):", {"i", "j", "k"}),
    ("with open(f) as fh:", {"fh"}),
    ("if (n := len(a)) > 2:", {"n"}),
    ("x >= 2", set()),
    ("s = 'a = b'  # c = d", {"s"}),
])
def test_bound_names_read_off_a_line(line, names):
    assert bound_names(line) == names


def test_an_unresolved_import_of_the_module_the_line_meant_is_the_environment():
    from synth.attribution import introduced_errors

    code, fixed = "imprt numpy\n", "import numpy\n"
    missing = Diagnostic("main.py", "pyright[reportMissingImports]", 0, 7, 0, 12, 1, 'Import "numpy" could not be resolved')
    assert introduced_errors(code, [], fixed, [missing]) == []
    typo = Diagnostic("main.py", "pyright[reportMissingImports]", 0, 7, 0, 12, 1, 'Import "nupy" could not be resolved')
    assert introduced_errors(code, [], "import nupy\n", [typo]) == [typo]


def test_syntax_errors_of_odd_text():
    assert syntax_errors('x = "\udc80"\ny = (\n')[0].line == 2  # a lone surrogate does not stop ruff
    assert syntax_errors("x = 1\x00\n")  # NUL: CPython refuses it, ruff says where
    assert syntax_errors("\ufeffx = (\n")[0].line == 1


def test_an_error_that_moved_does_not_hide_one_the_diff_caused(pool):
    # the target's removal must not pay for a new copy of its error on a line that uses what the diff rebound
    code = 'y = 1\nz = 2\nprint("a" + 1)\n\nprint(y + 2)\n'
    fixed = 'y = "a"\nz = 2\nprint("a" + "1")\n\nprint(y + 2)\n'
    v = _verify(pool, code, fixed, "pyright[reportOperatorIssue]", 2, "")
    assert v.failed.step == "no_new_errors" and "(line 5)" in v.failed.reason, v.as_list()


def test_a_syntax_error_elsewhere_masks_nothing_here(pool):
    code = "import os\nx = 1\nprint(x + 1)\nprint(os.pth)\n\n\ndef g(y)\n    return y\n"
    fixed = code.replace("x = 1", 'x = "a"').replace("os.pth", "os.path")
    v = _verify(pool, code, fixed, "pyright[reportAttributeAccessIssue]", 3, "pth")
    assert v.failed.step == "no_new_errors" and "(line 3)" in v.failed.reason, v.as_list()


@pytest.mark.parametrize("code, fixed, target_code, line, part", [
    ("def f(x)\n    return x\n", 'def f(x: int = "s"):\n    return x\n', "ruff[E999]", 0, ""),
    ("import os\nprint(os.pth)\n", "import os\nprint(os.path + 1)\n", "pyright[reportAttributeAccessIssue]", 1, "pth"),
    ("print(mth.sqrt(4))\n", "import math\nprint(math.sqrt(4, 5))\n", "pyright[reportUndefinedVariable]", 0, "mth"),
])
def test_code_the_fix_wrote_is_checked_even_where_checks_were_hidden(pool, code, fixed, target_code, line, part):
    v = _verify(pool, code, fixed, target_code, line, part)
    assert v.failed is not None and v.failed.step == "no_new_errors", v.as_list()


def test_a_fixed_misspelling_lets_pyright_check_the_argument(pool):
    code = "import zlib\nc = zlib.compressobj()\nc.copress('text')\n"
    fixed = "import zlib\nc = zlib.compressobj()\nc.compress('text')\n"  # str where bytes go: there all along
    v = _verify(pool, code, fixed, "pyright[reportAttributeAccessIssue]", 2, "copress")
    assert v.accepted, v.as_list()


def test_syntax_errors_of_text_nested_past_every_parser():
    deep = "x = " + "-" * 10_000 + "1\n"  # CPython's parser gives up, ruff overflows its stack
    (issue,) = syntax_errors(deep)
    assert issue.line == 0 and issue.message.startswith(("RecursionError", "MemoryError")), issue
    v = verify_static("x = 1\n", "<diff>\n-1 x = 1\n+1 " + deep.strip() + "\n</diff>")
    assert (v.failed.step, v.failed.reason.split(":")[0]) == ("parses", "SyntaxError")


def test_an_unclosed_bracket_hides_the_checks_of_everything_after_it(pool):
    code = 'import math\n\n\ndef f():\n    x = math.floor(1.5,\n    return x\n\n\ndef g() -> int:\n    return "a"\n'
    fixed = code.replace("math.floor(1.5,", "math.floor(1.5)")  # g's wrong return type was there all along
    v = _verify(pool, code, fixed, "ruff[E999]", 4, "Expected `)`")
    assert v.accepted, v.as_list()


def test_prefetched_syntax_errors_are_what_one_at_a_time_gives():
    from lsp_runner import syntax

    texts = [f"def f{n}(x)\n    return x\n" + "y = (\n" * (n % 3) for n in range(7)] + ["z = 1\n", "s = '\udc80\n"]
    one_by_one = [syntax._ruff_syntax_errors(t) if not syntax.python_parses(t) else () for t in texts]
    syntax._CACHE.clear()
    syntax.prefetch_syntax_errors(iter(texts), chunk=4)  # two ruff processes and a rest
    assert all(syntax._digest(t) in syntax._CACHE for t in texts)
    assert [syntax.syntax_errors(t) for t in texts] == one_by_one
