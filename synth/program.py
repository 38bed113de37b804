"""The DSPy repair program: numbered code, a diagnostic and its line in, a numbered line diff out.

`synthesize` asks the LM of `LmSettings` for one diff per prompt, with
few-shot demos taken from verified examples (`dspy.LabeledFewShot`), at most
`concurrency` requests at once, retries and DSPy's cache as `synth.lm`
describes. It never raises for a bad or missing answer: `LmAnswer.error` says
what went wrong, and `LmAnswer.text` keeps whatever text the model gave.
Checking the diff (extract, parse, apply, re-lint) is the caller's job.

Errors: None, or 'rate_limited', 'timeout', 'server_error',
'connection_error' (after the retries); 'unparseable' (no `diff` field in
the answer: `text` is then the raw answer, which may still hold a diff);
'truncated' (the server stopped at max_tokens: `text` is the partial diff,
or the raw answer when the cut left no `diff` field; kept for inspection,
never to be trusted); '<dspy error code>: message' or
'bad_response: ...' otherwise.

DSPy is imported on first use: `RepairProgram` and `RepairSignature` are
built then (module `__getattr__`), so importing this module stays cheap.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from synth.linediff import numbered, numbered_line
from synth.lm import LmSettings, build_lm, call_lm, load_dspy, run_bounded
from synth.schema import Prompt, one_line

INSTRUCTIONS = """Repair a Python file so that the language-server diagnostic goes away, changing as little as possible.

The code comes as a `#path` line, then the file's lines, each after its 1-based number.
Answer with a numbered line diff against that file, one operation per line, in file order:
`-N text` removes line N of the original (its text exactly as shown, without the number);
`+N text` adds `text` as line N of the new file. A replacement is `-N old` followed by `+N new`.
Keep the indentation of the lines you write. Output only the diff lines: no prose, no code fences."""


@dataclass(frozen=True)
class FewShotExample:
    """A verified (prompt, diff) pair shown to the model as a demo."""

    id: str
    prompt: Prompt
    diff: str


@dataclass(frozen=True)
class LmAnswer:
    """The model's answer for one prompt, with what it cost."""

    id: str
    model: str
    text: str  # the diff field as DSPy parsed it; the raw answer when error is 'unparseable'
    raw: str  # the completion text of the request that prompt_hash names ('' when none came)
    prompt_hash: str  # sha256 of the chat messages sent (instructions, few-shot demos, this prompt)
    fewshot_ids: tuple[str, ...]
    prompt_tokens: int  # as the server reported them; 0 when absent or served from the cache
    completion_tokens: int
    error: str | None
    attempts: int
    seconds: float
    cached: bool = False  # served from DSPy's cache without a request


def prompt_inputs(p: Prompt) -> dict[str, str]:
    """The program's inputs for a prompt: the three blocks of the sentinel prompt, without sentinels."""
    return {
        "code": f"#{p.path}\n{numbered(p.code)}",
        "lsp_error": f"{p.rule} {one_line(p.message)}",
        "error_line": numbered_line(p.line, p.line_text),
    }


def compile_fewshot(examples: Sequence[FewShotExample], k: int = 3) -> Any:
    """A `RepairProgram` with up to k of the examples as demos (LabeledFewShot; ids in `.fewshot_ids`)."""
    dspy = load_dspy()
    program = _classes()[1]()
    if not examples or k < 1:
        return program
    by_identity: dict[int, str] = {}
    trainset = []
    for example in examples:
        demo = dspy.Example(**prompt_inputs(example.prompt), diff=example.diff).with_inputs(
            "code", "lsp_error", "error_line")
        by_identity[id(demo)] = example.id
        trainset.append(demo)
    compiled = dspy.LabeledFewShot(k=k).compile(program, trainset=trainset)
    # LabeledFewShot samples the trainset objects themselves, so identity names each demo
    compiled.fewshot_ids = tuple(by_identity[id(demo)] for demo in compiled.predict.demos)
    return compiled


def synthesize(prompts: Sequence[tuple[str, Prompt]], settings: LmSettings,
               fewshot: Sequence[FewShotExample] = (), k: int = 3) -> list[LmAnswer]:
    """One answer per (id, prompt), in input order; never raises for a bad or failed answer."""
    if not prompts:
        return []
    dspy = load_dspy(settings)
    lm = build_lm(settings)
    program = compile_fewshot(fewshot, k)
    adapter = dspy.ChatAdapter(use_json_adapter_fallback=settings.json_fallback)

    def one(item: tuple[str, Prompt]) -> LmAnswer:
        pid, prompt = item
        inputs = prompt_inputs(prompt)
        digest = messages_hash(adapter, program.predict, inputs)
        call = call_lm(lm, adapter, lambda: program(**inputs), settings)
        text = call.raw if call.error == "unparseable" else ""  # it may still hold a diff
        if call.value is not None:
            text = call.value.diff if isinstance(call.value.diff, str) else str(call.value.diff)
        error = call.error
        if error in (None, "unparseable") and call.finish_reason == "length":
            error = "truncated"  # the root cause, also when the cut left nothing DSPy could parse
        return LmAnswer(pid, settings.model, text, call.raw, digest, program.fewshot_ids,
                        call.prompt_tokens, call.completion_tokens, error, call.attempts,
                        round(call.seconds, 3), call.cached)

    return run_bounded(prompts, one, settings.concurrency)


def messages_hash(adapter: Any, predict: Any, inputs: dict[str, Any]) -> str:
    """sha256 of the chat messages the adapter sends for these inputs (demos included)."""
    messages = adapter.format(predict.signature, predict.demos, inputs)
    blob = json.dumps(messages, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@functools.cache
def _classes() -> tuple[type, type]:
    """RepairSignature and RepairProgram, built once DSPy is imported."""
    dspy = load_dspy()

    class RepairSignature(dspy.Signature):
        __doc__ = INSTRUCTIONS

        code: str = dspy.InputField(desc="the file: a '#path' line, then numbered lines")
        lsp_error: str = dspy.InputField(desc="the diagnostic, 'tool[rule] message'")
        error_line: str = dspy.InputField(desc="the numbered line the diagnostic is on")
        diff: str = dspy.OutputField(desc="the numbered line diff: '-N text' and '+N text' lines only")

    class RepairProgram(dspy.Module):
        """Predicts a numbered line diff that repairs the diagnostic."""

        def __init__(self) -> None:
            super().__init__()
            self.predict = dspy.Predict(RepairSignature)
            self.fewshot_ids: tuple[str, ...] = ()

        def forward(self, code: str, lsp_error: str, error_line: str) -> Any:
            return self.predict(code=code, lsp_error=lsp_error, error_line=error_line)

    RepairSignature.__module__ = RepairProgram.__module__ = __name__
    return RepairSignature, RepairProgram


def __getattr__(name: str) -> Any:
    """`RepairSignature` and `RepairProgram` on first use (importing dspy then, not at import)."""
    if name in ("RepairSignature", "RepairProgram"):
        signature, program = _classes()
        return signature if name == "RepairSignature" else program
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
