"""eval/leetcode.py: examples parsed into cases, the harness run on them, and every DebugBench oracle judged."""

from __future__ import annotations

import collections
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from eval.leetcode import (
    CaseOutcome,
    DerivedTests,
    TestCase,
    derive_tests,
    harness_source,
    parse_example,
    parse_value,
    read_outcomes,
    split_top_level,
)
from eval.leetcode_harness import ENTRY
from eval.sandbox import Limits, run_python
from otlake.dataset_cli import DEBUGBENCH


def run_harness(code: str, tests: DerivedTests, timeout: float = 30) -> list[CaseOutcome]:
    """The harness in the sandbox, judged from its report channel."""
    result = run_python(harness_source(code, tests), limits=Limits(cpu_s=timeout, wall_s=timeout), entry=ENTRY)
    assert result.status != "sandbox_failed", result.stderr
    return read_outcomes(result.reports, tests)


def record(oracle: str, *examples: str, description: str = "") -> dict:
    return {"slug": "t", "oracle_code": oracle, "examples": list(examples), "description": description}


def statuses(outcomes: list[CaseOutcome]) -> list[str]:
    return [o.status for o in outcomes]


# ---- parsing --------------------------------------------------------------------------------------------

def test_values_are_json_ish():
    assert parse_value(" [[1,-2],[3,4.5],[]] ") == [[1, -2], [3, 4.5], []]
    assert parse_value("[1,null,2,true,false]") == [1, None, 2, True, False]
    assert parse_value("-7") == -7
    assert parse_value("2.00000") == 2.0
    assert parse_value("'single, quoted'") == "single, quoted"
    assert parse_value("['a', null, \"b\"]") == ["a", None, "b"]  # json fails, literal_eval after null->None
    assert parse_value('"null, true"') == "null, true"  # words inside strings stay
    for bad in ("00101", "ball", "3 (0011)", "{1, 2}", "[1,2"):
        with pytest.raises(ValueError):
            parse_value(bad)


def test_split_respects_brackets_and_quotes():
    text = 'a = [1,[2,3]], s = "x, y = \\"z\\"", c = \'q,r\', d = -1'
    assert split_top_level(text) == ["a = [1,[2,3]]", ' s = "x, y = \\"z\\""', " c = 'q,r'", " d = -1"]


def test_example_with_strings_holding_commas_quotes_and_equals():
    args, expected = parse_example('Input: s = "a, b = \\"c\\"", words = ["x,y","==","Output:"], k = -3\n'
                                   'Output: ["a, b"]\nExplanation: k = 2, so "Output: 3" is wrong.')
    assert args == [("s", 'a, b = "c"'), ("words", ["x,y", "==", "Output:"]), ("k", -3)]
    assert expected == ["a, b"]


def test_example_null_booleans_floats_and_line_breaks():
    args, expected = parse_example("Input: root = [1,null,2,null,3], flag = true\r\nOutput: false\r\n")
    assert args == [("root", [1, None, 2, None, 3]), ("flag", True)] and expected is False
    args, expected = parse_example("Input: nums = [1,3,-1], k = 3\nOutput: [1.00000,-1.50000]\n")
    assert expected == [1.0, -1.5]
    # an output over several lines, and one followed by prose that is not labelled Explanation
    assert parse_example("Input: n = 2\nOutput: [[1,2],\n [3,4]]\nExplanation: a grid")[1] == [[1, 2], [3, 4]]
    assert parse_example("Input: n = 2\nOutput: 3 \nThe answer is 3.")[1] == 3
    # one line, as DebugBench's README writes them
    assert parse_example("Input: nums = [1,2] Output: 3") == ([("nums", [1, 2])], 3)


def test_bare_single_value():
    assert parse_example("Input: [3,1,2]\nOutput: [1,2,3]") == ([(None, [3, 1, 2])], [1, 2, 3])
    tests = derive_tests(record("class Solution:\n    def sortIt(self, a: List[int]) -> List[int]:\n"
                                "        return sorted(a)\n", "Input: [3,1,2]\nOutput: [1,2,3]"))
    assert tests.entry_point == "sortIt" and tests.cases[0].inputs == {"a": [3, 1, 2]}


# ---- deriving tests -------------------------------------------------------------------------------------

HELPERS = """
class Solution:
    def check(self, nums, limit, extra):
        return True

    def minCount(self, nums: List[int], limit: int) -> int:
        return sum(1 for x in nums if x > limit)
"""


def test_entry_point_is_the_method_the_names_call():
    tests = derive_tests(record(HELPERS, "Input: limit = 2, nums = [1,5,3]\nOutput: 2\nExplanation: 5 and 3"))
    assert isinstance(tests, DerivedTests)
    assert tests.entry_point == "minCount"
    assert tests.cases == (TestCase({"nums": [1, 5, 3], "limit": 2}, 2, tests.cases[0].text),)  # signature order
    assert tests.arg_kinds == {"nums": "plain", "limit": "plain"} and tests.return_kind == "plain"
    assert tests.notes == ()
    assert derive_tests(record(HELPERS, "Input: xs = [1], cap = 2\nOutput: 0")).startswith("no_tests: no public")
    # a helper with the entry's very parameters: LeetCode's method is the annotated one
    twin = HELPERS.replace("def check(self, nums, limit, extra)", "def check(self, nums, limit)")
    assert derive_tests(record(twin, "Input: nums = [1], limit = 2\nOutput: 0")).entry_point == "minCount"


def test_renamed_parameters_match_by_position_and_say_so():
    oracle = "class Solution:\n    def f(self, A, K):\n        return A[K]\n"
    tests = derive_tests(record(oracle, "Input: nums = [4,5], k = 1\nOutput: 5"))
    assert tests.cases[0].inputs == {"A": [4, 5], "K": 1}
    assert tests.notes == ("names differ from the signature: matched by position",)
    snake = "class Solution:\n    def g(self, encoded_text: str, rows: int) -> str:\n        return encoded_text\n"
    tests = derive_tests(record(snake, 'Input: encodedText = "ab", rows = 1\nOutput: "ab"'))
    assert tests.cases[0].inputs == {"encoded_text": "ab", "rows": 1}
    assert tests.notes == ("names matched ignoring case and underscores",)
    assert derive_tests(record(oracle, "Input: nums = [4,5]\nOutput: 5")).startswith("no_tests: f does not take")


def test_no_tests_reasons():
    solution = "class Solution:\n    def f(self, head: Optional[ListNode]) -> bool:\n        return False\n"
    assert derive_tests(record(solution)) == "no_tests: no examples"
    assert derive_tests(record(solution, " ")) == "no_tests: no examples"
    design = ('Input\n["MyQueue", "push", "pop"]\n[[], [1], []]\nOutput\n[null, null, 1]')
    assert derive_tests(record("class MyQueue:\n    pass\n", design)) == "no_tests: design problem"
    cycle = derive_tests(record(solution, "Input: head = [3,2,0,-4], pos = 1\nOutput: true"))
    assert cycle == "no_tests: the example needs node identity (a cycle or an intersection)"
    assert derive_tests(record(solution, "Input: head = 0101\nOutput: true")).startswith("no_tests: example 1: cannot")
    nary = "class Solution:\n    def maxDepth(self, root: 'Node') -> int:\n        return 0\n"
    assert derive_tests(record(nary, "Input: root = [1,null,3]\nOutput: 2")) == "no_tests: unsupported type 'Node'"
    assert derive_tests(record("class Solution(:\n", "Input: a = 1\nOutput: 1")).startswith("no_tests: oracle")


def test_kinds_from_annotations_and_float_parameters():
    oracle = ("class Solution:\n    def f(self, lists: List[Optional[ListNode]], root: 'TreeNode', hour: float)"
              " -> List[Optional[TreeNode]]:\n        return []\n")
    tests = derive_tests(record(oracle, "Input: lists = [[1]], root = [1], hour = 6\nOutput: []"))
    assert tests.arg_kinds == {"lists": "list_node_list", "root": "tree_node", "hour": "plain"}
    assert tests.return_kind == "tree_node_list"
    assert type(tests.cases[0].inputs["hour"]) is float  # LeetCode passes 6.0 to a float parameter


# ---- the harness ----------------------------------------------------------------------------------------

REVERSE = """
class Solution:
    def reverseList(self, head: Optional[ListNode]) -> Optional[ListNode]:
        prev = None
        while head:
            head.next, prev, head = prev, head, head.next
        return prev
"""


def test_list_node_round_trip():
    tests = derive_tests(record(REVERSE, "Input: head = [1,2,3]\nOutput: [3,2,1]", "Input: head = []\nOutput: []"))
    assert tests.arg_kinds == {"head": "list_node"} and tests.return_kind == "list_node"
    assert statuses(run_harness(REVERSE, tests)) == ["passed", "passed"]
    identity = REVERSE.replace("prev = None", "return head")
    outcomes = run_harness(identity, tests)
    assert statuses(outcomes) == ["wrong_answer", "passed"]
    assert outcomes[0].detail == "expected [3, 2, 1], got [1, 2, 3]"
    cycle = REVERSE.replace("prev = None", "head.next.next = head\n        return head")
    outcomes = run_harness(cycle, tests)
    assert statuses(outcomes) == ["exception", "exception"]  # [] has no head.next: AttributeError
    assert "(a cycle?)" in outcomes[0].detail


def test_tree_node_round_trip_with_nulls():
    same = "class Solution:\n    def same(self, root: Optional[TreeNode]) -> Optional[TreeNode]:\n        return root\n"
    tree = "[5,3,6,2,4,null,8,1,null,null,null,7,9]"
    tests = derive_tests(record(same, f"Input: root = {tree}\nOutput: {tree}", "Input: root = []\nOutput: []"))
    assert statuses(run_harness(same, tests)) == ["passed", "passed"]
    invert = """
class Solution:
    def invertTree(self, root: Optional[TreeNode]) -> Optional[TreeNode]:
        if root:
            root.left, root.right = self.invertTree(root.right), self.invertTree(root.left)
        return root
"""
    tests = derive_tests(record(invert, "Input: root = [4,2,7,1,3,6,9]\nOutput: [4,7,2,9,6,3,1]",
                                "Input: root = [1,null,2]\nOutput: [1,2]"))
    assert statuses(run_harness(invert, tests)) == ["passed", "passed"]
    assert statuses(run_harness(same.replace("def same", "def invertTree"), tests)) == ["wrong_answer"] * 2


def test_lists_of_linked_lists():
    merge = """
class Solution:
    def mergeKLists(self, lists: List[Optional[ListNode]]) -> Optional[ListNode]:
        values = sorted(v for node in lists for v in self.walk(node))
        head = None
        for v in reversed(values):
            head = ListNode(v, head)
        return head

    def walk(self, node):
        while node:
            yield node.val
            node = node.next
"""
    tests = derive_tests(record(merge, "Input: lists = [[1,4,5],[1,3,4],[2,6]]\nOutput: [1,1,2,3,4,4,5,6]",
                                "Input: lists = [[]]\nOutput: []"))
    assert tests.arg_kinds == {"lists": "list_node_list"}
    assert statuses(run_harness(merge, tests)) == ["passed", "passed"]


def test_in_place_compares_the_first_argument():
    sort_colors = "class Solution:\n    def sortColors(self, nums: List[int]) -> None:\n        nums.sort()\n"
    tests = derive_tests(record(sort_colors, "Input: nums = [2,0,2,1,1,0]\nOutput: [0,0,1,1,2,2]"))
    assert tests.return_kind == "in_place"
    assert statuses(run_harness(sort_colors, tests)) == ["passed"]
    returns_copy = sort_colors.replace("nums.sort()", "return sorted(nums)")
    assert statuses(run_harness(returns_copy, tests)) == ["wrong_answer"]


ANY_ORDER = "Given n, return the pairs. You may return the answer in any order."
PAIRS = "class Solution:\n    def pairs(self, n: int) -> List[List[int]]:\n        return [[2, 1], [1, 0]]\n"


def test_any_order_compares_sorted_and_says_so():
    example = "Input: n = 2\nOutput: [[0,1],[1,2]]"
    tests = derive_tests(record(PAIRS, example, description=ANY_ORDER))
    assert tests.any_order and "any order: compared sorted" in tests.notes
    assert statuses(run_harness(PAIRS, tests)) == ["passed"]
    strict = derive_tests(record(PAIRS, example, description="Return the pairs."))
    assert not strict.any_order and statuses(run_harness(PAIRS, strict)) == ["wrong_answer"]
    # "in any order" about the input is not about the answer
    deck = derive_tests(record(PAIRS, example, description="You can order the deck in any order you want."))
    assert not deck.any_order
    assert statuses(run_harness(PAIRS.replace("[[2, 1], [1, 0]]", "[[0, 1], [1, 3]]"), tests)) == ["wrong_answer"]


def test_comparison_is_typed_and_floats_are_close():
    code = "class Solution:\n    def f(self, x: int):\n        return [1, 2.0000001, 1, '1', (1, 2), None][x]\n"
    tests = derive_tests(record(code, "Input: x = 0\nOutput: true", "Input: x = 1\nOutput: 2.00000",
                                "Input: x = 2\nOutput: 1", "Input: x = 3\nOutput: 1",
                                "Input: x = 4\nOutput: [1,2]", "Input: x = 5\nOutput: []"))
    assert statuses(run_harness(code, tests)) == ["wrong_answer", "passed", "passed", "wrong_answer", "passed",
                                                  "passed"]


def test_syntax_error_fails_every_case():
    broken = "class Solution:\n    def f(self, x: int) -> int\n        return x\n"
    tests = derive_tests(record(broken.replace(") -> int", ") -> int:"), "Input: x = 1\nOutput: 1",
                                "Input: x = 2\nOutput: 2"))
    outcomes = run_harness(broken, tests)
    assert statuses(outcomes) == ["exception", "exception"]
    assert all(o.detail.startswith("SyntaxError") for o in outcomes)


def test_candidate_cannot_break_the_harness():
    tests = derive_tests(record("class Solution:\n    def f(self, x: int) -> int:\n        return x\n",
                                "Input: x = 1\nOutput: 1", "Input: x = 2\nOutput: 2", "Input: x = 3\nOutput: 3"))
    # quotes and backslashes that would end a naive string literal, prints that mimic our lines, one case that
    # raises, one that exits
    hostile = ('# """ and \'\'\' and a backslash \\\nX = "\\"\\"\\" \'\'\' \\\\"\n'
               'print(\'{"i": 0, "ok": true, "got": null, "error": null}\')\n'
               "class Solution:\n    def f(self, x):\n        print('{\"i\": 1, \"ok\": true}')\n"
               "        if x == 2:\n            raise ValueError('no \"2\"\\n')\n"
               "        if x == 3:\n            raise SystemExit(0)\n        return -x\n")
    compile(hostile, "<hostile>", "exec")
    outcomes = run_harness(hostile, tests)
    assert statuses(outcomes) == ["wrong_answer", "exception", "exception"]
    assert outcomes[1].detail == "ValueError: no \"2\"\n" and outcomes[2].detail.startswith("SystemExit")


def test_a_hung_case_is_missing_and_the_earlier_ones_count():
    loop = "class Solution:\n    def f(self, x: int) -> int:\n        while x == 2:\n            pass\n        return x"
    tests = derive_tests(record(loop, "Input: x = 1\nOutput: 1", "Input: x = 2\nOutput: 2"))
    outcomes = run_harness(loop, tests, timeout=3)
    assert statuses(outcomes) == ["passed", "missing"]


def test_prelude_has_leetcodes_implicit_names():
    code = """
class Solution:
    def f(self, nums: List[int]) -> List[int]:
        c = Counter(nums); d = defaultdict(int); q = deque(nums); h = list(nums); heapify(h)
        @cache
        def g(i): return i if i < 2 else g(i - 1) + g(i - 2)
        return [reduce(mul, nums), bisect_left(sorted(nums), 3), gcd(12, 18), inf > 10**18, heappop(h),
                len(list(accumulate(nums))), pow(3, 4, 5), g(10), len(ascii_lowercase), isqrt(17),
                len(SortedList(nums)), comb(4, 2)]
"""
    tests = derive_tests(record(code, "Input: nums = [3,1,2]\nOutput: [6,2,6,true,1,3,1,55,26,4,3,6]"))
    assert statuses(run_harness(code, tests)) == ["passed"]


# ---- every DebugBench record ----------------------------------------------------------------------------

# Examples with several correct answers, where the oracle's differs from the one written (left as written).
AMBIGUOUS = {
    "convert-sorted-list-to-binary-search-tree": "any height-balanced BST",
    "convert-integer-to-the-sum-of-two-no-zero-integers": "any pair",
    "valid-arrangement-of-pairs": "any valid arrangement",
    "neither-minimum-nor-maximum": "any such number",
}
EXPECTED_NO_TESTS = ("no_tests: design problem", "no_tests: example 1: cannot parse value",
                     "no_tests: unsupported type", "no_tests: no public method takes",
                     "no_tests: the example needs node identity")


@pytest.fixture(scope="module")
def debugbench() -> list[tuple[str, dict, DerivedTests | str]]:
    rows = []
    for path in sorted(Path(DEBUGBENCH).glob("python3_*.json")):
        subset = path.stem.removeprefix("python3_")
        rows += [(subset, r, derive_tests(r)) for r in json.loads(path.read_text())]
    return rows


def run_all(jobs: list[tuple[str, DerivedTests]]) -> list[list[CaseOutcome]]:
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda job: run_harness(*job), jobs))


def test_most_records_get_tests(debugbench):
    assert len(debugbench) == 487
    derived = [t for _, _, t in debugbench if isinstance(t, DerivedTests)]
    reasons = collections.Counter(t.split(":")[1].strip() for _, _, t in debugbench if isinstance(t, str))
    # measured: 458 of 487 (94%). No tests: 10 design problems, 7 judge-built types (N-ary and quad-tree Node,
    # CustomFunction), 6 unparsable outputs ("5, nums = [1,1,2,_]", a 32-digit binary literal), 3 cycles (pos),
    # 3 with two unannotated methods of the same parameters
    assert len(derived) / len(debugbench) >= 0.92, reasons
    assert all(t.startswith(EXPECTED_NO_TESTS) for _, _, t in debugbench if isinstance(t, str)), reasons
    assert all(c.inputs and len(t.cases) == len(r["examples"]) for _, r, t in debugbench
               if isinstance(t, DerivedTests) for c in t.cases)


def test_oracles_pass_their_own_tests(debugbench):
    jobs = [(r, t) for _, r, t in debugbench if isinstance(t, DerivedTests)]
    results = run_all([(r["oracle_code"], t) for r, t in jobs])
    failed = {r["slug"]: [o.detail for o in outcomes if not o.passed]
              for (r, _), outcomes in zip(jobs, results, strict=True) if not all(o.passed for o in outcomes)}
    # measured: 453 of 458 pass (98.9%); the 5 failures are the ambiguous examples above
    assert sum(all(o.passed for o in outcomes) for outcomes in results) / len(results) >= 0.98, failed
    assert set(failed) <= set(AMBIGUOUS), failed
    assert all(o.status in ("passed", "wrong_answer") for outcomes in results for o in outcomes), failed


def test_buggy_code_that_does_not_compile_fails_every_case(debugbench):
    jobs = []
    for subset, r, t in debugbench:
        if subset in ("missing_colons", "unclosed_parentheses") and isinstance(t, DerivedTests):
            try:
                compile(r["buggy_code"], "<buggy>", "exec")
            except SyntaxError:
                jobs.append((r["buggy_code"], t))
    assert len(jobs) >= 75  # measured: 78 of the 80 with tests (two planted bugs still compile)
    for outcomes in run_all(jobs):
        assert outcomes and all(o.status == "exception" and "Error" in o.detail for o in outcomes), outcomes
