"""Repair metrics: pure functions over (candidate, reference) and over stored per-sample results.

Per sample (one answer of a model for one item), each metric is True, False
or None (not applicable: `functional` on an item without tests):

  extracted    a diff block was found in the answer
  applies      the diff parses and applies strictly to the buggy code
  changes      it applies and the code it gives differs from the buggy code (a diff that copies a line
               unchanged applies and fixes nothing)
  target_gone  the meta-LSP no longer reports the item's target diagnostic (on its line, mapped
               through the diff)
  functional   the fixed code passes every derived test of the item (None without tests)
  ast_exact    the fixed code's AST equals the reference's (False when either does not parse)
  ast_or_string  AST equality where both parse, else equality of normalized text

Aggregation (`aggregate`) is separate and works on stored rows, so a report
can be recomputed from `eval_items`: per item, c of its n samples pass a
metric; pass@k is the Codex paper's unbiased estimator 1 - C(n-c, k)/C(n, k),
averaged over the items where the metric applies. pass@1 is c/n averaged.
"""

from __future__ import annotations

import ast
import math
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

METRICS = ("extracted", "applies", "changes", "target_gone", "functional", "ast_exact", "ast_or_string")


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k for an item with n samples of which c pass (Chen et al., 2021)."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass@k needs 0 <= c <= n and k >= 1, got n={n}, c={c}, k={k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per item, got {n}")
    if n - c < k:
        return 1.0
    # 1 - prod_{i=n-c+1}^{n} (1 - k/i): numerically stable form of 1 - C(n-c,k)/C(n,k)
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def ast_dump(code: str) -> str | None:
    """The code's AST as text (no positions), or None when it does not parse."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            return ast.dump(ast.parse(code.removeprefix("\ufeff")))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def ast_exact(candidate: str, reference: str) -> bool:
    """Whether both parse to the same AST (comments, blank lines and layout do not count)."""
    a = ast_dump(candidate)
    return a is not None and a == ast_dump(reference)


def normalized_text(code: str) -> str:
    """Code compared as text: tabs expanded, trailing spaces, blank lines and whole-line comments dropped."""
    lines = (line.expandtabs(4).rstrip() for line in code.removeprefix("\ufeff").splitlines())
    return "\n".join(line for line in lines if line and not line.lstrip().startswith("#"))


def ast_or_string(candidate: str, reference: str) -> bool:
    """AST equality where both parse, else equality of normalized text."""
    a, b = ast_dump(candidate), ast_dump(reference)
    if a is not None and b is not None:
        return a == b
    return normalized_text(candidate) == normalized_text(reference)


def aggregate(rows: Iterable[Mapping], by: Sequence[str] = (), k: int | None = None) -> dict:
    """Metrics of sample rows grouped by item, then by the `by` columns.

    Each row holds `item_id`, the `by` columns and one value per metric
    (True/False/None). Returns {group key tuple: {"items": n, metric: pass@1,
    f"{metric}@{k}": pass@k (when k > 1), f"{metric}_items": items it applies to}}.
    """
    items: dict[str, dict] = {}
    for row in rows:
        entry = items.setdefault(row["item_id"], {"key": tuple(row[c] for c in by), "samples": []})
        entry["samples"].append(row)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for entry in items.values():
        groups[entry["key"]].append(entry)
    out = {}
    for key in sorted(groups, key=lambda t: tuple(str(x) for x in t)):
        entries = groups[key]
        stats: dict = {"items": len(entries)}
        for metric in METRICS:
            p1, pk = [], []
            for entry in entries:
                values = [s.get(metric) for s in entry["samples"]]  # absent: a row stored before the metric
                if any(v is None for v in values):
                    continue  # not applicable to this item
                n, c = len(values), sum(bool(v) for v in values)
                p1.append(c / n)
                if k and k > 1:
                    pk.append(pass_at_k(n, c, k))
            stats[f"{metric}_items"] = len(p1)
            stats[metric] = round(sum(p1) / len(p1), 4) if p1 else None
            if k and k > 1:
                stats[f"{metric}@{k}"] = round(sum(pk) / len(pk), 4) if pk else None
        out[key] = stats
    return out
