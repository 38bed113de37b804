"""The per-example pipeline over rows, and dedup over its result."""

from __future__ import annotations

import orjson

from synth.hygiene import REASONS
from synth.hygiene.dedup import MinHasher
from synth.hygiene.pipeline import clean_rows, deduplicate
from synth.hygiene.split import sample, split_by_group
from synth.linediff import render
from synth.schema import parse_prompt, parse_response

from .test_hygiene_dedup import change_numbers, program

RULE = "pyright[reportUndefinedVariable]"


def row(pair_id: str, fixed: str, line: int | None = None, path: str = "main.py", repl: str = "r1") -> tuple:
    code = fixed + "prnt(1)\n"
    fixed = fixed + "print(1)\n"
    at = code.count("\n") - 1 if line is None else line
    return (pair_id, "user", "user", repl, 0, path, RULE, '"prnt" is not defined', at, code, render(code, fixed),
            fixed)


def test_rows_are_kept_or_dropped_with_a_reason_every_reason_documented():
    rows = [row("a", program(1)), row("b", program(2), line=999), row("c", program(3), path="x_pb2.py"),
            row("d", 'EMAIL = "ann@corp.io"\n' + program(4)), row("e", program(1))]
    result = clean_rows(rows, seed=0, hasher=MinHasher(), contamination=None)
    assert [k.pair_id for k in result.kept] == ["a", "d", "e"]
    assert dict(result.dropped) == {"bad_prompt": 1, "generated:protobuf": 1}
    assert (result.anonymized_examples, dict(result.anonymized_values)) == (1, {"email": 1})
    assert set(result.dropped) <= set(REASONS)
    example = orjson.loads(result.kept[1].line)
    prompt = parse_prompt(example["prompt"])
    assert "ann@corp.io" not in example["prompt"] and "@example." in prompt.code
    assert prompt.line_text == "prnt(1)" and parse_response(example["response"]) == \
        f"-{prompt.line} prnt(1)\n+{prompt.line} print(1)"
    assert len(result.signatures) == 3


def test_deduplicate_drops_exact_then_near_copies_earliest_first():
    base = program(5, functions=12)
    rows = [row("a", base), row("b", program(6)), row("c", base), row("d", change_numbers(base, 1))]
    kept, exact, near = deduplicate(clean_rows(rows, 0, MinHasher(), None), 0.85)
    assert [k.pair_id for k in kept] == ["a", "b"] and exact == 1
    assert [(d, k) for d, k, _ in near] == [("d", "a")] and near[0][2] >= 0.85
    # batches may come in any order: the earliest (instant, then pair id) is still the one kept
    again, _, near = deduplicate(clean_rows(rows[::-1], 0, MinHasher(), None), 0.85)
    assert [k.pair_id for k in again] == ["a", "b"] and [(d, k) for d, k, _ in near] == [("d", "a")]


def test_sample_and_split_are_seeded_and_keep_groups_whole():
    items = [(f"p{i}", f"g{i % 7}") for i in range(70)]
    assert sample(items, 10, 1, key=lambda x: x[0]) == sample(items, 10, 1, key=lambda x: x[0])
    assert sample(items, 10, 1, key=lambda x: x[0]) != sample(items, 10, 2, key=lambda x: x[0])
    assert sample(items, None, 1, key=lambda x: x[0]) == items
    train, eval_ = split_by_group(items, 0.2, 0, key=lambda x: x[0], group=lambda x: x[1])
    assert len(eval_) == 10 and len(train) == 60  # one group of 10 fits in round(0.2 * 70) = 14
    assert not {g for _, g in train} & {g for _, g in eval_}
    assert split_by_group(items, 0.2, 0, key=lambda x: x[0], group=lambda x: x[1]) == (train, eval_)
    assert split_by_group(items, 0.0, 0, key=lambda x: x[0], group=lambda x: x[1])[1] == []
