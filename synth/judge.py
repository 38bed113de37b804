"""The optional LM judge: a DSPy ChainOfThought program that accepts or rejects a candidate diff, with a reason.

It reads the sentinel prompt, the candidate diff and the fixed file, and runs
on the same LM settings, retries, concurrency and cache as synthesis
(`synth.lm`). It never raises for a bad answer: a verdict whose answer could
not be had or read has `accepted=False` and `error` set ('unparseable',
'truncated', 'rate_limited', 'timeout', ... as in `synth.program`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from synth.linediff import numbered
from synth.lm import LmSettings, build_lm, call_lm, load_dspy, run_bounded
from synth.schema import Prompt, render_prompt

INSTRUCTIONS = """Judge a candidate repair of a Python file.

The prompt shows the file with numbered lines, a language-server diagnostic and the line it is on.
The diff is a numbered line diff: `-N text` removes line N of the original, `+N text` adds line N of
the new file. fixed_code is the file after the diff, numbered.
Accept only when the change removes the cause of the diagnostic, keeps what the code meant to do,
and changes nothing unrelated. Give the reason in one sentence."""


@dataclass(frozen=True)
class JudgeVerdict:
    """The judge's decision on one candidate diff."""

    id: str
    accepted: bool
    reason: str
    error: str | None
    raw: str = ""  # the judge's completion text
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0
    seconds: float = 0.0


def judge_inputs(prompt: Prompt, diff: str, fixed_code: str) -> dict[str, str]:
    """The judge's inputs: the sentinel prompt, the diff, and the fixed file numbered under its path."""
    return {"prompt": render_prompt(prompt), "diff": diff, "fixed_code": f"#{prompt.path}\n{numbered(fixed_code)}"}


def judge(items: Sequence[tuple[str, Prompt, str, str]], settings: LmSettings) -> list[JudgeVerdict]:
    """A verdict per (id, prompt, diff, fixed_code), in input order; never raises for a bad answer."""
    if not items:
        return []
    dspy = load_dspy(settings)
    lm = build_lm(settings)
    program = _judge_class()()
    adapter = dspy.ChatAdapter(use_json_adapter_fallback=settings.json_fallback)

    def one(item: tuple[str, Prompt, str, str]) -> JudgeVerdict:
        vid, prompt, diff, fixed = item
        inputs = judge_inputs(prompt, diff, fixed)
        call = call_lm(lm, adapter, lambda: program(**inputs), settings)
        accepted, reason, error = False, "", call.error
        if call.value is not None:
            accepted, reason = call.value.accepted, call.value.reason
            if not isinstance(accepted, bool):  # DSPy parses a bool field; anything else is not a yes
                accepted, error = False, f"bad_response: accepted is {accepted!r}, not a bool"
            reason = reason if isinstance(reason, str) else str(reason)
        if error in (None, "unparseable") and call.finish_reason == "length":
            error = "truncated"
        if error is not None:
            accepted = False  # an answer we could not fully read accepts nothing
        return JudgeVerdict(vid, accepted, reason.strip(), error, call.raw, call.prompt_tokens,
                            call.completion_tokens, call.attempts, round(call.seconds, 3))

    return run_bounded(items, one, settings.concurrency)


@functools.cache
def _judge_class() -> type:
    """JudgeProgram, built once DSPy is imported."""
    dspy = load_dspy()

    class JudgeSignature(dspy.Signature):
        __doc__ = INSTRUCTIONS

        prompt: str = dspy.InputField(desc="the repair prompt: code, diagnostic, error line")
        diff: str = dspy.InputField(desc="the candidate numbered line diff")
        fixed_code: str = dspy.InputField(desc="the file after the diff, numbered")
        accepted: bool = dspy.OutputField(desc="True to accept the diff, False to reject it")
        reason: str = dspy.OutputField(desc="why, in one sentence")

    class JudgeProgram(dspy.Module):
        """Thinks step by step, then accepts or rejects the candidate diff."""

        def __init__(self) -> None:
            super().__init__()
            self.judge = dspy.ChainOfThought(JudgeSignature)

        def forward(self, prompt: str, diff: str, fixed_code: str) -> Any:
            return self.judge(prompt=prompt, diff=diff, fixed_code=fixed_code)

    JudgeSignature.__module__ = JudgeProgram.__module__ = __name__
    return JudgeProgram


def __getattr__(name: str) -> Any:
    """`JudgeProgram` on first use (importing dspy then, not at import)."""
    if name == "JudgeProgram":
        return _judge_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
