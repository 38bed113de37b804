"""The verification chain a candidate diff goes through, every step counted by reason.

Steps, in order (the first that fails decides):
  extracted   a diff block was found in the text (LM output; a user diff is rendered, so always)
  well_formed every diff line parses
  applies     it applies strictly to the pair's code (matching `-` text, consistent numbers)
  changes     it changes the code at all
  parses      the fixed file parses as Python (`ast`)
  target_gone the language servers no longer report the target diagnostic (same rule code and
              message, numbers and quotes normalized, anywhere in the file: a fix moves lines)
  no_new_errors no error-severity diagnostic that the original file did not have
  judge       an LM judge accepts it (only when asked for)
The static steps run here; the LSP steps need both files checked in one pool
batch (`lsp_snapshots`, then `lsp_verdict`), beside the repl's other files so
imports resolve.
"""

from __future__ import annotations

import ast
import warnings
from collections import Counter
from dataclasses import dataclass, field

from lsp_runner.diagnostic import Diagnostic, normalize_message
from lsp_runner.result import CheckResult
from lsp_runner.snapshot import Snapshot

from .errors import DiffError
from .linediff import apply, extract, parse

STEPS = ("extracted", "well_formed", "applies", "changes", "parses", "target_gone", "no_new_errors", "judge")


@dataclass
class StepResult:
    """One step's verdict: ok, or the reason it failed."""

    step: str
    ok: bool
    reason: str = ""

    def as_dict(self) -> dict:
        return {"step": self.step, "ok": self.ok, **({"reason": self.reason} if self.reason else {})}


@dataclass
class Verification:
    """Where one candidate got to; `fixed` is the code after the diff once it applies."""

    diff: str | None = None
    fixed: str | None = None
    steps: list[StepResult] = field(default_factory=list)

    @property
    def failed(self) -> StepResult | None:
        return next((s for s in self.steps if not s.ok), None)

    @property
    def accepted(self) -> bool:
        return bool(self.steps) and self.failed is None

    def record(self, step: str, ok: bool, reason: str = "") -> bool:
        self.steps.append(StepResult(step, ok, reason))
        return ok

    def as_list(self) -> list[dict]:
        return [s.as_dict() for s in self.steps]


def verify_static(code: str, text: str, is_lm_output: bool = True) -> Verification:
    """The steps that need no language server: extract, parse, apply, change, ast."""
    v = Verification()
    diff = extract(text) if is_lm_output else text
    if not v.record("extracted", diff is not None, "" if diff is not None else "no diff block in the answer"):
        return v
    v.diff = diff
    try:
        parsed = parse(diff)
    except DiffError as e:
        v.record("well_formed", False, f"{e.kind}: {e.detail}")
        return v
    v.record("well_formed", True)
    try:
        fixed = apply(code, parsed)
    except DiffError as e:
        v.record("applies", False, f"{e.kind}: {e.detail}")
        return v
    v.record("applies", True)
    if not v.record("changes", fixed != code, "" if fixed != code else "the diff changes nothing"):
        return v
    v.fixed = fixed
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)  # invalid escapes in user code are not errors
            ast.parse(fixed)
    except (SyntaxError, ValueError) as e:  # ValueError: NUL bytes
        v.record("parses", False, f"{type(e).__name__}: {getattr(e, 'msg', e)} (line {getattr(e, 'lineno', '?')})")
        return v
    v.record("parses", True)
    return v


def lsp_snapshots(key: str, path: str, code: str, fixed: str, files: dict[str, str]) -> tuple[Snapshot, Snapshot]:
    """The original and the fixed file tree, to check in one pool batch."""
    before = Snapshot(f"{key}:before", {**files, path: code}, (path,))
    after = Snapshot(f"{key}:after", {**files, path: fixed}, (path,))
    return before, after


def _errors(result: CheckResult, path: str) -> Counter:
    return Counter((d.code, normalize_message(d.message)) for d in result.diagnostics.get(path, ()) if d.severity == 1)


def lsp_verdict(v: Verification, target: Diagnostic, before: CheckResult, after: CheckResult) -> None:
    """Records target_gone and no_new_errors from the two checks."""
    if not before.ok or not after.ok:
        v.record("target_gone", False, f"lsp_failed: {before.reason or after.reason}")
        return
    skipped = after.skipped.get(target.path) or before.skipped.get(target.path)
    if skipped is not None:  # e.g. the fix made the file too large to check: nothing was verified
        v.record("target_gone", False, f"not_checked: {skipped}")
        return
    wanted = (target.code, normalize_message(target.message))
    still = [d for d in after.diagnostics.get(target.path, ())
             if (d.code, normalize_message(d.message)) == wanted]
    if not v.record("target_gone", not still,
                    f"still reported on line {still[0].start_line + 1}" if still else ""):
        return
    new = _errors(after, target.path) - _errors(before, target.path)
    if new:
        (code, message), _ = min(new.items())
        v.record("no_new_errors", False, f"new error {code} {message}"[:300])
    else:
        v.record("no_new_errors", True)


def count_steps(verifications: list[Verification]) -> dict[str, dict]:
    """Per step: how many candidates reached it, passed it, and why the others failed."""
    out: dict[str, dict] = {}
    for step in STEPS:
        reached = passed = 0
        reasons: Counter = Counter()
        for v in verifications:
            for s in v.steps:
                if s.step == step:
                    reached += 1
                    if s.ok:
                        passed += 1
                    else:
                        reasons[reason_group(s.reason)] += 1
        if reached:
            out[step] = {"reached": reached, "passed": passed, "rate": round(passed / reached, 4),
                         "failed_by_reason": dict(reasons.most_common())}
    return out


def reason_group(reason: str) -> str:
    """A failure reason without its particulars, for counting: 'new error pyright[rule]', 'SyntaxError'."""
    head = reason.split(":")[0]
    words = head.split()
    return " ".join(words[:3]) if words[:2] == ["new", "error"] else ("still reported" if head.startswith(
        "still reported") else head[:80])
