"""eval's pure parts: metrics, pass@k, aggregation, item loading, target choice and item selection."""

from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eval.errors import EvalError
from eval.items import EvalItem, changed_lines, choose_target, load_debugbench, load_jsonl
from eval.metrics import (
    METRICS,
    aggregate,
    ast_exact,
    ast_or_string,
    normalized_text,
    not_scored,
    pass_at_k,
)
from eval.run import select
from eval.scoring import score_static
from lsp_runner.diagnostic import Diagnostic
from otlake.dataset_cli import DEBUGBENCH
from synth.linediff import render
from synth.schema import render_response


@given(st.integers(1, 12).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_is_the_share_of_k_subsets_with_a_pass(args):
    n, c, k = args
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    brute = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
    assert math.isclose(pass_at_k(n, c, k), brute, abs_tol=1e-12)


def test_pass_at_k_refuses_impossible_counts():
    for n, c, k in ((3, 4, 1), (3, 1, 0), (2, 1, 3)):
        with pytest.raises(ValueError):
            pass_at_k(n, c, k)


def test_ast_metrics_ignore_layout_and_comments_but_not_code():
    ref = "class Solution:\n    def f(self, a):\n        return a + 1\n"
    same = "\nclass Solution:\n\n    def f(self, a):   # add one\n        return (a + 1)\n"
    other = "class Solution:\n    def f(self, a):\n        return a - 1\n"
    assert ast_exact(same, ref) and ast_or_string(same, ref)
    assert not ast_exact(other, ref) and not ast_or_string(other, ref)
    broken_ref = "def f(:\n    return 1\n"
    broken_same = "def f(:   \n\n    # note\n    return 1"
    assert not ast_exact(broken_same, broken_ref)  # neither parses: no AST match
    assert ast_or_string(broken_same, broken_ref)  # the normalized text is equal
    assert not ast_or_string("def f(:\n    return 2\n", broken_ref)
    assert normalized_text("a\t= 1  \n\n  # c\nb") == "a   = 1\nb"


def test_aggregate_averages_per_item_then_skips_metrics_that_do_not_apply():
    rows = [
        {"item_id": "a", "subtype": "x", "extracted": True, "applies": True, "target_gone": True, "functional": True,
         "ast_exact": False, "ast_or_string": True},
        {"item_id": "a", "subtype": "x", "extracted": True, "applies": False, "target_gone": False,
         "functional": False, "ast_exact": False, "ast_or_string": False},
        {"item_id": "b", "subtype": "y", "extracted": False, "applies": False, "target_gone": False,
         "functional": None, "ast_exact": False, "ast_or_string": False},
        {"item_id": "b", "subtype": "y", "extracted": True, "applies": True, "target_gone": True,
         "functional": None, "ast_exact": True, "ast_or_string": True},
    ]
    total = aggregate(rows, (), k=2)[()]
    assert total["items"] == 2
    assert total["applies"] == 0.5 and total["applies@2"] == 1.0
    assert total["functional_items"] == 1 and total["functional"] == 0.5  # only item a has tests
    by = aggregate(rows, ("subtype",))
    assert by[("x",)]["ast_or_string"] == 0.5 and by[("y",)]["ast_exact"] == 0.5
    assert by[("y",)]["functional"] is None


def test_a_sample_the_machinery_failed_is_not_scored_and_counted_not_failed():
    def row(item, gone, functional, target_detail="", test_detail=""):
        return {"item_id": item, "target_gone": gone, "target_detail": target_detail, "functional": functional,
                "test_detail": test_detail}

    rows = [
        row("a", True, True), row("a", None, True, target_detail="lsp_failed: pyright crashed 3 times"),
        row("b", False, None, test_detail="sandbox_failed: could not start"), row("b", False, False),
        # stored before the rule: a failed check read False; its detail still says why
        row("c", False, True, target_detail="lsp_failed: no result"), row("c", False, False),
        row("d", True, None, test_detail="no_tests: the item has none"),  # not applicable, not a failure
    ]
    total = aggregate(rows, (), k=1)[()]
    assert total["target_gone_items"] == 2 and total["target_gone"] == 0.5  # b 0 of 2, d 1 of 1; a, c not scored
    assert total["functional_items"] == 2 and total["functional"] == 0.75  # a 2 of 2, c 1 of 2; b, d not scored
    assert not_scored(rows) == {"target_gone": 2, "functional": 1}
    assert not_scored(rows[:1]) == {"target_gone": 0, "functional": 0}


def test_the_target_metrics_come_first():
    assert METRICS[:2] == ("target_as_reference", "deletes_only")
    assert set(METRICS[2:]) == {"extracted", "applies", "changes", "target_gone", "functional", "ast_exact",
                                "ast_or_string"}


def test_score_static_applies_strictly_and_compares_with_the_reference():
    code = "def f(a)\n    return a\n"
    ref = "def f(a):\n    return a\n"
    good = score_static(code, ref, render_response(render(code, ref)))
    assert (good.extracted, good.applies, good.ast_exact, good.fixed) == (True, True, True, ref)
    wrong_text = score_static(code, ref, "<diff>\n-1 def f(b)\n+1 def f(b):\n</diff>")
    assert wrong_text.extracted and not wrong_text.applies and wrong_text.apply_error.startswith("text_mismatch")
    prose = score_static(code, ref, "I would add a colon.")
    assert not prose.extracted and not prose.applies


def _diag(line: int, code: str, message: str, severity: int = 1) -> Diagnostic:
    return Diagnostic("main.py", code, line, 0, line, 1, severity, message, source=code.partition("[")[0])


def test_choose_target_takes_the_new_error_next_to_the_bug_not_leetcode_names():
    ref = "class Solution:\n    def f(self, a: List[int]):\n        return len(a)\n"
    buggy = "class Solution:\n    def f(self, a: List[int]):\n        return lenn(a)\n"
    item = EvalItem("x", "debugbench", "reference", "undefined_methods", buggy, ref)
    assert changed_lines(buggy, ref) == {2}
    list_undefined = _diag(1, "pyright[reportUndefinedVariable]", '"List" is not defined')
    lenn = _diag(2, "pyright[reportUndefinedVariable]", '"lenn" is not defined')
    lenn_ruff = _diag(2, "ruff[F821]", "Undefined name `lenn`", severity=2)
    got = choose_target(item, [list_undefined, lenn_ruff, lenn], [list_undefined])
    assert got == lenn
    whitespace = _diag(2, "ruff[W291]", "Trailing whitespace")
    assert choose_target(item, [list_undefined, whitespace], [list_undefined]) is None  # layout is never a target
    assert choose_target(item, [list_undefined], [list_undefined]) is None


def test_debugbench_loads_every_shared_record_with_its_subtype():
    items, skipped = load_debugbench([DEBUGBENCH])
    assert len(items) == 487 and not skipped
    assert len({i.id for i in items}) == 487
    assert {i.subtype for i in items if i.category == "syntax"} == {
        "illegal_comment", "illegal_indentation", "missing_colons", "misused_equals", "unclosed_parentheses",
        "unclosed_string"}
    chosen = select(items, 10, seed=1)
    assert len({i.subtype for i in chosen}) == 10  # round robin: a handful touches every subtype
    assert [i.id for i in select(items, 10, seed=1)] == [i.id for i in chosen]
    assert [i.id for i in select(items, 10, seed=2)] != [i.id for i in chosen]


def test_jsonl_bench_keeps_good_lines_and_names_bad_ones(tmp_path):
    path = tmp_path / "mine.jsonl"
    lines = [
        {"id": "ok", "buggy_code": "x = 1\nprint(y)\n", "fixed_code": "x = 1\nprint(x)\n", "tests": "assert True"},
        {"id": "given", "buggy_code": "print(y)\n", "fixed_code": "print(1)\n", "rule": "ruff[F821]",
         "message": "Undefined name `y`", "line": 1},
        {"id": "bad-line", "buggy_code": "a\n", "fixed_code": "b\n", "rule": "ruff[F821]", "message": "m", "line": 9},
        {"buggy_code": "no id"},
    ]
    escapes = {"id": "up", "buggy_code": "a\n", "fixed_code": "b\n", "files": {"../x.py": "1"}}
    path.write_bytes(("\n".join(json.dumps(x) for x in lines) + "\n{not json\n\n").encode()
                     + b'{"id": "bytes", "buggy_code": "\xff", "fixed_code": "b"}\n' + json.dumps(escapes).encode())
    items, skipped = load_jsonl([path])
    assert [i.id for i in items] == ["ok", "given"]
    assert items[1].target.code == "ruff[F821]" and items[1].target.start_line == 0
    assert items[1].prompt().line == 1
    reasons = {s.id: s.reason for s in skipped}
    assert set(reasons) == {"mine.jsonl:3", "mine.jsonl:4", "mine.jsonl:5", "mine.jsonl:7", "mine.jsonl:8"}
    assert "escapes" in reasons["mine.jsonl:8"]  # a line with bad bytes or a bad path costs that line only
    assert "line" in reasons["mine.jsonl:3"] and "id" in reasons["mine.jsonl:4"]
    assert "not JSON" in reasons["mine.jsonl:5"]
    with pytest.raises(EvalError, match="no such file"):
        load_jsonl([tmp_path / "missing.jsonl"])
