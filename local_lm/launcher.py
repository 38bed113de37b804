"""Starting, finding and stopping the local LM server; what `--lm local` resolves to.

`local_lm()` is a context manager: if a server already answers on the port
(GET /v1/models), it is used as it is; otherwise the model is resolved (a
known name is fetched first if it is not there yet, a stored name or a GGUF
path is used as given), `python -m local_lm.server` is started, and the
manager waits for /health. On exit it stops only a server it started
(SIGTERM, then SIGKILL after the grace period). A server that exits during
start-up is a `ServerError` carrying its one-line reason (port in use, bad
file, ...), never a hang: start-up has a deadline.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from local_lm.fetch import ModelRecord, fetch, sha256_file, stored_model
from local_lm.gguf import ModelFileError, read_header
from local_lm.models import DEFAULT_MODEL, MODELS
from local_lm.server import DEFAULT_CTX, DEFAULT_PORT

HOST = "127.0.0.1"
ENV_PORT = "OTLAKE_LM_PORT"


def default_port() -> int:
    """$OTLAKE_LM_PORT if set (a whole number), else 8765."""
    value = os.environ.get(ENV_PORT, "").strip()
    if not value:
        return DEFAULT_PORT
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ServerError(f"{ENV_PORT}={value!r}: not a port number (1-65535)")
    return int(value)


class ServerError(ModelFileError):
    """The local LM server could not be started or reached."""


def require_lm_group() -> None:
    """ServerError naming the install command when llama.cpp's Python binding is not installed."""
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("fastapi") is None:
        raise ServerError("the local LM needs the `lm` dependency group (llama.cpp, built from source the first "
                          "time, about 3 minutes): run `uv sync --inexact --group lm` (`make test` and "
                          "`make bench` install it)")


# exit statuses of a server that died of a signal before saying why
_DIED = {-4: "the LM server died of an illegal instruction: llama.cpp was built for a CPU this one is not "
              "(see pyproject.toml [tool.uv.extra-build-variables]); rebuild it with `make install`",
         -11: "the LM server crashed (segmentation fault) loading the model", -9: "the LM server was killed"}


@dataclass(frozen=True)
class Endpoint:
    api_base: str  # http://127.0.0.1:PORT/v1
    model_id: str  # the id /v1/models serves
    sha256: str | None
    started: bool  # True: this process started it (and stops it)
    parallel: int = 1  # requests it generates at once: more in flight only wait in its queue

    @property
    def dspy_model(self) -> str:
        return f"openai/{self.model_id}"


def resolve(spec: str | None, home: str | os.PathLike | None = None, log=None) -> ModelRecord:
    """A model name or GGUF path -> its record; a known model not fetched yet is fetched now."""
    spec = spec or DEFAULT_MODEL
    stored = stored_model(spec, home)
    if stored is not None:
        if stored.format != "gguf":
            raise ServerError(f"model {spec!r} is a Hugging Face folder: llama.cpp serves GGUF files; serve it "
                              "with vLLM (see the README) or convert it with llama.cpp's convert_hf_to_gguf.py")
        return stored
    if spec in MODELS:
        return fetch(spec, home=home, log=log)
    path = Path(spec)
    if path.is_file():
        header = read_header(path)
        return ModelRecord(name=path.stem, path=str(path.absolute()), sha256=sha256_file(path), size=header.size,
                           format="gguf", source=str(path.absolute()), architecture=header.architecture,
                           header_name=header.name, tensor_count=header.tensor_count,
                           context_length=header.context_length)
    raise ServerError(f"model {spec!r}: not a known model ({', '.join(MODELS)}), a fetched one, or a GGUF file")


def server_command(record: ModelRecord, *, port: int = DEFAULT_PORT, parallel: int = 1, ctx: int = DEFAULT_CTX,
                   queue: int = 16, threads: int | None = None, grace_s: float = 30.0) -> list[str]:
    command = [sys.executable, "-m", "local_lm.server", "--model", record.path, "--name", record.name,
               "--host", HOST, "--port", str(port), "--parallel", str(parallel), "--ctx", str(ctx),
               "--queue", str(queue), "--grace", str(grace_s), "--sha256", record.sha256]
    return command + (["--threads", str(threads)] if threads else [])


def running(port: int = DEFAULT_PORT, timeout_s: float = 1.0) -> dict | None:
    """What the server on the port serves (its /v1/models entry), or None if nothing answers."""
    try:
        return _first_model(f"http://{HOST}:{port}/v1", timeout_s)
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


class LocalServer:
    """One server process; `start()` returns once /health says ok, `stop()` ends it."""

    def __init__(self, record: ModelRecord, *, port: int = DEFAULT_PORT, startup_s: float = 120.0, **options):
        self.record, self.port, self.startup_s = record, port, startup_s
        self.grace_s = options.get("grace_s", 30.0)
        self.parallel = options.get("parallel", 1)
        self.command = server_command(record, port=port, **options)
        self.process: subprocess.Popen | None = None

    @property
    def api_base(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def start(self) -> LocalServer:
        require_lm_group()
        # stderr to a file, not a pipe: a chatty server can never block on a full pipe
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by stop()
        command = self.command
        if threading.current_thread() is threading.main_thread():
            # the server ends when this process does, even by SIGKILL (Linux sends the signal when the thread
            # that started it ends: only the main thread lives as long as the process)
            command = [*command, "--exit-with-parent", str(os.getpid())]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self.log, text=True,
                                        start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:  # a failed start, Ctrl-C or a deadline: never leave the child behind
            self.stop(grace_s=2.0)
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                self.log.seek(0)
                reason = self.log.read().strip().splitlines()
                raise ServerError(_DIED.get(code) or (reason[-1] if reason else
                                                      f"the LM server exited with status {code}"))
            served = running(self.port)  # this model, by its hash: not another server that holds the port
            if served is not None and served.get("sha256") == self.record.sha256 and _healthy(self.port):
                return
            time.sleep(0.1)
        raise ServerError(f"the LM server did not answer /health within {self.startup_s:.0f} s")

    def stop(self, grace_s: float | None = None) -> int | None:
        """SIGTERM (running requests finish), SIGKILL after the server's grace period and 5 s more.

        The exit status; None if it was never started.
        """
        grace_s = self.grace_s + 5.0 if grace_s is None else grace_s
        process, self.process = self.process, None
        if process is None:
            return None
        try:
            if process.poll() is not None:
                return process.returncode
            process.send_signal(signal.SIGTERM)
            try:
                return process.wait(grace_s)
            except subprocess.TimeoutExpired:
                process.kill()
                return process.wait()
        finally:
            self.log.close()

    def __enter__(self) -> LocalServer:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def local_lm(model: str | None = None, *, home: str | os.PathLike | None = None, port: int | None = None,
             log=None, **options) -> Iterator[Endpoint]:
    """An endpoint for `--lm local`: the running server on the port, or one started (and stopped) here.

    The port is `port`, else $OTLAKE_LM_PORT, else 8765.
    """
    port = default_port() if port is None else port
    found = running(port, timeout_s=10.0)  # a busy server still answers /v1/models: it is not on the loop
    if found is not None:
        if model is not None:
            wanted = resolve(model, home, log=log)
            if found.get("sha256") != wanted.sha256:
                raise ServerError(f"port {port} serves {found.get('id')!r} (sha256 {str(found.get('sha256'))[:12]}), "
                                  f"not {model!r}: stop that server, or set OTLAKE_LM_PORT to another port")
        yield Endpoint(f"http://{HOST}:{port}/v1", found.get("id") or "local", found.get("sha256"), started=False,
                       parallel=found.get("parallel") or 1)
        return
    record = resolve(model, home, log=log)
    if log:
        log(f"starting the local LM server: {record.name} on port {port}")
    with LocalServer(record, port=port, **options) as server:
        yield Endpoint(server.api_base, record.name, record.sha256, started=True, parallel=server.parallel)


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=1.0) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def served_model(api_base: str, timeout_s: float = 5.0) -> str:
    """The first model id an OpenAI-compatible server lists at `api_base`/models."""
    try:
        return _first_model(api_base, timeout_s)["id"]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        raise ServerError(f"no model name given and {api_base.rstrip('/')}/models did not list one "
                          f"({type(e).__name__}): pass --lm openai/<model>") from None


def _first_model(api_base: str, timeout_s: float) -> dict:
    """The first entry of GET `api_base`/models (raises on no answer or an answer of another shape)."""
    with urllib.request.urlopen(api_base.rstrip("/") + "/models", timeout=timeout_s) as response:
        return json.loads(response.read())["data"][0]
