"""The Replit-style held-out eval: (code, diagnostic) pairs from the warehouse with a verified reference fix.

After Replit's production eval: sampled per rule, low-quality code removed,
PII anonymized, deduplicated among themselves, decontaminated against every
training set built so far, each with a reference fix that passed the whole
verification chain (a user-mined fix first, else an LM one). `choose_items`
is pure: candidates in, the frozen records and the drops by reason out.
Within a rule, candidates are taken in a seeded hash order of pair ids, one
pair per repl and rule (pairs of one repl are near copies of each other).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from synth.errors import SynthError
from synth.hygiene.anonymize import anonymize
from synth.hygiene.decontam import Contamination
from synth.hygiene.dedup import THRESHOLD as DEDUP_THRESHOLD
from synth.hygiene.dedup import MinHasher, exact_jaccard, exact_key, token_hashes
from synth.hygiene.example import Example, target_text
from synth.hygiene.filters import filter_reason


@dataclass
class Chosen:
    """The frozen records, and how many candidates each step dropped and why."""

    records: list[dict] = field(default_factory=list)
    candidates: int = 0
    dropped: Counter = field(default_factory=Counter)

    def counts(self) -> dict:
        return {"candidates": self.candidates, "kept": len(self.records),
                "dropped": dict(self.dropped.most_common())}


def choose_items(candidates: Iterable[Example], per_rule: int, seed: int, contamination: Contamination | None,
                 files: Mapping[str, Mapping[str, str]] | None = None,
                 dedup_threshold: float = DEDUP_THRESHOLD) -> Chosen:
    """Up to `per_rule` records per rule; `files` gives each pair's other files (imports resolve)."""
    out = Chosen()
    by_rule: dict[str, list[Example]] = defaultdict(list)
    for ex in candidates:
        out.candidates += 1
        by_rule[ex.rule].append(ex)
    hasher = MinHasher()
    keys: set[str] = set()
    kept_shingles = []
    for rule in sorted(by_rule):
        pool = sorted(by_rule[rule], key=lambda e: hashlib.sha256(f"{seed}:{e.pair_id}".encode()).hexdigest())
        taken, repls = 0, set()
        for ex in pool:
            if taken >= per_rule:
                out.dropped["over_per_rule"] += 1
                continue
            if ex.repl_id in repls:
                out.dropped["same_repl_and_rule"] += 1
                continue
            reason, clean = _check(ex, seed, hasher, contamination, keys, kept_shingles, dedup_threshold)
            if reason:
                out.dropped[reason] += 1
                continue
            taken += 1
            repls.add(ex.repl_id)
            out.records.append(to_record(clean, (files or {}).get(ex.pair_id, {})))
    return out


def _check(ex: Example, seed: int, hasher: MinHasher, contamination: Contamination | None, keys: set[str],
           kept: list, threshold: float) -> tuple[str | None, Example]:
    reason = filter_reason(ex)
    if reason:
        return reason, ex
    try:
        result = anonymize(ex, seed)
        if result.example is None:
            return result.reason or "anonymize_failed", ex
        ex = result.example
        text = target_text(ex)
        ex.prompt()
    except SynthError:
        return "bad_prompt", ex
    hashes = token_hashes(text)
    shingles = hasher.shingles(hashes)
    if contamination is not None:
        reason = contamination.reason(hashes, shingles)
        if reason:
            return reason, ex
    key = exact_key(text)
    if key in keys:
        return "duplicate:exact", ex
    if any(exact_jaccard(shingles, other) >= threshold for other in kept):
        return "duplicate:near", ex
    keys.add(key)
    kept.append(shingles)
    return None, ex


def to_record(ex: Example, files: Mapping[str, str]) -> dict:
    """The plain-JSONL record of an item (eval.items reads it back with its given target)."""
    return {"id": ex.pair_id, "buggy_code": ex.code, "fixed_code": ex.fixed, "path": ex.path,
            "rule": ex.rule, "message": ex.message, "line": ex.line, "category": ex.rule.partition("[")[0],
            "subtype": ex.rule, "reference_source": ex.source, "reference_model": ex.model,
            "repl_id": ex.repl_id, "files": dict(files)}
