"""An OpenAI-compatible chat-completions server for a local GGUF model: llama.cpp on CPU.

`python -m local_lm.server --model PATH [--name N] [--port P] [--parallel N]`
(what `otlake lm serve` runs). llama.cpp does the work through
llama-cpp-python's `Llama` (the model's own chat template from the GGUF, its
sampler, its stop handling); this module is the HTTP front that
llama-cpp-python's bundled server lacks for our use: that one serializes
every request behind one lock, keeps working on a non-streamed request whose
client went away, has no bound on waiting requests and does not say which
file it serves. Here:

- `--parallel N` llama.cpp contexts over one memory-mapped model file, each
  with cores/N threads; a request waits in a bounded queue (`--queue`), and
  one that finds it full gets HTTP 503 with Retry-After at once.
- A client that disconnects cancels its request: between two generated
  tokens the worker sees the flag and stops (the slot is free within a token).
- A prompt longer than the context is HTTP 400 (`context_length_exceeded`,
  worded like OpenAI's so clients map it); `max_tokens` past the context is
  cut to what fits (finish_reason `length` if reached).
- `GET /health`: 200 `{"status": "ok", ...}` with busy and queued counts once
  the model is loaded (the port opens only then). `GET /v1/models`: the
  served name, file, sha256 (computed at start), size and context length.
- SIGTERM or SIGINT: stop accepting, let running requests finish (up to
  `--grace` seconds), cancel the rest, exit 0.
- Bad start-up (port in use, a file that is not a whole GGUF, a hash that does
  not match `--sha256`, llama.cpp refusing the file): one line on stderr and
  exit status 2 before any request is taken.

Responses carry OpenAI's `usage` and, like llama.cpp's own server, `timings`
(prompt and generation milliseconds and token counts). `stream: true` is
served as server-sent events.
"""


import argparse
import asyncio
import contextlib
import json
import os
import queue
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PORT = 8765
DEFAULT_CTX = 4096
SAMPLING = ("temperature", "top_p", "top_k", "seed", "repeat_penalty", "presence_penalty", "frequency_penalty",
            "min_p")


class StartupError(Exception):
    """The server cannot start: the message says why."""


@dataclass
class Job:
    prompt_tokens: list[int]
    params: dict[str, Any]
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancel: threading.Event = field(default_factory=threading.Event)
    enqueued: float = field(default_factory=time.perf_counter)
    stream: bool = False  # send each token to the event loop as it comes (else the whole text at the end)

    def post(self, item: object) -> None:
        """Hand an item to the request's coroutine; nothing to do once the event loop is gone (shutdown)."""
        try:
            self.loop.call_soon_threadsafe(self.out.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody waits for this answer any more
            self.cancel.set()


_DONE = object()


class QueueFull(Exception):
    """As many requests wait as the server allows."""


class Engine:
    """N llama.cpp contexts sharing one model file, fed by one queue of at most `max_queue` live requests."""

    def __init__(self, path: str, *, parallel: int, n_ctx: int, max_queue: int, threads: int | None = None):
        from llama_cpp import Llama, llama_chat_format

        self.parallel, self.n_ctx, self.max_queue = parallel, n_ctx, max_queue
        per = threads or max(1, (os.cpu_count() or 1) // parallel)
        try:
            self.contexts = [Llama(model_path=path, n_ctx=n_ctx, n_threads=per, n_threads_batch=per, n_batch=512,
                                   verbose=False) for _ in range(parallel)]
        except (ValueError, RuntimeError, OSError) as e:
            raise StartupError(f"llama.cpp could not load {path}: {e}") from None
        first = self.contexts[0]
        template = first.metadata.get("tokenizer.chat_template")
        if not template:
            raise StartupError(f"{path}: the GGUF holds no chat template (tokenizer.chat_template)")
        eos = first.detokenize([first.token_eos()], special=True).decode("utf-8", "replace")
        bos_id = first.token_bos()
        bos = first.detokenize([bos_id], special=True).decode("utf-8", "replace") if bos_id >= 0 else ""
        self.formatter = llama_chat_format.Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        # unbounded underneath: the bound is on live waiting requests (a cancelled one frees its place at once)
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.busy = 0
        self._waiting: set[int] = set()  # ids of live jobs in the queue
        self._running: set[int] = set()
        self._all: dict[int, Job] = {}
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._work, args=(c,), daemon=True, name=f"llama-{i}")
                        for i, c in enumerate(self.contexts)]
        for t in self.threads:
            t.start()

    @property
    def queued(self) -> int:
        with self._lock:
            return len(self._waiting)

    def prompt(self, messages: list[dict]) -> tuple[list[int], list[str]]:
        formatted = self.formatter(messages=messages)
        tokens = self.contexts[0].tokenize(formatted.prompt.encode("utf-8"), add_bos=False, special=True)
        stop = formatted.stop if isinstance(formatted.stop, list) else [formatted.stop] if formatted.stop else []
        return tokens, stop

    def submit(self, job: Job) -> None:
        """Queue a job; QueueFull (the caller answers 503) when max_queue live requests already wait."""
        with self._lock:
            if len(self._waiting) >= self.max_queue:
                raise QueueFull
            self._waiting.add(id(job))
            self._all[id(job)] = job
        self.jobs.put(job)

    def withdraw(self, job: Job) -> None:
        """The request is gone (client away, shutdown): stop its generation, free its place in the queue."""
        job.cancel.set()
        with self._lock:
            self._waiting.discard(id(job))

    def close(self, grace_s: float = 5.0) -> None:
        """Cancel every queued and running job, stop the workers, wait up to `grace_s` for them."""
        with self._lock:
            jobs = list(self._all.values())
        for job in jobs:
            self.withdraw(job)
        for _ in self.threads:
            self.jobs.put(None)
        deadline = time.monotonic() + grace_s
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _work(self, llm) -> None:
        while (job := self.jobs.get()) is not None:
            with self._lock:
                self._waiting.discard(id(job))
                live = not job.cancel.is_set()
                if live:
                    self.busy += 1
            try:
                if live:
                    self._generate(llm, job)
            except Exception as e:  # noqa: BLE001 - a failed generation answers 500, the worker lives on
                job.post(e)
            finally:
                with self._lock:
                    self.busy -= live
                    self._all.pop(id(job), None)
                job.post(_DONE)

    def _generate(self, llm, job: Job) -> None:
        # A non-streamed answer goes to the event loop once, at the end: a wake-up of the loop per token
        # takes CPU from llama.cpp's threads, which have every core (21 -> 25 tokens/s here, BENCHMARKS.md).
        from llama_cpp import StoppingCriteriaList

        started = time.perf_counter()
        first = None
        parts, finish, sampled = [], None, 0

        def each_token(_ids, _logits) -> bool:  # called once per sampled token: count it, and stop if cancelled
            nonlocal sampled
            sampled += 1
            return job.cancel.is_set()

        stream = llm.create_completion(prompt=job.prompt_tokens, stream=True,
                                       stopping_criteria=StoppingCriteriaList([each_token]), **job.params)
        try:
            for chunk in stream:
                if job.cancel.is_set():
                    break
                choice = chunk["choices"][0]
                now = time.perf_counter()
                if first is None:
                    first = now
                if job.stream:
                    job.post((choice.get("text") or "", choice.get("finish_reason"), now))
                else:
                    parts.append(choice.get("text") or "")
                    finish = choice.get("finish_reason") or finish
        finally:
            stream.close()
        if not job.stream and first is not None:
            job.post(("".join(parts), finish, time.perf_counter()))
        # llama-cpp-python asks the criteria once per sampled token and once more after the last one
        job.post(("", "__timings__", (started, first or time.perf_counter(), time.perf_counter(),
                                      max(sampled - 1, 0))))


def build_app(engine: Engine, info: dict[str, Any], grace_s: float):
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI(title="otlake local LM", docs_url=None, redoc_url=None)

    def error(status: int, message: str, kind: str, code: str | None = None, headers=None):
        return JSONResponse({"error": {"message": message, "type": kind, "code": code, "param": None}},
                            status_code=status, headers=headers)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": info["id"], "busy": engine.busy, "queued": engine.queued,
                "parallel": engine.parallel}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{**info, "object": "model", "owned_by": "otlake"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return error(400, "the request body is not JSON", "invalid_request_error")
        messages = _text_messages(body.get("messages") if isinstance(body, dict) else None)
        if messages is None:
            return error(400, "'messages' must be a non-empty list of {role, content}, the content a string or "
                              "a list of text parts", "invalid_request_error")
        if body.get("n", 1) != 1:
            return error(400, "this server answers one choice per request: 'n' must be 1", "invalid_request_error")
        try:
            tokens, stop = engine.prompt(messages)
        except Exception as e:  # noqa: BLE001 - a template that cannot render these messages
            return error(400, f"the chat template cannot render these messages: {e}", "invalid_request_error")
        room = engine.n_ctx - len(tokens)
        if room < 1:
            return error(400, f"This model's maximum context length is {engine.n_ctx} tokens. However, your "
                              f"messages resulted in {len(tokens)} tokens.", "invalid_request_error",
                         "context_length_exceeded")
        asked = body.get("max_tokens") or body.get("max_completion_tokens") or room
        if not isinstance(asked, int) or asked < 1:
            return error(400, "'max_tokens' must be a positive integer", "invalid_request_error")
        extra_stop = body.get("stop") or []
        extra_stop = [extra_stop] if isinstance(extra_stop, str) else extra_stop
        if not isinstance(extra_stop, list) or not all(isinstance(x, str) for x in extra_stop):
            return error(400, "'stop' must be a string or a list of strings", "invalid_request_error")
        params = {"max_tokens": min(asked, room), "stop": stop + extra_stop}
        for name in SAMPLING:
            if isinstance(body.get(name), (int, float)) and not isinstance(body.get(name), bool):
                params[name] = body[name]
        # llama-cpp-python reuses one fixed seed when none is given: identical samples at temperature > 0
        params["seed"] = int(params["seed"]) if "seed" in params else secrets.randbits(31)
        job = Job(tokens, params, asyncio.get_running_loop(), stream=bool(body.get("stream")))
        try:
            engine.submit(job)
        except QueueFull:
            return error(503, f"the server is busy: {engine.max_queue} requests already wait", "server_error",
                         "queue_full", headers={"Retry-After": "1"})
        rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if body.get("stream"):
            return StreamingResponse(_sse(job, rid, created, info["id"], request), media_type="text/event-stream")
        return await _complete(job, rid, created, info["id"], request, len(tokens))

    async def _complete(job, rid, created, model, request, n_prompt):
        parts, finish, timings, ended = [], None, None, False
        waiter = asyncio.ensure_future(_watch_disconnect(request, job, engine))
        try:
            while (item := await job.out.get()) is not _DONE:
                if isinstance(item, Exception):
                    return error(500, f"generation failed: {type(item).__name__}: {item}", "server_error")
                text, reason, extra = item
                if reason == "__timings__":
                    timings = extra
                    continue
                parts.append(text)
                finish = reason or finish
            ended = True
        finally:
            waiter.cancel()
            if not ended:  # cancelled (shutdown past the grace period) or failed: stop the generation
                engine.withdraw(job)
        if job.cancel.is_set():
            return error(499, "the client went away", "cancelled")
        text = "".join(parts)
        n_out = timings[3] if timings else 0  # tokens sampled (a stop string's tokens included, as llama.cpp counts)
        return {"id": rid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": finish or "stop"}],
                "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out},
                "timings": _timings(job, timings, n_prompt, n_out)}

    async def _sse(job, rid, created, model, request):
        def event(delta, reason=None):
            chunk = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}
            return f"data: {json.dumps(chunk)}\n\n"
        try:
            yield event({"role": "assistant", "content": ""})
            while (item := await job.out.get()) is not _DONE:
                if isinstance(item, Exception):
                    yield f"data: {json.dumps({'error': {'message': str(item), 'type': 'server_error'}})}\n\n"
                    break
                text, reason, _ = item
                if reason == "__timings__":
                    continue
                yield event({"content": text} if text else {}, reason)
            yield "data: [DONE]\n\n"
        finally:  # the client went away (Starlette cancels this generator) or the stream ended
            engine.withdraw(job)

    app.state.grace_s = grace_s
    return app


async def _watch_disconnect(request, job: Job, engine: Engine) -> None:
    while not job.cancel.is_set():
        if await request.is_disconnected():
            engine.withdraw(job)
            return
        await asyncio.sleep(0.05)


def _text_messages(messages: object) -> list[dict] | None:
    """OpenAI chat messages with each content a string (text parts joined); None if they are not that."""
    if not isinstance(messages, list) or not messages:
        return None
    out = []
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                             and isinstance(p.get("text"), str) for p in content):
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str) or not isinstance(m.get("role"), str):
            return None
        out.append({**m, "content": content})
    return out


def _timings(job: Job, timings, n_prompt: int, n_out: int) -> dict:
    if not timings or timings[1] is None:
        return {"prompt_n": n_prompt, "predicted_n": n_out}
    started, first, end, _ = timings
    return {"queue_ms": round((started - job.enqueued) * 1000, 1), "prompt_n": n_prompt,
            "prompt_ms": round((first - started) * 1000, 1), "predicted_n": n_out,
            "predicted_ms": round((end - first) * 1000, 1)}


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, but a stop by SIGTERM or SIGINT ends in exit status 0.

        uvicorn re-raises the signal once it has shut down, so the process dies
        of it (status -15) even after a clean, graceful stop; a supervisor then
        reads a crash. Here the signal only starts the shutdown.
        """

        @contextlib.contextmanager
        def capture_signals(self):
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise StartupError(f"port {port} on {host} is in use or not allowed ({e.strerror}): "
                           "pick another with --port") from None
    return sock  # uvicorn listens once the model is loaded: until then a client is refused, not left waiting


# llama.cpp's feature names (llama_print_system_info) -> the /proc/cpuinfo flags they need
_CPU_FLAGS = {"AVX2": ("avx2",), "FMA": ("fma",), "F16C": ("f16c",), "AVX512": ("avx512f", "avx512bw", "avx512vl"),
              "AVX512_VBMI": ("avx512vbmi",), "AVX512_VNNI": ("avx512_vnni",), "AVX512_BF16": ("avx512_bf16",)}


def check_cpu() -> None:
    """Refuse to start where llama.cpp was built for instructions this CPU lacks (it would die of SIGILL).

    Only on Linux x86-64, and only when the CPU lacks one of the flags: then
    the build's features are read in a child process (which may itself die
    of the illegal instruction, and that says enough).
    """
    try:
        flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return
    if all(f in flags for need in _CPU_FLAGS.values() for f in need):
        return
    import subprocess

    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    built = {k for k, v in (part.split(" = ") for part in probe.stdout.replace("CPU :", "").split(" | ")
                            if " = " in part) if v.strip() == "1"}
    missing = sorted(k for k in built & set(_CPU_FLAGS) if not all(f in flags for f in _CPU_FLAGS[k]))
    if probe.returncode != 0 or missing:
        what = ", ".join(missing) or "it died loading"
        raise StartupError(f"llama.cpp was built for instructions this CPU lacks ({what}): turn them off in "
                           "pyproject.toml [tool.uv.extra-build-variables] "
"(e.g. -DGGML_AVX512=OFF) and run `make install` again")


def start(model: str, *, name: str | None, host: str, port: int, parallel: int, n_ctx: int, max_queue: int,
          grace_s: float, expect_sha256: str | None, threads: int | None = None) -> None:
    from local_lm.fetch import sha256_file
    from local_lm.gguf import ModelFileError, read_header

    if parallel < 1 or max_queue < 1 or n_ctx < 64:
        raise StartupError("--parallel and --queue must be at least 1, --ctx at least 64")
    path = Path(model)
    sock = bind(host, port)
    try:
        try:
            header = read_header(path)
        except ModelFileError as e:
            raise StartupError(str(e)) from None
        digest = sha256_file(path)
        if expect_sha256 and digest != expect_sha256:
            raise StartupError(f"model file {path}: sha256 {digest}, expected {expect_sha256} (changed since "
                               "it was fetched? run `otlake lm fetch` again)")
        ctx = min(n_ctx, header.context_length or n_ctx)
        check_cpu()
        engine = Engine(str(path), parallel=parallel, n_ctx=ctx, max_queue=max_queue, threads=threads)
    except BaseException:
        sock.close()
        raise
    info = {"id": name or path.stem, "path": str(path.absolute()), "sha256": digest, "size": header.size,
            "architecture": header.architecture, "header_name": header.name, "context_length": ctx,
            "parallel": parallel, "engine": "llama.cpp (llama-cpp-python)"}
    import uvicorn

    app = build_app(engine, info, grace_s)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=grace_s, access_log=False)
    server = _server_class()(config)
    print(f"serving {info['id']} (sha256 {digest[:12]}...) on http://{host}:{port}/v1 "
          f"with {parallel} slot(s), context {ctx}", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        engine.close(grace_s)
        sock.close()


def exit_with_parent(parent: int) -> None:
    """Have Linux send SIGTERM when the parent dies, even by SIGKILL: a launcher's server never outlives it."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the request took effect
        sys.exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_lm.server", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a GGUF file")
    parser.add_argument("--name", help="the model id clients use (default: the file's stem)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="threads per slot (default: cores / parallel)")
    parser.add_argument("--ctx", type=int, default=DEFAULT_CTX)
    parser.add_argument("--queue", type=int, default=16)
    parser.add_argument("--grace", type=float, default=30.0)
    parser.add_argument("--sha256", default=None, help="refuse to start unless the file has this sha256")
    parser.add_argument("--exit-with-parent", type=int, default=None, metavar="PID",
                        help="stop (as on SIGTERM) when process PID, which started this one, dies (Linux)")
    args = parser.parse_args(argv)
    if args.exit_with_parent is not None:
        exit_with_parent(args.exit_with_parent)
    try:
        start(args.model, name=args.name, host=args.host, port=args.port, parallel=args.parallel, n_ctx=args.ctx,
              max_queue=args.queue, grace_s=args.grace, expect_sha256=args.sha256, threads=args.threads)
    except StartupError as e:
        print(f"otlake lm serve: {e}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
