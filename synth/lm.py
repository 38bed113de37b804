"""The LM behind synthesis and judging: its settings, the `dspy.LM` built from them, and one robust call.

Any model string `dspy.LM` accepts works, e.g. `openai/<served-name>` or
`hosted_vllm/<served-name>` with `api_base` pointing at an OpenAI-compatible
vLLM server (`http://host:8000/v1`). DSPy 3.4 talks to such servers with its
own native client and falls back to LiteLLM for what that cannot carry
(`LmSettings.engine` forces either). DSPy and LiteLLM are imported only
inside functions here: they take seconds to import (LiteLLM about ten), and
`otlake --help` or the user-fix path must not pay for that. Before the
import, LiteLLM's and DSPy's downloads of price maps are switched off
(`LITELLM_LOCAL_MODEL_COST_MAP=True` and kin, unless already set).

Retries. DSPy's own retry loop is switched off (`num_retries=0` on the
`dspy.LM`) and `call_lm` retries instead, so that every answer knows how many
attempts it took and the backoff is ours to set: rate limits (HTTP 429),
timeouts, 5xx and connection failures are retried up to
`LmSettings.num_retries` times, waiting `backoff_s * 2**(attempt - 1)` seconds
(at most `max_backoff_s`), or the server's Retry-After when that is longer.
A failure that outlasts the retries is reported in `LmCall.error`, never raised.

Cache. DSPy's response cache (memory, then disk) is on unless
`LmSettings.cache` is False; its disk part lives in `LmSettings.cache_dir`,
by default `$OTLAKE_HOME/dspy-cache` (else `otlake-data/dspy-cache`, beside
the warehouse). DSPy has one cache per process: building an LM for another
folder swaps it. A cache hit sends no request and counts no tokens. The key
is the model string, messages and sampling settings (not `api_base`), and an
answer is cached whether or not it parses: at temperature 0 a rerun gets the
same answer back; turn the cache off (or change the temperature) for a fresh one.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from synth.errors import SynthError

ENV_MODEL = "OTLAKE_LM_MODEL"
ENV_API_BASE = ("OTLAKE_LM_API_BASE", "OPENAI_API_BASE", "OPENAI_BASE_URL")
ENV_API_KEY = ("OTLAKE_LM_API_KEY", "OPENAI_API_KEY")
# A self-hosted server (vLLM without --api-key) takes any key, but the OpenAI
# protocol still sends one.
PLACEHOLDER_KEY = "EMPTY"
ENGINES = ("auto", "litellm", "lm15")
# LiteLLM and DSPy's model metadata fetch price maps and other files from
# GitHub on first use; the packaged copies do, and nothing reaches out.
_OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
}
_SHORT = 200  # characters of an exception message kept in an error string

T = TypeVar("T")
R = TypeVar("R")


class LmConfigError(SynthError):
    """LM settings that cannot work (no model, a non-positive limit)."""


@dataclass(frozen=True)
class LmSettings:
    """Which LM to call and how: sampling, limits, retries, concurrency and cache."""

    model: str  # any model string dspy.LM accepts, e.g. 'openai/deepseek-coder-7b'
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    temperature: float = 0.0
    max_tokens: int = 1024
    timeout_s: float = 60.0  # per request: a server silent this long is a timeout
    num_retries: int = 3  # retries after the first attempt, for transient failures only
    backoff_s: float = 1.0  # the first wait; it doubles on each retry
    max_backoff_s: float = 30.0
    concurrency: int = 4  # requests in flight at once, at most
    cache: bool = True
    cache_dir: str | None = None  # None: $OTLAKE_HOME/dspy-cache
    json_fallback: bool = True  # on an unparseable answer, ask again with DSPy's JSONAdapter
    engine: str = "auto"  # DSPy's: 'auto' (its native client where it can), 'litellm' or 'lm15'
    # sampling beyond the temperature (None: the server's default). top_k is not an OpenAI field: it
    # travels in the request body as an extra (vLLM, llama.cpp and our server read it)
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    rollout_id: int | None = None  # DSPy's: another cache entry for the same request (the k-th sample)

    def __post_init__(self) -> None:
        if not self.model or not self.model.strip():
            raise LmConfigError(f"no LM model: set {ENV_MODEL} (e.g. openai/deepseek-coder-7b) "
                                "or pass a model string")
        for name in ("max_tokens", "concurrency"):
            if getattr(self, name) < 1:
                raise LmConfigError(f"LM setting {name}={getattr(self, name)}: must be at least 1")
        if not self.timeout_s > 0:
            raise LmConfigError(f"LM setting timeout_s={self.timeout_s}: must be positive")
        if self.engine not in ENGINES:
            raise LmConfigError(f"LM setting engine={self.engine!r}: use one of {', '.join(ENGINES)}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise LmConfigError(f"LM setting top_p={self.top_p}: must be in (0, 1]")
        if self.top_k is not None and self.top_k < 1:
            raise LmConfigError(f"LM setting top_k={self.top_k}: must be at least 1")
        for name in ("num_retries", "backoff_s", "max_backoff_s", "temperature"):
            if getattr(self, name) < 0:
                raise LmConfigError(f"LM setting {name}={getattr(self, name)}: must not be negative")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> LmSettings:
        """Settings from OTLAKE_LM_MODEL, OTLAKE_LM_API_BASE and OTLAKE_LM_API_KEY (else OPENAI_API_BASE/KEY)."""
        env = os.environ if environ is None else environ
        found = {"model": env.get(ENV_MODEL, ""),
                 "api_base": _first(env, ENV_API_BASE), "api_key": _first(env, ENV_API_KEY)}
        return cls(**{**found, **{k: v for k, v in overrides.items() if v is not None}})

    @property
    def cache_path(self) -> Path:
        """The folder of DSPy's disk cache."""
        folder = Path(self.cache_dir) if self.cache_dir else (
            Path(os.environ.get("OTLAKE_HOME") or "otlake-data") / "dspy-cache")
        return folder.expanduser().absolute()


@dataclass
class LmCall:
    """What one program call came to, over all its attempts."""

    value: Any = None  # the program's Prediction; None on error
    error: str | None = None
    raw: str = ""  # the completion text the model gave to the first request of the last attempt
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0
    seconds: float = 0.0
    cached: bool = False  # served from DSPy's cache: no request was sent


_dspy_lock = threading.Lock()


def load_dspy(settings: LmSettings | None = None) -> Any:
    """Import dspy with nothing reaching the internet, and point its cache at the settings' folder."""
    for name, value in _OFFLINE_ENV.items():
        os.environ.setdefault(name, value)
    if settings is not None:
        # read by DSPy at import: any default cache it builds lands in our folder, not ~/.dspy_cache
        os.environ.setdefault("DSPY_CACHEDIR", str(settings.cache_path))
    import dspy

    if settings is not None and settings.cache:
        folder = os.fspath(settings.cache_path)
        with _dspy_lock:
            current = vars(dspy).get("cache")  # not `dspy.cache`: reading it builds the default cache
            if current is None or current.disk_cache_dir != folder or not current.enable_disk_cache:
                os.makedirs(folder, exist_ok=True)
                dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=folder)
    return dspy


def build_lm(settings: LmSettings) -> Any:
    """The `dspy.LM` for these settings (DSPy's own retries off: `call_lm` retries)."""
    dspy = load_dspy(settings)
    key = settings.api_key or (PLACEHOLDER_KEY if settings.api_base else None)
    extra = {name: value for name, value in (("api_base", settings.api_base), ("api_key", key)) if value}
    extra.update({name: getattr(settings, name) for name in ("top_p", "seed", "rollout_id")
                  if getattr(settings, name) is not None})
    if settings.top_k is not None:
        extra["extra_body"] = {"top_k": settings.top_k}
    try:
        return dspy.LM(settings.model, temperature=settings.temperature, max_tokens=settings.max_tokens,
                       cache=settings.cache, num_retries=0, timeout=settings.timeout_s,
                       engine=settings.engine, **extra)
    except (ValueError, TypeError, dspy.LMError) as e:
        raise LmConfigError(f"LM {settings.model!r}: {_short(e)}") from e


def call_lm(lm: Any, adapter: Any, run: Callable[[], Any], settings: LmSettings) -> LmCall:
    """Run `run()` (a program call) on `lm` with retries; every failure ends in `LmCall.error`."""
    dspy = load_dspy()
    out = LmCall()
    start = time.monotonic()
    for attempt in range(1, settings.num_retries + 2):
        out.attempts = attempt
        attempt_lm = lm.copy()  # its own history: this thread's calls only
        tracker = _usage_tracker()
        retry_after = None
        try:
            with dspy.context(lm=attempt_lm, adapter=adapter, usage_tracker=tracker):
                out.value, out.error = run(), None
        except dspy.AdapterParseError as e:
            out.value, out.error = None, "unparseable"
            out.raw = e.lm_response if isinstance(e.lm_response, str) else str(e.lm_response)
        except Exception as e:  # noqa: BLE001 - a bad answer or a failed request must not stop the batch
            out.value, out.error = None, error_kind(e)
            retry_after = getattr(e, "retry_after", None)
        _account(out, attempt_lm.history, tracker)
        if out.error is None or out.error not in RETRYABLE or attempt > settings.num_retries:
            break
        time.sleep(backoff_seconds(settings, attempt, retry_after))
    out.seconds = time.monotonic() - start
    return out


RETRYABLE = ("rate_limited", "timeout", "server_error", "connection_error")
# exception classes (DSPy's, LiteLLM's, OpenAI's, by name, anywhere in the MRO) -> error kind
_KINDS = {
    "LMRateLimitError": "rate_limited", "RateLimitError": "rate_limited",
    "LMServerError": "server_error", "InternalServerError": "server_error",
    "ServiceUnavailableError": "server_error",
    "LMTransportError": "connection_error", "APIConnectionError": "connection_error",
    "LMAuthError": "auth", "LMBillingError": "billing",
    "ContextWindowExceededError": "context_window_exceeded", "LMUnsupportedModelError": "unsupported_model",
    "LMInvalidRequestError": "invalid_request", "LMConfigurationError": "configuration",
    "LMUnsupportedFeatureError": "unsupported_feature",
}


def error_kind(e: BaseException) -> str:
    """A short, stable name for a failed call: 'rate_limited', 'timeout', 'auth: ...', 'bad_response: ...'."""
    chain = list(_causes(e))
    if any(isinstance(x, TimeoutError) or "Timeout" in type(x).__name__ for x in chain):
        return "timeout"  # lm15 reports a read timeout as a transport error caused by one
    for x in chain:
        for cls in type(x).__mro__:
            kind = _KINDS.get(cls.__name__)
            if kind is not None:
                return kind if kind in RETRYABLE else f"{kind}: {_short(e)}"
    # a 200 whose body is no chat completion, or anything else the answer broke
    return f"bad_response: {type(e).__name__}: {_short(e)}"


def backoff_seconds(settings: LmSettings, attempt: int, retry_after: object = None) -> float:
    """The wait before retry number `attempt` (1-based): exponential, or the server's hint if longer."""
    wait = settings.backoff_s * 2 ** (attempt - 1)
    if isinstance(retry_after, (int, float)) and retry_after >= 0:
        wait = max(wait, float(retry_after))
    return min(wait, settings.max_backoff_s)


def run_bounded(items: Iterable[T], work: Callable[[T], R], concurrency: int) -> list[R]:
    """`work` on every item, at most `concurrency` at once, results in input order."""
    items = list(items)
    if concurrency <= 1 or len(items) <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(concurrency, len(items)), thread_name_prefix="otlake-lm") as pool:
        return list(pool.map(work, items))


def _account(out: LmCall, history: list[dict], tracker: Any) -> None:
    """Tokens billed so far, and the raw text and finish reason of this attempt's first answer."""
    for usage in tracker.usage_data.values():
        for entry in usage:
            out.prompt_tokens += _int(entry.get("prompt_tokens"))
            out.completion_tokens += _int(entry.get("completion_tokens"))
    if history:
        first = history[0]
        outputs = first.get("outputs") or [""]
        text = outputs[0].get("text", "") if isinstance(outputs[0], dict) else outputs[0]
        out.raw = text if isinstance(text, str) else str(text)
        out.finish_reason = _finish_reason(history[-1].get("response"))
        out.cached = tracker.requests == 0


@functools.cache
def _tracker_class() -> type:
    from dspy.utils.usage_tracker import UsageTracker

    class CountingTracker(UsageTracker):
        """DSPy's usage tracker that also counts the answers it is told about.

        DSPy reports every answer a request brought, with or without usage, and
        none served from its cache: so no report means a cache hit.
        """

        def __init__(self) -> None:
            super().__init__()
            self.requests = 0

        def add_usage(self, lm: str, usage_entry: dict[str, Any]) -> None:
            self.requests += 1
            super().add_usage(lm, usage_entry)

    return CountingTracker


def _usage_tracker() -> Any:
    return _tracker_class()()


def _finish_reason(response: Any) -> str | None:
    """The finish reason of a native lm15 Response, a LiteLLM ModelResponse or a cached dict."""
    if isinstance(response, dict):
        choices = response.get("choices") or [{}]
        return response.get("finish_reason") or choices[0].get("finish_reason")
    reason = getattr(response, "finish_reason", None)
    if reason is None and getattr(response, "choices", None):
        reason = getattr(response.choices[0], "finish_reason", None)
    return reason if isinstance(reason, str) else None


def _causes(e: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = e
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first(env: Mapping[str, str], names: Iterable[str]) -> str | None:
    return next((env[n] for n in names if env.get(n)), None)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _short(e: BaseException) -> str:
    """The first line of an exception's message, cut to a length that fits a table cell."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if len(text) <= _SHORT else text[: _SHORT - 3] + "..."
