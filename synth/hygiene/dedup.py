"""Deduplication: exact (normalized) and near-duplicate (MinHash LSH over token shingles, as BigCode did).

Both read `example.target_text`: the code, the rule and message, and the diff
as signed lines, without line numbers.

Exact: sha256 of that text with line ends normalized, trailing whitespace
stripped, blank lines dropped and every run of spaces or tabs made one space
(indentation included: a re-indented copy is still a copy).

Near: tokens are the runs of [A-Za-z0-9_] (BigCode's split on non-alphanumerics),
shingles are 5 consecutive tokens, and each example gets a 256-permutation
MinHash: datasketch's affine32 scheme with its permutations for seed 1,
computed here in one numpy step per example (a test checks the values equal
datasketch's `MinHash.update_batch`). Two examples are near-duplicates when
the Jaccard similarity of their shingle sets is at least the threshold
(default 0.85, BigCode's).

Candidates come from LSH banding of the signatures, like datasketch's
MinHashLSH, but done over the whole set at once in numpy (as BigCode's
near_deduplication does): MinHashLSH keeps a dict entry and a set per band
and key, several KB per example, 600+ MB at 100K examples. The bands are
chosen so that a pair exactly at the threshold shares a band with probability
>= 0.995 (`lsh_params`: 25 bands of 10 rows for 0.85), and every candidate is
confirmed on the exact Jaccard of the two shingle sets, so no drop is a
MinHash estimation error. Greedy in a fixed order (earliest first): an
example is dropped when it is a near-duplicate of one already kept, so the
kept set has no confirmed near-duplicate pair that shares a band.
"""

from __future__ import annotations

import hashlib
import re
import zlib

import numpy as np
from datasketch import MinHash

THRESHOLD = 0.85
SHINGLE = 5
NUM_PERM = 256
SEED = 1
CANDIDATE_RECALL = 0.995
MAX_COMPARE = 1000

_TOKEN_SPLIT = re.compile(r"[^A-Za-z_0-9]+")
_SPACES = re.compile(r"[ \t]+")
_MUL = np.uint64(0x9E3779B97F4A7C15)  # odd: a bijective mix of each token into the rolling hash
_FMIX = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))


def exact_key(text: str) -> str:
    """The normalized text's sha256 (first 32 hex digits)."""
    lines = (line.strip() for line in _SPACES.sub(" ", text.replace("\r\n", "\n")).split("\n"))
    return hashlib.sha256("\n".join(line for line in lines if line).encode()).hexdigest()[:32]


def tokens(text: str) -> list[str]:
    """Runs of letters, digits and underscores."""
    return [t for t in _TOKEN_SPLIT.split(text) if t]


_TOKEN_CACHE: dict[str, int] = {}


def token_hashes(text: str) -> np.ndarray:
    """CRC-32 of each token (uint64), cached: identifiers repeat across a corpus."""
    cache = _TOKEN_CACHE
    if len(cache) > 200_000:
        cache.clear()
    out = []
    for tok in tokens(text):
        h = cache.get(tok)
        if h is None:
            h = cache[tok] = zlib.crc32(tok.encode())
        out.append(h)
    return np.array(out, dtype=np.uint64)


def ngram_hashes(hashes: np.ndarray, n: int, unique: bool = True) -> np.ndarray:
    """A 64-bit hash of every run of n tokens, unique and sorted (all tokens as one run when fewer)."""
    if len(hashes) == 0:
        return np.zeros(0, dtype=np.uint64)
    width = min(n, len(hashes))
    count = len(hashes) - width + 1
    h = np.zeros(count, dtype=np.uint64)
    for k in range(width):  # polynomial rolling hash; uint64 arithmetic wraps
        h = h * _MUL + hashes[k : k + count] + np.uint64(k + 1)
    # splitmix64's finalizer: the last token only reaches the low bits above, and shingles take the high half
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return np.unique(h) if unique else h


class MinHasher:
    """256-permutation MinHash signatures of 5-token shingles, as datasketch's affine32 MinHash computes them."""

    def __init__(self, num_perm: int = NUM_PERM, seed: int = SEED, shingle: int = SHINGLE) -> None:
        self.num_perm, self.seed, self.shingle = num_perm, seed, shingle
        self.permutations = MinHash(num_perm=num_perm, seed=seed).permutations
        self._a, self._b = self.permutations

    def shingles(self, hashes: np.ndarray) -> np.ndarray:
        """Sorted, unique 32-bit shingle hashes: the high half of each 64-bit n-gram hash."""
        return np.unique((ngram_hashes(hashes, self.shingle) >> np.uint64(32)).astype(np.uint32))

    def signature(self, shingles: np.ndarray) -> np.ndarray:
        """The MinHash values (uint32, one per permutation) of a set of 32-bit shingle hashes."""
        if len(shingles) == 0:
            return np.full(self.num_perm, np.iinfo(np.uint32).max, dtype=np.uint32)
        s1, m1, s2, m2, s3 = _FMIX
        hv = shingles.reshape(-1, 1)
        hv = hv ^ (hv >> s1)
        hv = hv * m1
        hv = hv ^ (hv >> s2)
        hv = hv * m2
        hv = hv ^ (hv >> s3)
        return (hv * self._a + self._b).min(axis=0)

    def minhash(self, signature: np.ndarray) -> MinHash:
        """The signature as a datasketch MinHash (sharing this hasher's permutations)."""
        return MinHash(seed=self.seed, hashvalues=signature, permutations=self.permutations, scheme="affine32")


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """The Jaccard similarity two signatures estimate."""
    return float(np.count_nonzero(a == b)) / len(a)


def lsh_params(threshold: float, num_perm: int = NUM_PERM, recall: float = CANDIDATE_RECALL) -> tuple[int, int]:
    """(bands, rows): the most rows per band with which a pair at the threshold is a candidate w.p. >= recall."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if bands >= 2 and 1 - (1 - threshold**rows) ** bands >= recall:
            return bands, rows
    return num_perm, 1


def exact_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """The Jaccard similarity of two sorted sets of shingle hashes."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (len(a) + len(b) - inter)


def near_duplicates(signatures: np.ndarray, shingles: list[np.ndarray], threshold: float = THRESHOLD,
                    max_compare: int = MAX_COMPARE) -> list[tuple[int, int, float]]:
    """(i, j, Jaccard) for each row i that duplicates an earlier kept row j; greedy in row order.

    `signatures` holds one MinHash a row. Rows that share a band (`lsh_params`
    rows of the signature, hashed to 64 bits) are candidates; a candidate
    is confirmed on the exact Jaccard of the shingle sets, so a drop is never
    a MinHash estimation error. Each row is compared with at most
    `max_compare` kept rows of a band bucket (a bound for buckets of thousands
    of near-identical-but-not-duplicate files; it has never been reached in
    the benchmark).
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"a near-duplicate threshold is in (0, 1], not {threshold}")
    n = len(signatures)
    if n == 0:
        return []
    bands, rows = lsh_params(threshold, signatures.shape[1])
    mix = np.random.default_rng(SEED).integers(1, 2**63, size=rows, dtype=np.uint64) | np.uint64(1)
    buckets = np.empty((n, bands), dtype=np.int64)
    shared = np.empty((n, bands), dtype=bool)
    for band in range(bands):
        cols = signatures[:, band * rows : (band + 1) * rows].astype(np.uint64)
        keys = (cols * mix).sum(axis=1)  # uint64 arithmetic wraps: a 64-bit hash of the band
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        buckets[:, band] = inverse + band * n
        shared[:, band] = counts[inverse] > 1
    kept_in: dict[int, list[int]] = {}
    out = []
    for i in np.flatnonzero(shared.any(axis=1)).tolist():  # a row alone in every bucket is kept unseen
        mine = buckets[i][shared[i]].tolist()
        best, seen = None, set()
        for bucket in mine:
            for j in kept_in.get(bucket, ())[:max_compare]:
                if j in seen:
                    continue
                seen.add(j)
                score = exact_jaccard(shingles[i], shingles[j])
                if score >= threshold and (best is None or score > best[1]):
                    best = (j, score)
        if best is None:
            for bucket in mine:
                kept_in.setdefault(bucket, []).append(i)
        else:
            out.append((i, best[0], best[1]))
    return out
