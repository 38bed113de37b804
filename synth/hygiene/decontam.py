"""Decontamination: drop examples that overlap the evaluation sets a model will be judged on.

An evaluation set is a JSON file (a list of records, or one record), a JSONL
file (a record a line), or a folder of them (DebugBench ships
`python3_*.json`). Every string in a record, at any depth, is text of that
set: code, fixed code, the problem statement. Records of one task (the same
`slug`, `task_id`, `id` or `name`) count as one task below.

Two tests, in this order, each a drop reason:
- contaminated:near_duplicate: the example's target text (`example.target_text`)
  and an evaluation text have a Jaccard similarity of at least 0.7 over the
  5-token shingles that dedup uses (lower than dedup's 0.85: a missed
  contamination inflates an eval, a false one costs one training example).
  The evaluation sets are small, so this is exact: an inverted index from
  shingle to evaluation texts finds the candidates (through shingles of at
  most 64 texts), and the Jaccard of the whole sets decides;
- contaminated:ngram_overlap: they share a run of 13 tokens (GPT-3's
  13-gram test, on the same [A-Za-z0-9_] tokens, so punctuation and layout
  do not matter). A 13-gram that occurs in 3 or more tasks of the set is
  boilerplate (LeetCode's `class TreeNode: def __init__(self, val=0, ...)`
  stub) and is not a sign of contamination. On this machine's standard
  library and site-packages (8,000+ files) no file matches DebugBench.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from events.errors import ConfigError

from .dedup import MinHasher, exact_jaccard, ngram_hashes, token_hashes

NGRAM = 13
THRESHOLD = 0.7
BOILERPLATE_TASKS = 3
RARE = 64  # a shingle in more evaluation texts than this does not make them candidates
_TASK_KEYS = ("slug", "task_id", "id", "name")


@dataclass(frozen=True)
class EvalSet:
    """The texts of one evaluation set, with what identifies it in a dataset card."""

    name: str
    files: tuple[str, ...]
    sha256: str                            # of the files' names and bytes, in name order
    records: int
    texts: tuple[tuple[str, str], ...]     # (task, text)


def load_eval_set(path: str | Path) -> EvalSet:
    """Read an evaluation set from a JSON or JSONL file or a folder of them; ConfigError when unreadable."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".json", ".jsonl") and p.is_file())
        if not files:
            raise ConfigError(f"evaluation set {path}: the folder has no .json or .jsonl file")
    elif path.is_file():
        files = [path]
    else:
        raise ConfigError(f"evaluation set {path}: no such file or folder")
    digest = hashlib.sha256()
    texts: list[tuple[str, str]] = []
    records = 0
    for file in files:
        data = file.read_bytes()
        digest.update(file.name.encode() + b"\0" + data)
        for index, record in enumerate(_records(file, data)):
            records += 1
            task = _task(record, f"{file.name}:{index}")
            texts += [(task, text) for text in _strings(record)]
    return EvalSet(path.name, tuple(f.name for f in files), digest.hexdigest(), records, tuple(texts))


class Contamination:
    """The shingles and n-grams of evaluation sets; `reason` tests one example against them."""

    def __init__(self, sets: list[EvalSet], hasher: MinHasher, ngram: int = NGRAM,
                 threshold: float = THRESHOLD, boilerplate_tasks: int = BOILERPLATE_TASKS) -> None:
        self.ngram, self.threshold = ngram, threshold
        self.texts: list[np.ndarray] = []          # each distinct evaluation text's shingle set
        self.postings: dict[int, list[int]] = {}   # shingle -> the texts that have it
        per_task: dict[str, set] = {}
        seen: set[str] = set()
        for eval_set in sets:
            for task, text in eval_set.texts:
                hashes = token_hashes(text)
                if len(hashes) >= ngram:
                    per_task.setdefault(f"{eval_set.name}/{task}", set()).update(
                        ngram_hashes(hashes, ngram).tolist())
                if len(hashes) >= hasher.shingle and text not in seen:
                    seen.add(text)
                    shingles = hasher.shingles(hashes)
                    for s in shingles.tolist():
                        self.postings.setdefault(s, []).append(len(self.texts))
                    self.texts.append(shingles)
        df = Counter(h for grams in per_task.values() for h in grams)
        self.boilerplate = sum(1 for n in df.values() if n >= boilerplate_tasks)
        self.ngrams = np.array(sorted(h for h, n in df.items() if n < boilerplate_tasks), dtype=np.uint64)

    def reason(self, hashes: np.ndarray, shingles: np.ndarray) -> str | None:
        """'contaminated:near_duplicate', 'contaminated:ngram_overlap' or None, for an example's tokens."""
        candidates = set()
        for s in shingles.tolist():
            texts = self.postings.get(s)
            if texts is not None and len(texts) <= RARE:  # a shingle of many texts finds no one text
                candidates.update(texts)
        for t in sorted(candidates):
            if exact_jaccard(shingles, self.texts[t]) >= self.threshold:
                return "contaminated:near_duplicate"
        if len(self.ngrams) and len(hashes) >= self.ngram:
            grams = ngram_hashes(hashes, self.ngram, unique=False)
            at = np.searchsorted(self.ngrams, grams).clip(max=len(self.ngrams) - 1)
            if np.any(self.ngrams[at] == grams):
                return "contaminated:ngram_overlap"
        return None


def _records(file: Path, data: bytes) -> list:
    try:
        if file.suffix.lower() == ".jsonl":
            return [orjson.loads(line) for line in data.splitlines() if line.strip()]
        value = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise ConfigError(f"evaluation set {file}: not valid JSON{'L' if file.suffix == '.jsonl' else ''}: {e}") \
            from e
    return value if isinstance(value, list) else [value]


def _task(record, fallback: str) -> str:
    if isinstance(record, dict):
        for key in _TASK_KEYS:
            if isinstance(record.get(key), (str, int)):
                return str(record[key])
    return fallback


def _strings(value) -> list[str]:
    """Every string inside a JSON value, depth first."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
