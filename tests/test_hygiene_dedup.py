"""Dedup: normalized exact keys, MinHash signatures equal to datasketch's, LSH banding, greedy near-dedup."""

from __future__ import annotations

import random

import numpy as np
from datasketch import MinHash

from synth.hygiene.dedup import (
    MinHasher,
    exact_jaccard,
    exact_key,
    lsh_params,
    near_duplicates,
    ngram_hashes,
    token_hashes,
    tokens,
)
from synth.hygiene.example import Example, target_text
from synth.linediff import render

WORDS = ("total", "count", "items", "value", "price", "score", "index", "result", "data", "order", "level")


def program(seed: int, functions: int = 8) -> str:
    rng = random.Random(seed)
    out = ["import math", ""]
    for i in range(functions):
        a, b = rng.sample(WORDS, 2)
        out += [f"def {a}_{i}_{seed}({b}, k={rng.randrange(1000)}):",
                f"    return math.floor({b} * k / {rng.randrange(1, 1000)})", ""]
    return "\n".join(out)


def change_numbers(code: str, k: int, seed: int = 0) -> str:
    """The code with k of its numbers changed."""
    rng = random.Random(seed)
    spots = [i for i, line in enumerate(code.split("\n")) if "k=" in line]
    lines = code.split("\n")
    for i in rng.sample(spots, k):
        lines[i] = lines[i].replace("k=", "k=9", 1)
    return "\n".join(lines)


def test_exact_key_ignores_layout_but_not_content():
    base = "def f(x):\n    return x + 1\n"
    assert exact_key(base) == exact_key("def f(x):  \r\n\n\n        return x  +  1\n")
    assert exact_key(base) == exact_key("def f(x):\n\treturn x + 1")
    assert exact_key(base) != exact_key(base.replace("+ 1", "+ 2"))


def test_tokens_are_alphanumeric_runs():
    assert tokens("x = foo.bar(1, 'b_c')  # ok") == ["x", "foo", "bar", "1", "b_c", "ok"]


def test_signatures_are_datasketch_minhash_values():
    hasher = MinHasher()
    shingles = hasher.shingles(token_hashes(program(1)))
    reference = MinHash(num_perm=256, seed=1, hashfunc=lambda x: x)
    reference.update_batch(shingles.tolist())
    assert np.array_equal(hasher.signature(shingles), reference.hashvalues)
    assert hasher.minhash(hasher.signature(shingles)).jaccard(reference) == 1.0


def test_shingle_hashes_do_not_collide_on_the_last_token():
    # the high half of a rolling hash that ends with the last token would ignore it: 'a b c d e' == 'a b c d f'
    hashes = token_hashes(" ".join(f"w{i}" for i in range(400)))
    assert len(MinHasher().shingles(hashes)) == len(ngram_hashes(hashes, 5)) == 396


def test_bands_make_a_pair_at_the_threshold_a_candidate_with_high_probability():
    bands, rows = lsh_params(0.85)
    assert (bands, rows) == (25, 10)
    assert 1 - (1 - 0.85**rows) ** bands >= 0.995
    assert 1 - (1 - 0.5**rows) ** bands < 0.03  # unrelated files rarely need the exact check


def _rows(codes: list[str]):
    hasher = MinHasher()
    shingles = [hasher.shingles(token_hashes(c)) for c in codes]
    return np.stack([hasher.signature(s) for s in shingles]), shingles


def test_near_duplicates_are_dropped_against_the_earliest_kept_and_hard_negatives_stay():
    base = program(7)
    near = change_numbers(base, 1)        # one number changed: Jaccard ~0.93
    nearer = change_numbers(base, 1, 5)
    far = change_numbers(base, 6)         # six numbers changed: Jaccard ~0.6
    other = program(8)
    codes = [base, other, near, far, nearer]
    signatures, shingles = _rows(codes)
    assert exact_jaccard(shingles[0], shingles[2]) >= 0.85 > exact_jaccard(shingles[0], shingles[3])
    found = near_duplicates(signatures, shingles, 0.85)
    assert [(i, j) for i, j, _ in found] == [(2, 0), (4, 0)]
    assert all(abs(score - exact_jaccard(shingles[i], shingles[j])) < 1e-12 for i, j, score in found)
    # order decides which one stays: reversed, the last copy is kept and the original goes (the far copy,
    # Jaccard 0.42 with it, stays even at 0.5)
    reverse = near_duplicates(signatures[::-1], shingles[::-1], 0.5)
    assert [(i, j) for i, j, _ in reverse] == [(2, 0), (4, 0)]


def test_no_rows_and_distinct_rows():
    signatures, shingles = _rows([program(s) for s in range(30)])
    assert near_duplicates(signatures, shingles) == []
    assert near_duplicates(np.zeros((0, 256), dtype=np.uint32), []) == []


def test_target_text_does_not_see_line_numbers():
    code = program(3) + "\nprnt(total_0_3(1))\n"
    fixed = code.replace("prnt(", "print(")
    moved_code, moved_fixed = "# a comment on top\n" + code, "# a comment on top\n" + fixed
    line = code.count("\n")
    a = Example("a", "user", "user", "r", 0, "m.py", "ruff[F821]", "m", line, code, render(code, fixed), fixed)
    b = a.with_texts(code=moved_code, fixed=moved_fixed, diff=render(moved_code, moved_fixed), line=line + 1)
    assert a.diff != b.diff
    hasher = MinHasher()
    sa, sb = (hasher.shingles(token_hashes(target_text(x))) for x in (a, b))
    assert exact_jaccard(sa, sb) > 0.95
