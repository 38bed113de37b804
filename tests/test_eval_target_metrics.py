"""The metrics that judge the diff itself: `deletes_only` and `target_as_reference` (pure), and their scoring."""

from __future__ import annotations

from eval.metrics import deletes_only, target_as_reference
from eval.scoring import score_static
from lsp_runner.diagnostic import Diagnostic
from synth.linediff import render
from synth.schema import render_response

# two separate bugs 11 lines apart: `return t` (the target, line 6) and `max(best, m)` (line 17)
REFERENCE = """class Solution:
    def total(self, nums):
        s = 0
        for n in nums:
            s += n
        return s

    def mean(self, nums):
        if not nums:
            return 0
        count = len(nums)
        return self.total(nums) / count

    def largest(self, nums):
        best = nums[0]
        for n in nums:
            best = max(best, n)
        return best
"""
BUGGY = REFERENCE.replace("        return s\n", "        return t\n").replace("max(best, n)", "max(best, m)")
TARGET_LINE = 5  # 0-based
TARGET = Diagnostic("main.py", "pyright[reportUndefinedVariable]", TARGET_LINE, 15, TARGET_LINE, 16, 1,
                    '"t" is not defined', source="pyright")


def scored(candidate: str, target: Diagnostic | None = TARGET):
    """The candidate file scored as a model's answer: its diff against the buggy code, applied again."""
    s = score_static(BUGGY, REFERENCE, render_response(render(BUGGY, candidate)), target)
    assert s.applies and s.fixed == candidate
    return s


def test_deletes_only_counts_removed_statements_not_edits_or_layout():
    code = "def f(a):\n    x = a + 1\n    y = 2\n    return x\n"
    deleted = "def f(a):\n    y = 2\n    return x\n"
    assert deletes_only(code, deleted)
    assert deletes_only(code, code.replace("    x = a + 1\n", "\n"))  # replaced by a blank line
    assert deletes_only(code, code.replace("    x = a + 1\n", "    pass\n"))
    assert deletes_only(code, code.replace("    x = a + 1\n", "    ...\n"))
    assert deletes_only(code, code.replace("    x = a + 1\n", "    # x = a + 1\n"))  # commented out
    assert not deletes_only("# x = 1\ny = 2\n", "x = 1\ny = 2\n")  # a stray comment marker removed: an edit
    assert not deletes_only("x = 1 2\ny = 2\n", "x = 1\ny = 2\n")  # an extra token removed: an edit
    assert not deletes_only("if a:\nx = 1\n", "if a:\n    x = 1\n")  # indentation fixed: nothing removed
    assert not deletes_only(code, code)
    mixed = "def f(a):\n    y = 3\n    return x\n"  # one line deleted, one edited
    assert not deletes_only(code, mixed)
    swapped = "def f(a):\n    return x\n    x = a + 1\n"  # fewer lines, but not in the buggy order
    assert not deletes_only(code, swapped)


def test_a_deleted_target_line_is_a_deletion_and_not_the_reference_fix():
    s = scored(BUGGY.replace("        return t\n", ""))
    assert (s.deletes_only, s.target_as_reference, s.ast_exact) == (True, False, False)


def test_a_wrong_edit_of_the_target_line_is_neither():
    s = scored(BUGGY.replace("return t", "return 0"))
    assert (s.deletes_only, s.target_as_reference, s.ast_exact) == (False, False, False)


def test_the_reference_fix_of_the_target_counts_while_the_other_bug_stays():
    s = scored(BUGGY.replace("return t", "return s"))
    assert (s.deletes_only, s.target_as_reference, s.ast_exact) == (False, True, False)
    both = scored(REFERENCE)
    assert (both.target_as_reference, both.ast_exact) == (True, True)
    # the second bug fixed the reference's way and the target left alone: the target is not fixed
    other = scored(BUGGY.replace("max(best, m)", "max(best, n)"))
    assert (other.target_as_reference, other.ast_exact) == (False, False)


def test_the_same_fix_in_another_layout_is_the_reference_fix():
    reflowed = BUGGY.replace("        return t\n", "        return (\n            s  # the sum\n        )\n")
    s = scored(reflowed)
    assert s.target_as_reference and not s.ast_exact and not s.deletes_only
    # more lines at the target shift the rest of the file: the second bug still maps to its own place
    assert target_as_reference(BUGGY, reflowed, REFERENCE, 16, 16) is False


def test_the_reference_hunk_is_the_one_at_the_target_else_the_nearest_else_the_earlier():
    target_fixed = BUGGY.replace("return t", "return s")
    assert target_as_reference(BUGGY, target_fixed, REFERENCE, 2, 2) is True  # 3 lines from bug 1, 14 from bug 2
    assert target_as_reference(BUGGY, target_fixed, REFERENCE, 15, 15) is False  # next to bug 2
    code = "a = 1\nb = 1\nc = x\nd = 1\ne = 1\nf = 1\ng = y\n"
    reference = code.replace("x", "1").replace("y", "1")
    first_only = code.replace("x", "1")
    assert target_as_reference(code, first_only, reference, 4, 4) is True  # 2 lines from each: the earlier
    assert target_as_reference(code, first_only, reference, 5, 5) is False


def test_an_inserted_line_at_the_target_is_compared_with_the_reference_insertion():
    code = "def f(a):\n    b = a\n    return c\n"
    reference = "def f(a):\n    b = a\n    c = b + 1\n    return c\n"
    assert target_as_reference(code, reference, reference, 2, 2) is True  # inserted just before the target
    assert target_as_reference(code, reference.replace("+ 1", "- 1"), reference, 2, 2) is False
    assert target_as_reference(code, code.replace("return c", "return b + 1"), reference, 2, 2) is False


def test_a_fragment_that_does_not_parse_alone_is_compared_in_its_place():
    code = "def pick(a, b, flag):\n    if flag:\n        return b\n    else\n        return a\n"
    reference = "def pick(a, b, flag):\n    if flag:\n        return a\n    else:\n        return a\n"
    target = 3  # `else` without its colon
    # the window (`return a` / `else:`) does not parse alone: it is put back into the reference file
    assert target_as_reference(code, reference.replace("return a\n    else:", "return a   \n    else:"),
                               reference, target, target) is True
    assert target_as_reference(code, reference.replace("return a\n    else:", "return (a)\n    else:"),
                               reference, target, target) is True  # the same AST in its place
    assert target_as_reference(code, code.replace("    else\n", "    else:\n"), reference, target, target) is False


def test_where_nothing_parses_the_window_is_compared_as_text_with_its_indentation():
    code = "def f(:\n    x = 1\n  y = 2\n"
    reference = "def f(:\n    x = 1\n    y = 2\n"  # an indentation fix in a file that never parses
    assert target_as_reference(code, reference, reference, 2, 2) is True
    assert target_as_reference(code, code, reference, 2, 2) is False  # leaving it is not the fix
    assert target_as_reference(code, code.replace("  y = 2", "   y = 2"), reference, 2, 2) is False


def test_leaving_an_indentation_bug_in_place_is_never_the_reference_fix():
    code = "def f(a):\n    if a:\n        b = 1\n    return b\n        c = 2\n"
    reference = "def f(a):\n    if a:\n        b = 1\n    return b\n    c = 2\n"
    assert target_as_reference(code, code, reference, 4, 4) is False  # noop: dedent would have hidden it
    assert target_as_reference(code, reference, reference, 4, 4) is True


def test_not_applicable_and_not_applied():
    assert target_as_reference(BUGGY, REFERENCE, REFERENCE, None) is None  # no target
    assert target_as_reference(BUGGY, REFERENCE, BUGGY, TARGET_LINE) is None  # the reference changes nothing
    assert target_as_reference(BUGGY, None, REFERENCE, TARGET_LINE) is False  # no diff applied
    unapplied = score_static(BUGGY, REFERENCE, "<diff>\n-6 not the line\n+6 x\n</diff>", TARGET)
    assert not unapplied.applies and unapplied.deletes_only is None and unapplied.target_as_reference is False
    prose = score_static(BUGGY, REFERENCE, "no diff here", TARGET)
    assert prose.deletes_only is None and prose.target_as_reference is False
    assert score_static(BUGGY, REFERENCE, render_response(render(BUGGY, REFERENCE))).target_as_reference is None
    noop = score_static(BUGGY, REFERENCE, render_response(""), TARGET)
    assert noop.applies and (noop.deletes_only, noop.target_as_reference) == (False, False)


def test_a_reference_hunk_that_only_drops_blank_lines_is_not_taken_for_the_fix():
    # DebugBench: the bug (a commented-out definition) is far from the target (its use), and the reference
    # also drops the file's blank last line, which is nearer the target
    code = "def f():\n    # lst = []\n    x = 1\n    y = 2\n    z = 3\n    return lst\n\n"
    reference = "def f():\n    lst = []\n    x = 1\n    y = 2\n    z = 3\n    return lst\n"
    assert target_as_reference(code, code, reference, 5, 5) is False  # leaving it: not the fix
    assert target_as_reference(code, code.replace("# lst", "lst"), reference, 5, 5) is True
    assert target_as_reference(code, code.replace("    return lst\n", ""), reference, 5, 5) is False
