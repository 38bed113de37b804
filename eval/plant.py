"""Plant bugs into correct solutions and keep what the meta-LSP flags: `otlake eval inject`, in DebugBench's format."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from .errors import EvalError


@dataclass
class Injected:
    """What `otlake eval inject` planted and kept, per subtype, and the files written."""

    records: dict[str, list[dict]] = field(default_factory=dict)
    counts: dict[str, Counter] = field(default_factory=dict)
    bad: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


CODE_FIELDS = ("oracle_code", "code", "solution", "fixed_code")


def read_solutions(path: str | os.PathLike) -> tuple[list[dict], list[str]]:
    """Correct solutions from a JSON list or JSONL file: each needs its code under one of CODE_FIELDS."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise EvalError(f"{path}: not readable ({e.strerror})") from e
    try:
        records = orjson.loads(data) if data.lstrip()[:1] == b"[" else [
            orjson.loads(line) for line in data.splitlines() if line.strip()]
    except orjson.JSONDecodeError as e:
        raise EvalError(f"{path}: not a JSON list or JSONL ({e})") from e
    good, bad = [], []
    for n, record in enumerate(records, 1):
        code = next((record.get(f) for f in CODE_FIELDS if isinstance(record, dict)
                     and isinstance(record.get(f), str)), None)
        if code is None:
            bad.append(f"{path.name}: record {n}: no code (one of {', '.join(CODE_FIELDS)})")
            continue
        rid = str(record.get("slug") or record.get("id") or record.get("name") or f"solution-{n}")
        good.append({**record, "slug": rid, "oracle_code": code})
    return good, bad


def inject_bugs(solutions: Sequence[dict], subtypes: Sequence[str], seed: int, pool, out: str | os.PathLike,
                bad: Sequence[str] = (), injectors: Sequence[str] = ("rules",), lm=None) -> Injected:
    """Plant one bug per (solution, subtype, injector), keep what the meta-LSP flags, write DebugBench files.

    Injectors: 'rules' (eval.inject, deterministic) and 'lm' (eval.inject_lm, through DSPy with `lm`).
    """
    from lsp_runner.syntax import python_parses

    from .inject import CATEGORY, inject, keep_flagged

    result = Injected(bad=list(bad))
    planted = []
    asks = []
    for subtype in subtypes:
        counts = result.counts.setdefault(subtype, Counter())
        for record in solutions:
            if not python_parses(record["oracle_code"]):
                counts["solutions"] += len(injectors)
                counts["dropped:solution_does_not_parse"] += len(injectors)
                continue
            for injector in injectors:
                counts["solutions"] += 1
                if injector == "lm":
                    asks.append((subtype, record))
                    continue
                injection = inject(record["oracle_code"], subtype, seed)
                if injection is None:
                    counts["dropped:no_site"] += 1
                    continue
                planted.append((f"{subtype}\0{record['slug']}\0rules", injection, record))
    if asks:
        from .inject_lm import lm_inject

        answers = lm_inject([(r["slug"], r["oracle_code"], st) for st, r in asks], lm)
        for (subtype, record), got in zip(asks, answers):
            if got.injection is None:
                result.counts[subtype][f"dropped:lm_{got.reason.split(':')[0]}"] += 1
            else:
                planted.append((f"{subtype}\0{record['slug']}\0lm", got.injection, record))
    verdicts = keep_flagged([(key, injection) for key, injection, _r in planted], pool)
    for (key, injection, record), (_key, _inj, diagnostic, reason) in zip(planted, verdicts):
        subtype = key.split("\0")[0]
        if reason:
            result.counts[subtype][f"dropped:{reason.split(':')[0]}"] += 1
            continue
        result.counts[subtype]["kept"] += 1
        result.records.setdefault(subtype, []).append({
            **{k: v for k, v in record.items() if k not in CODE_FIELDS}, "oracle_code": record["oracle_code"],
            "injector": key.split("\0")[2],
            "buggy_code": injection.buggy_code, "explanations": injection.explanation, "subtype": subtype,
            "category": CATEGORY[subtype], "planted_line": injection.line,
            "diagnostic": {"code": diagnostic.code, "message": diagnostic.message, "line": diagnostic.start_line + 1}
            if diagnostic else None, "seed": seed})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for subtype, records in sorted(result.records.items()):
        path = out / f"python3_{subtype}.json"
        path.write_bytes(orjson.dumps(records, option=orjson.OPT_INDENT_2))
        result.files.append(path)
    return result
