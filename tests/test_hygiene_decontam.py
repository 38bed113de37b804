"""Decontamination against DebugBench and registered evaluation sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from events.errors import ConfigError
from otlake.dataset_cli import DEBUGBENCH
from synth.hygiene.decontam import Contamination, load_eval_set
from synth.hygiene.dedup import MinHasher, token_hashes

from .test_hygiene_dedup import program

TREE_STUB = """# Definition for a binary tree node.
# class TreeNode:
#     def __init__(self, val=0, left=None, right=None):
#         self.val = val
#         self.left = left
#         self.right = right
"""


@pytest.fixture(scope="module")
def debugbench():
    return load_eval_set(DEBUGBENCH)


@pytest.fixture(scope="module")
def index(debugbench):
    return Contamination([debugbench], MinHasher())


def reason(index: Contamination, text: str) -> str | None:
    hashes = token_hashes(text)
    return index.reason(hashes, index_hasher.shingles(hashes))


index_hasher = MinHasher()


def test_debugbench_loads_every_record(debugbench):
    assert debugbench.records == 487 and len(debugbench.files) == 10
    assert debugbench.name == "debugbench" and len(debugbench.sha256) == 64
    assert load_eval_set(DEBUGBENCH).sha256 == debugbench.sha256


def test_a_benchmark_solution_is_caught_whole_or_inside_a_bigger_file(index, debugbench):
    record = json.loads((DEBUGBENCH / "python3_missing_colons.json").read_text())[3]
    assert reason(index, record["buggy_code"]) == "contaminated:near_duplicate"
    assert reason(index, record["oracle_code"].replace("    ", "  ")) == "contaminated:near_duplicate"
    # a third of a solution inside someone's bigger file still shares 13-token runs with it
    lines = record["oracle_code"].split("\n")
    part = "\n".join(lines[: max(8, len(lines) // 3)])
    assert reason(index, program(1) + program(2) + part + program(3)) == "contaminated:ngram_overlap"


def test_ordinary_code_and_leetcode_boilerplate_are_not_contamination(index):
    assert reason(index, program(4)) is None
    assert reason(index, TREE_STUB + program(5)) is None
    assert index.boilerplate > 0 and len(index.ngrams) > 10_000


def test_a_registered_jsonl_set_counts_tasks_and_drops_its_solutions(tmp_path):
    solution = program(6)
    rows = [{"task_id": "t1", "prompt": "Write the helpers", "canonical_solution": solution},
            {"task_id": "t2", "canonical_solution": program(7), "meta": {"tests": ["assert f(1) == 2"]}}]
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    eval_set = load_eval_set(path)
    assert (eval_set.name, eval_set.records, len(eval_set.texts)) == ("mine.jsonl", 2, 6)  # every string
    index = Contamination([eval_set], MinHasher())
    assert reason(index, solution) == "contaminated:near_duplicate"
    assert reason(index, program(8)) is None


def test_a_run_shared_by_three_tasks_is_boilerplate(tmp_path):
    shared = "def helper(a, b, c, d, e, f, g, h, i, j, k, l, m, n): return a + b + c + d + e + f + g"
    rows = [{"slug": f"t{i}", "code": shared + "\n" + program(20 + i)} for i in range(3)]
    (tmp_path / "set.json").write_text(json.dumps(rows))
    index = Contamination([load_eval_set(tmp_path)], MinHasher())
    assert reason(index, shared + "\n" + program(30)) is None
    assert reason(index, program(21)) == "contaminated:near_duplicate"


@pytest.mark.parametrize("content, message", [
    (None, "no such file or folder"),
    ("{oops", "not valid JSON"),
])
def test_unreadable_sets_are_config_errors_that_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message) as e:
        load_eval_set(path)
    assert "bad.json" in str(e.value)


def test_a_folder_without_json_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="no .json or .jsonl"):
        load_eval_set(Path(tmp_path))
