"""The models an eval can judge: any DSPy LM, a local Hugging Face checkpoint, `oracle` and `noop`.

Every model answers the sentinel prompt of DESIGN.md with text that should
hold a `<diff>` block; scoring extracts and applies it strictly. `oracle`
answers the reference fix's diff (the ceiling of every metric), `noop` an
empty diff (the floor). A DSPy LM is called through synth.program (the same
repair program synthesis uses, no few-shot demos) with the eval's sampling
settings; sample k of an item is DSPy's rollout k, so samples are cached
apart. A Hugging Face checkpoint is run with transformers (its own
dependency group: `uv sync --inexact --group hf`), its chat template around the
same prompt text that training examples have.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from synth.linediff import render
from synth.lm import LmSettings
from synth.schema import render_prompt, render_response

from .errors import EvalError
from .items import EvalItem


@dataclass(frozen=True)
class Sampling:
    """How answers are sampled: Replit's eval settings by default."""

    temperature: float = 0.1
    top_p: float = 0.95
    top_k: int = 50
    max_tokens: int = 512
    seed: int = 0


@dataclass(frozen=True)
class Answer:
    """One sampled answer: the text, or why there is none, and what it cost."""

    text: str
    error: str | None = None
    seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_hash: str = ""


class RepairModel(Protocol):
    """Answers items' prompts: `samples` answers per item, in item order."""

    name: str

    def settings(self) -> dict: ...

    def answer(self, items: Sequence[EvalItem], samples: int, sampling: Sampling) -> list[list[Answer]]: ...


class OracleModel:
    """The reference fix as a diff: every metric's ceiling."""

    name = "oracle"

    def settings(self) -> dict:
        return {"kind": "oracle"}

    def answer(self, items: Sequence[EvalItem], samples: int, sampling: Sampling) -> list[list[Answer]]:
        return [[Answer(render_response(render(item.code, item.reference)))] * samples for item in items]


class NoopModel:
    """An empty diff: every metric's floor."""

    name = "noop"

    def settings(self) -> dict:
        return {"kind": "noop"}

    def answer(self, items: Sequence[EvalItem], samples: int, sampling: Sampling) -> list[list[Answer]]:
        return [[Answer(render_response(""))] * samples for _ in items]


class DspyModel:
    """Any model `dspy.LM` reaches (`openai/<name>` with OTLAKE_LM_API_BASE, ...), via the repair program."""

    def __init__(self, settings: LmSettings, fewshot: Sequence = ()) -> None:
        self.base = settings
        self.name = settings.model
        self.fewshot = list(fewshot)  # synth.program.FewShotExample: demos shown before every prompt

    def settings(self) -> dict:
        keep = ("model", "api_base", "max_tokens", "timeout_s", "num_retries", "concurrency", "engine", "cache")
        return {"kind": "dspy", **{k: getattr(self.base, k) for k in keep},
                "fewshot_ids": [e.id for e in self.fewshot]}

    def answer(self, items: Sequence[EvalItem], samples: int, sampling: Sampling) -> list[list[Answer]]:
        from synth.program import synthesize

        out: list[list[Answer]] = [[] for _ in items]
        prompts = [(item.id, item.prompt()) for item in items]
        for k in range(samples):
            settings = replace(self.base, temperature=sampling.temperature, top_p=sampling.top_p,
                               top_k=sampling.top_k, max_tokens=sampling.max_tokens,
                               seed=sampling.seed + k, rollout_id=k if samples > 1 else None)
            for slot, got in zip(out, synthesize(prompts, settings, self.fewshot, len(self.fewshot))):
                # the program's `diff` field, put back into the sentinel form scoring extracts from
                text = got.text if got.error == "unparseable" else f"<diff>\n{got.text}\n</diff>"
                error = None if got.error in (None, "unparseable") else got.error
                slot.append(Answer(text if error is None else got.text, error, got.seconds,
                                   got.prompt_tokens, got.completion_tokens, got.prompt_hash))
        return out


class HfModel:
    """A local Hugging Face checkpoint (a folder with config.json), generating with transformers."""

    def __init__(self, path: str | Path, device: str | None = None) -> None:
        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise EvalError(f"model {path}: not a Hugging Face checkpoint folder (no config.json)")
        self.name = f"hf:{self.path.name}"
        self.device = device
        self._loaded = None

    def settings(self) -> dict:
        config = (self.path / "config.json").read_bytes()
        return {"kind": "hf", "path": str(self.path.absolute()), "config_sha256": hashlib.sha256(config).hexdigest()}

    def _load(self):
        if self._loaded is None:
            try:
                import torch
                from transformers import AutoModelForCausalLM, AutoTokenizer
            except ImportError as e:
                raise EvalError(f"model {self.path}: running a Hugging Face checkpoint needs torch and "
                                "transformers: `uv sync --inexact --group hf`") from e
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # stdout/stderr carry our output (--format json)
            hf_logging.set_verbosity_error()
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            tokenizer = AutoTokenizer.from_pretrained(self.path)
            model = AutoModelForCausalLM.from_pretrained(self.path).to(device).eval()
            self._loaded = (torch, tokenizer, model, device)
        return self._loaded

    def answer(self, items: Sequence[EvalItem], samples: int, sampling: Sampling) -> list[list[Answer]]:
        torch, tokenizer, model, device = self._load()
        out = []
        for item in items:
            text = render_prompt(item.prompt())
            if tokenizer.chat_template:
                prompt = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                       add_generation_prompt=True)
            else:
                prompt = text + "\n"
            ids = tokenizer(prompt, return_tensors="pt").to(device)
            digest = hashlib.sha256(prompt.encode()).hexdigest()
            answers = []
            for k in range(samples):
                torch.manual_seed(sampling.seed + k)
                start = time.monotonic()
                with torch.no_grad():
                    generated = model.generate(
                        **ids, do_sample=sampling.temperature > 0, temperature=sampling.temperature or None,
                        top_p=sampling.top_p, top_k=sampling.top_k, max_new_tokens=sampling.max_tokens,
                        pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
                new = generated[0][ids["input_ids"].shape[1]:]
                answers.append(Answer(tokenizer.decode(new, skip_special_tokens=True), None,
                                      round(time.monotonic() - start, 3), int(ids["input_ids"].shape[1]), len(new),
                                      digest))
            out.append(answers)
        return out


class ChatModel:
    """A served model asked in the training form: the sentinel prompt as the one user turn of a chat request.

    `chat:local[:MODEL]` or `chat:openai/<served-name>`: an OpenAI-compatible /v1/chat/completions endpoint
    (the local llama.cpp server, vLLM), sent the same text a fine-tuned model saw in training
    (`otlake train config --template chat`), with no DSPy instructions or field markers around it. The
    answer is scored as it comes, like a Hugging Face checkpoint's.
    """

    def __init__(self, lm: LmSettings) -> None:
        if not lm.api_base:
            raise EvalError(f"model chat:{lm.model}: needs an OpenAI-compatible server (local, or "
                            "$OTLAKE_LM_API_BASE)")
        self.lm = lm
        self.name = f"chat:{lm.model}"

    def settings(self) -> dict:
        return {"kind": "chat", "model": self.lm.model, "api_base": self.lm.api_base}

    def _ask(self, client, prompt: str, sampling: Sampling, seed: int) -> Answer:
        import httpx

        body = {"model": self.lm.model.partition("/")[2] or self.lm.model,
                "messages": [{"role": "user", "content": prompt}], "temperature": sampling.temperature,
                "top_p": sampling.top_p, "top_k": sampling.top_k, "max_tokens": sampling.max_tokens, "seed": seed}
        digest = hashlib.sha256(prompt.encode()).hexdigest()
        start = time.monotonic()
        for attempt in range(self.lm.num_retries + 1):
            try:
                r = client.post("/chat/completions", json=body)
                if r.status_code in (429, 500, 502, 503, 504) and attempt < self.lm.num_retries:
                    time.sleep(min(self.lm.backoff_s * 2 ** attempt, self.lm.max_backoff_s))
                    continue
                r.raise_for_status()
                data = r.json()
                choice = data["choices"][0]
                usage = data.get("usage") or {}
                error = "truncated" if choice.get("finish_reason") == "length" else None
                return Answer(choice["message"]["content"] or "", error, round(time.monotonic() - start, 3),
                              int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)), digest)
            except (httpx.HTTPError, ValueError, KeyError, IndexError) as e:
                if attempt >= self.lm.num_retries:
                    return Answer(f"{type(e).__name__}: {e}", "lm_error", round(time.monotonic() - start, 3),
                                  prompt_hash=digest)
                time.sleep(min(self.lm.backoff_s * 2 ** attempt, self.lm.max_backoff_s))
        raise AssertionError("unreachable")

    def answer(self, items: Sequence[EvalItem], samples: int, sampling: Sampling) -> list[list[Answer]]:
        import httpx

        from synth.lm import run_bounded

        headers = {"Authorization": f"Bearer {self.lm.api_key}"} if self.lm.api_key else {}
        jobs = [(i, k) for i in range(len(items)) for k in range(samples)]
        prompts = [render_prompt(item.prompt()) for item in items]
        with httpx.Client(base_url=self.lm.api_base.rstrip("/"), timeout=self.lm.timeout_s, headers=headers) as c:
            got = run_bounded(jobs, lambda job: self._ask(c, prompts[job[0]], sampling, sampling.seed + job[1]),
                              self.lm.concurrency)
        out: list[list[Answer]] = [[] for _ in items]
        for (i, _), answer in zip(jobs, got):
            out[i].append(answer)
        return out


def resolve_model(spec: str, lm: LmSettings | None = None) -> RepairModel:
    """The model a `--model` value names: oracle, noop, a checkpoint folder, else a DSPy model string."""
    if spec == "oracle":
        return OracleModel()
    if spec == "noop":
        return NoopModel()
    if spec.startswith("chat:"):
        if lm is None:
            raise EvalError(f"model {spec!r}: a chat model needs a server (chat:local, or chat:openai/<name> "
                            "with $OTLAKE_LM_API_BASE)")
        return ChatModel(lm)
    if spec.startswith("hf:") or os.path.isdir(spec):
        return HfModel(spec.removeprefix("hf:"))
    if "/" not in spec:
        raise EvalError(f"model {spec!r}: use oracle, noop, a Hugging Face checkpoint folder, or a DSPy "
                        "model string such as openai/<served-name> (with OTLAKE_LM_API_BASE)")
    return DspyModel(lm or LmSettings.from_env(model=spec))
