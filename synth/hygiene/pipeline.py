"""The per-example hygiene steps in order, over a batch of rows: pure, so any process can run a batch.

filter -> anonymize -> render prompt and response -> decontaminate, then the
dedup keys and signature of what is kept. Dedup itself needs every example
and runs in the caller (`dedup.NearDuplicates`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import orjson

from synth.errors import SynthError

from .anonymize import anonymize
from .decontam import Contamination
from .dedup import MinHasher, exact_key, near_duplicates, token_hashes
from .example import Example, target_text
from .filters import filter_reason

# the columns of a row, as the dataset stage selects them
COLUMNS = ("pair_id", "source", "model", "repl_id", "us", "path", "rule", "message", "start_line", "code",
           "diff", "fixed")


@dataclass(frozen=True)
class Kept:
    """An example that passed every per-example step: its JSONL line and what dedup and the card need."""

    pair_id: str
    source: str
    model: str
    repl_id: str
    us: int
    rule: str
    line: bytes                 # {"prompt": ..., "response": ...} as one JSON line, without "\n"
    exact: str                  # exact-dedup key
    shingles: np.ndarray        # sorted 32-bit shingle hashes (near-dedup confirms on these)


@dataclass
class BatchResult:
    """What a batch came to: kept examples (and their MinHash rows), dropped ones by reason, replacements."""

    kept: list[Kept] = field(default_factory=list)
    signatures: list[np.ndarray] = field(default_factory=list)  # one per kept example
    dropped: Counter = field(default_factory=Counter)
    anonymized_examples: int = 0
    anonymized_values: Counter = field(default_factory=Counter)
    rerendered: int = 0

    def merge(self, other: BatchResult) -> None:
        self.kept += other.kept
        self.signatures += other.signatures
        self.dropped.update(other.dropped)
        self.anonymized_examples += other.anonymized_examples
        self.anonymized_values.update(other.anonymized_values)
        self.rerendered += other.rerendered


def clean_rows(rows: list[tuple], seed: int, hasher: MinHasher,
               contamination: Contamination | None) -> BatchResult:
    """Run the per-example steps over rows in COLUMNS order; every row is kept or dropped with a reason."""
    out = BatchResult()
    for row in rows:
        kept, reason = _clean(dict(zip(COLUMNS, row)), seed, hasher, contamination, out)
        if kept is None:
            out.dropped[reason] += 1
        else:
            out.kept.append(kept)
            out.signatures.append(hasher.signature(kept.shingles))
    return out


def _clean(r: dict, seed: int, hasher: MinHasher, contamination: Contamination | None,
           out: BatchResult) -> tuple[Kept | None, str | None]:
    ex = Example(r["pair_id"], r["source"], r["model"], r["repl_id"], r["us"], r["path"], r["rule"],
                 r["message"], r["start_line"] + 1, r["code"], r["diff"], r["fixed"])
    reason = filter_reason(ex)
    if reason:
        return None, reason
    try:
        result = anonymize(ex, seed)
        if result.kinds:
            out.anonymized_examples += 1
            out.anonymized_values.update(result.kinds)
            out.rerendered += result.rerendered
        if result.example is None:
            return None, result.reason
        ex = result.example
        line = orjson.dumps({"prompt": ex.prompt(), "response": ex.response()})
        text = target_text(ex)
    except SynthError:  # a diff or prompt the schema cannot hold (e.g. its line is outside the file)
        return None, "bad_prompt"
    hashes = token_hashes(text)
    shingles = hasher.shingles(hashes)
    if contamination is not None:
        reason = contamination.reason(hashes, shingles)
        if reason:
            return None, reason
    return Kept(ex.pair_id, ex.source, ex.model, ex.repl_id, ex.us, ex.rule, line, exact_key(text),
                shingles), None


def deduplicate(result: BatchResult, threshold: float) -> tuple[list[Kept], int, list[tuple[str, str, float]]]:
    """Exact then near-duplicate dedup, earliest first: (kept, exact duplicates, (dropped, kept, Jaccard)).

    Examples are taken in (instant, pair id) order, whatever order the batches came in, so the earliest
    of two duplicates is the one kept; the kept examples come back in that order.
    """
    seen: set[str] = set()
    rows = []
    order = sorted(range(len(result.kept)), key=lambda i: (result.kept[i].us, result.kept[i].pair_id))
    for i in order:
        ex = result.kept[i]
        if ex.exact not in seen:
            seen.add(ex.exact)
            rows.append(i)
    exact = len(result.kept) - len(rows)
    examples = [result.kept[i] for i in rows]
    signatures = (np.stack([result.signatures[i] for i in rows]) if rows
                  else np.zeros((0, 1), dtype=np.uint32))
    near = near_duplicates(signatures, [ex.shingles for ex in examples], threshold)
    dropped = {i for i, _, _ in near}
    pairs = [(examples[i].pair_id, examples[j].pair_id, round(score, 4)) for i, j, score in near]
    return [ex for i, ex in enumerate(examples) if i not in dropped], exact, pairs
