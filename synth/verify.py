"""The verification chain a candidate diff goes through, every step counted by reason.

Steps, in order (the first that fails decides):
  extracted   a diff block was found in the text (LM output; a user diff is rendered, so always)
  well_formed every diff line parses
  applies     it applies strictly to the pair's code (matching `-` text, consistent numbers)
  changes     it changes the code at all
  parses      the fixed file adds no syntax error: it parses, or every syntax error it has is one
              of the original's, unrelated to the diff, on a line the diff left alone
  target_gone the language servers no longer report the target diagnostic where its line went
              (same rule code and message, numbers and quotes normalized, on the target's line
              mapped through the diff: the same error on another line is another error)
  no_new_errors no error-severity diagnostic that the diff itself brought in (errors that the
              original's syntax error or an unknown name hid are not the diff's; synth.attribution)
  judge       an LM judge accepts it (only when asked for)
The static steps run here; the LSP steps need both files checked in one pool
batch (`lsp_snapshots`, then `lsp_verdict`), beside the repl's other files so
imports resolve.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from lsp_runner.diagnostic import Diagnostic
from lsp_runner.result import CheckResult
from lsp_runner.snapshot import Snapshot

from .attribution import introduced_errors, line_map, new_syntax_errors, target_still_reported
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
    """The steps that need no language server: extract, parse, apply, change, no new syntax error."""
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
    added = new_syntax_errors(code, fixed)
    if added:
        e = added[0]
        v.record("parses", False, f"SyntaxError: {e.message} (line {e.line + 1})")
        return v
    v.record("parses", True)
    return v


def lsp_snapshots(key: str, path: str, code: str, fixed: str, files: dict[str, str]) -> tuple[Snapshot, Snapshot]:
    """The original and the fixed file tree, to check in one pool batch."""
    before = Snapshot(f"{key}:before", {**files, path: code}, (path,))
    after = Snapshot(f"{key}:after", {**files, path: fixed}, (path,))
    return before, after


def lsp_verdict(v: Verification, target: Diagnostic, before: CheckResult, after: CheckResult,
                code: str) -> None:
    """Records target_gone and no_new_errors from the two checks (`code` is the original file)."""
    if not before.ok or not after.ok:
        v.record("target_gone", False, f"lsp_failed: {before.reason or after.reason}")
        return
    skipped = after.skipped.get(target.path) or before.skipped.get(target.path)
    if skipped is not None:  # e.g. the fix made the file too large to check: nothing was verified
        v.record("target_gone", False, f"not_checked: {skipped}")
        return
    lm = line_map(code, v.fixed)
    after_diags = list(after.diagnostics.get(target.path, ()))
    still = target_still_reported(target, after_diags, lm)
    if not v.record("target_gone", still is None,
                    f"still reported on line {still.start_line + 1}" if still else ""):
        return
    new = introduced_errors(code, list(before.diagnostics.get(target.path, ())), v.fixed, after_diags, lm, target)
    if new:
        d = min(new, key=lambda d: (d.code, d.message, d.start_line))
        v.record("no_new_errors", False, f"new error {d.code} {d.message} (line {d.start_line + 1})"[:300])
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
