"""Before a run: every JSONL line an example, and which examples fit max_seq_len as LLM Foundry tokenizes them.

LLM Foundry drops an example whose prompt alone fills max_seq_len and cuts the response of one that is longer
(the diff loses its end and its EOS); it says so only as a count in its log. On the demo dataset at the
cpu-small default of 1024 tokens that is 85 of 176 examples (BENCHMARKS.md, "Fine-tuning"). `train config`
measures each example with the model's own tokenizer in LLM Foundry's environment, reports the counts, and by
default trains only on the examples that fit whole (`--too-long drop`, a filtered copy in the run folder);
`--too-long keep` leaves them to LLM Foundry.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .errors import TrainError

TOO_LONG = ("drop", "keep")
BAD_LINES_SHOWN = 5


def check_jsonl(path: Path, dataset: str) -> int:
    """The number of examples in a split file; TrainError naming the bad lines if any is not {prompt, response}."""
    bad, n = [], 0
    try:
        with path.open("rb") as f:
            for number, raw in enumerate(f, 1):
                n += 1
                why = _line_problem(raw)
                if why:
                    bad.append(f"line {number}: {why}")
    except OSError as e:
        raise TrainError(f"dataset {dataset!r}: cannot read {path} ({e.strerror or e})") from None
    if bad:
        shown = "; ".join(bad[:BAD_LINES_SHOWN]) + (f"; and {len(bad) - BAD_LINES_SHOWN} more" if len(bad) >
                                                    BAD_LINES_SHOWN else "")
        raise TrainError(f"dataset {dataset!r}: {path} has {len(bad)} bad line(s) of {n} ({shown}): it is not what "
                         "`otlake dataset build` writes; rebuild the dataset (`dataset build NAME --out DIR "
                         "--overwrite`)")
    return n


def _line_problem(raw: bytes) -> str | None:
    try:
        row = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return "empty line" if not raw.strip() else f"not JSON ({e.msg if hasattr(e, 'msg') else e})"
    if not isinstance(row, dict):
        return f"a JSON {type(row).__name__}, not an object"
    for key in ("prompt", "response"):
        if not isinstance(row.get(key), str):
            return f"{key!r} missing" if key not in row else f"{key!r} is a {type(row[key]).__name__}, not a string"
        if not row[key].strip():
            return f"{key!r} is empty"
    return None


@dataclass(frozen=True)
class SplitFit:
    """One split at one max_seq_len: per example (file order) its tokens and fits | truncated | dropped."""

    tokens: tuple[int, ...]
    status: tuple[str, ...]

    def counts(self) -> dict:
        c = Counter(self.status)
        return {"examples": len(self.status), "fits": c["fits"], "truncated": c["truncated"],
                "dropped": c["dropped"], "longest": max(self.tokens, default=0),
                "shortest": min(self.tokens, default=0)}


def unmeasurable(model_id: str) -> str | None:
    """Why lengths cannot be measured for this model here (None when they can)."""
    from . import foundry_env

    try:
        foundry_env.python()
    except TrainError:
        return "LLM Foundry's environment is not installed (`make train-env`)"
    if Path(model_id).is_dir():
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return f"the tokenizer of hub id {model_id} is not on this machine"
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if isinstance(try_to_load_from_cache(model_id, name), str):
            return None
    return f"the tokenizer of hub id {model_id} is not in the Hugging Face cache (the machine is offline)"


def measure(model_id: str, seq: int, template: str, files: dict[str, Path]) -> dict[str, SplitFit]:
    """Each split's examples as LLM Foundry tokenizes them (the model's tokenizer, the run's template)."""
    from . import foundry_env

    result = foundry_env.task("lengths", model_id, str(seq), template, *(str(p) for p in files.values()))
    out = {}
    for split, path in files.items():
        got = result["files"][str(path)]
        out[split] = SplitFit(tuple(got["tokens"]), tuple(got["status"]))
    return out


def write_fitting(files: dict[str, Path], fits: dict[str, SplitFit], out_dir: Path) -> dict[str, Path]:
    """Copies of the split files holding only the examples that fit whole (a split that loses none is not copied)."""
    out = {}
    for split, path in files.items():
        keep = [s == "fits" for s in fits[split].status]
        if all(keep):
            out[split] = path
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / path.name
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        with path.open("rb") as src, tmp.open("wb") as dst:
            for line, ok in zip(src, keep, strict=True):
                if ok:
                    dst.write(line if line.endswith(b"\n") else line + b"\n")
        os.replace(tmp, target)  # a rerun of `train config` rewrites it whole
        out[split] = target
    return out
