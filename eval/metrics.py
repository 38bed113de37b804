"""Repair metrics: pure functions over (candidate, reference) and over stored per-sample results.

Per sample (one answer of a model for one item), each metric is True, False
or None:

  target_as_reference  the hunk that fixes the target equals the reference's change there (AST, else
               normalized text; `target_as_reference` below); judges the target bug alone, so it holds
               on a file with several bugs where `functional` needs all of them fixed
  deletes_only the applied diff only removes code (`deletes_only` below): a lower-is-better rate, the
               share of answers that "fix" by deleting
  extracted    a diff block was found in the answer
  applies      the diff parses and applies strictly to the buggy code
  changes      it applies and the code it gives differs from the buggy code (a diff that copies a line
               unchanged applies and fixes nothing)
  target_gone  the meta-LSP no longer reports the item's target diagnostic (on its line, mapped
               through the diff)
  functional   the fixed code passes every derived test of the item (None without tests)
  ast_exact    the fixed code's AST equals the reference's (False when either does not parse)
  ast_or_string  AST equality where both parse, else equality of normalized text

None means "not scored", for one of two reasons, and the two are kept apart:

  not applicable  the metric has no meaning for the item or the answer: `functional` on an item without
                  tests, `target_as_reference` when the item has no target or its reference changes
                  nothing, `deletes_only` when the diff does not apply (False would count a broken answer
                  as "not a deletion" in a lower-is-better rate). Otherwise an answer that does not apply
                  is False for every metric that needs an applied diff: a model's failure.
  infrastructure  the machinery failed, not the model: the meta-LSP check of the fixed file failed or
                  skipped it (`target_gone`, detail "lsp_failed: ...") or the sandbox itself failed
                  (`functional`, detail "sandbox_failed: ..."). `infra_failed` recognizes such a row by
                  its detail, so rows stored before this rule (`target_gone` False with "lsp_failed: ...")
                  read as not scored too, and `not_scored` counts them per metric: the run summary
                  (`not_scored`) and the report show the counts, so a failing language server or sandbox
                  can never pass for a weak model.

Aggregation (`aggregate`) is separate and works on stored rows, so a report
can be recomputed from `eval_items`: per item, c of its n samples pass a
metric; pass@k is the Codex paper's unbiased estimator 1 - C(n-c, k)/C(n, k),
averaged over the items where the metric is scored. An item with any sample
not scored for a metric is left out of that metric (its `{metric}_items`
count drops), since pass@k needs every sample's verdict. pass@1 is c/n averaged.
"""

from __future__ import annotations

import ast
import difflib
import math
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

METRICS = ("target_as_reference", "deletes_only", "extracted", "applies", "changes", "target_gone", "functional",
           "ast_exact", "ast_or_string")
LOWER_IS_BETTER = ("deletes_only",)
# metric -> (the row's detail field, the prefix the runner gives it when the machinery failed)
INFRA_FAILURES = {"target_gone": ("target_detail", "lsp_failed:"), "functional": ("test_detail", "sandbox_failed:")}


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


def deletes_only(code: str, fixed: str) -> bool:
    """Whether `fixed` only removes code from `code`.

    Both are read as statement lines: stripped, without blank lines, whole-line comments and lines that are
    only `pass` or `...`. True when the fixed lines are a proper subsequence of the buggy ones (fewer, same
    order): deleting a line, blanking it, replacing it with `pass` or commenting it out removes code; a line
    the fixed file has and the buggy one lacks (`# x = 1` -> `x = 1`) is an edit, and a change of layout
    only removes nothing.
    """
    old, new = _statement_lines(code), _statement_lines(fixed)
    rest = iter(old)
    return len(new) < len(old) and all(line in rest for line in new)  # `in` consumes `rest`: order counts


def _statement_lines(code: str) -> list[str]:
    stripped = (line.strip() for line in code.removeprefix("\ufeff").splitlines())
    return [s for s in stripped if s and not s.startswith("#") and s not in ("pass", "...")]


def target_as_reference(code: str, fixed: str | None, reference: str, start_line: int | None,
                        end_line: int | None = None) -> bool | None:
    """Whether the candidate changes the target's place the way the reference does.

    `start_line`/`end_line`: the target's 0-based lines in `code` (None: the item has no target). The
    reference hunk at the target (else the nearest, the earlier on a tie; hunks that only add or drop blank
    or comment lines are passed over while another changes code) gives a window of buggy lines,
    grown over every reference or candidate hunk that overlaps or touches it until stable; the candidate's
    and the reference's lines for that window are equal as text, or as ASTs in place (the reference file
    with the window as the candidate wrote it, against the reference, where both parse and the reference's
    change shows in the AST), else as normalized text (indentation kept). None when there is no target or the reference changes nothing; False when no diff
    applied (`fixed` None).
    """
    old, ref = code.split("\n"), reference.split("\n")
    ref_hunks = _hunks(old, ref)
    if start_line is None or not ref_hunks:
        return None
    if fixed is None:
        return False
    new = fixed.split("\n")
    cand_hunks = _hunks(old, new)
    end = max(start_line, start_line if end_line is None else end_line)
    # the reference's hunks that change code, not only blank lines or comments (DebugBench's references often
    # also drop a blank first or last line: such a hunk, nearer the target, is not the fix)
    significant = [h for h in ref_hunks if normalized_text("\n".join(old[h[1]:h[2]]))
                   != normalized_text("\n".join(ref[h[3]:h[4]]))] or ref_hunks
    _tag, lo, hi, _j1, _j2 = min(significant, key=lambda h: (_distance(h[1], h[2], start_line, end), h[1]))
    while True:
        touching = [(i1, i2) for _t, i1, i2, _a, _b in ref_hunks + cand_hunks if i1 <= hi and i2 >= lo]
        grown = (min([lo] + [i1 for i1, _ in touching]), max([hi] + [i2 for _, i2 in touching]))
        if grown == (lo, hi):
            break
        lo, hi = grown
    got, want = _segment(new, cand_hunks, lo, hi), _segment(ref, ref_hunks, lo, hi)
    if got == want:
        return True
    # by AST in its place: the reference file with the window put back as the candidate wrote it, so
    # indentation counts as the enclosing blocks see it; only where the reference's change shows in the AST
    # at all (else a fix of layout or comments would be "equal" to leaving the bug)
    ref_ast = ast_dump(reference)
    if ref_ast is not None and ref_ast != ast_dump(code):
        start = lo + _shift(ref_hunks, lo)
        hybrid = ref[:start] + got + ref[start + len(want):]
        mixed = ast_dump("\n".join(hybrid))
        if mixed is not None:
            return mixed == ref_ast
    return normalized_text("\n".join(got)) == normalized_text("\n".join(want))


def _hunks(old: list[str], new: list[str]) -> list[tuple[str, int, int, int, int]]:
    ops = difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
    return [op for op in ops if op[0] != "equal"]


def _distance(i1: int, i2: int, start: int, end: int) -> int:
    """Lines between a hunk over buggy lines [i1, i2) and the target's lines [start, end]; 0: it holds them."""
    if i1 == i2:  # an insertion before line i1: at the target when just before or just after its lines
        return 0 if start <= i1 <= end + 1 else (start - i1 if i1 < start else i1 - end - 1)
    if i1 <= end and i2 > start:
        return 0
    return i1 - end if i1 > end else start - (i2 - 1)


def _shift(hunks: list[tuple[str, int, int, int, int]], lo: int) -> int:
    """How many lines the hunks before buggy line `lo` (which lies outside every hunk) add or remove."""
    return sum((j2 - j1) - (i2 - i1) for _t, i1, i2, j1, j2 in hunks if i2 < lo)


def _segment(new: list[str], hunks: list[tuple[str, int, int, int, int]], lo: int, hi: int) -> list[str]:
    """The new file's lines for buggy lines [lo, hi), whose ends lie outside every hunk."""
    before = _shift(hunks, lo)
    inside = sum((j2 - j1) - (i2 - i1) for _t, i1, i2, j1, j2 in hunks if i1 >= lo and i2 <= hi)
    return new[lo + before:hi + before + inside]


def infra_failed(row: Mapping, metric: str) -> bool:
    """Whether the row's `metric` was not scored because the machinery (meta-LSP, sandbox) failed."""
    field_, prefix = INFRA_FAILURES.get(metric, ("", ""))
    return bool(field_) and str(row.get(field_) or "").startswith(prefix)


def not_scored(rows: Iterable[Mapping]) -> dict[str, int]:
    """Rows per metric left unscored by an infrastructure failure (every metric that can have one, 0 too)."""
    counts = dict.fromkeys(INFRA_FAILURES, 0)
    for row in rows:
        for metric in INFRA_FAILURES:
            counts[metric] += infra_failed(row, metric)
    return counts


def sample_value(row: Mapping, metric: str) -> bool | None:
    """A row's verdict for a metric: None where it does not apply, was stored before the metric existed, or
    the machinery failed (rows stored before that rule read False with an "lsp_failed" detail)."""
    return None if infra_failed(row, metric) else row.get(metric)


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
                values = [sample_value(s, metric) for s in entry["samples"]]
                if any(v is None for v in values):
                    continue  # not scored for this item (see the module docstring)
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
