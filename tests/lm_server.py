"""A scripted OpenAI-compatible chat-completions server over real HTTP, for tests of the LM programs.

It serves recorded answers: a script maps a substring of the last user
message to a reply (or to a list of replies served in turn, the last one
repeating), and a default answers everything else. Replies can be a normal
completion, a malformed or truncated one, an HTTP error (429 with
Retry-After, 500) or a slow answer. The server counts requests, records
their bodies and the most requests it had in flight at once.

    with ScriptedLM(script=[("turtle", diff_reply("-3 a\\n+3 b"))]) as server:
        dspy.LM("openai/scripted", api_base=server.api_base, api_key="k")
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a completion (status 200) or an HTTP error, after an optional delay."""

    text: str = ""
    finish_reason: str = "stop"
    status: int = 200
    delay_s: float = 0.0
    retry_after: str | None = None  # the Retry-After header of an error reply
    prompt_tokens: int | None = 11  # None leaves `usage` out of the answer
    completion_tokens: int = 7
    body: str | None = None  # sent as the HTTP body instead of a chat.completion object


def fields_reply(fields: dict[str, str], **kw) -> Reply:
    """A completion in DSPy's ChatAdapter form: `[[ ## name ## ]]` sections, then `completed`."""
    body = "".join(f"[[ ## {name} ## ]]\n{value}\n\n" for name, value in fields.items())
    return Reply(text=body + "[[ ## completed ## ]]", **kw)


def diff_reply(diff: str, **kw) -> Reply:
    """A well-formed answer of the repair program whose diff field is `diff` (right or wrong)."""
    return fields_reply({"diff": diff}, **kw)


def verdict_reply(accepted: bool, reason: str, **kw) -> Reply:
    """A well-formed answer of the judge."""
    return fields_reply({"reasoning": "Checked the diff against the error.",
                         "accepted": str(accepted), "reason": reason}, **kw)


def malformed_reply(text: str = "Sure! Here is the fix you asked for.", **kw) -> Reply:
    """A completion with no field markers at all, which no DSPy adapter can parse."""
    return Reply(text=text, **kw)


def truncated_reply(diff: str, keep: int, **kw) -> Reply:
    """An answer cut after `keep` characters of its diff, as a server stops at max_tokens."""
    return Reply(text=f"[[ ## diff ## ]]\n{diff[:keep]}", finish_reason="length", **kw)


def rate_limited(retry_after: str = "0") -> Reply:
    """HTTP 429 with a Retry-After header."""
    return Reply(status=429, retry_after=retry_after)


def server_error() -> Reply:
    """HTTP 500."""
    return Reply(status=500)


def broken_body(text: str = '{"id": "chatcmpl-1", "choices": [') -> Reply:
    """A 200 whose body is not a chat.completion (cut JSON by default), as a broken proxy sends."""
    return Reply(body=text)


def slow(reply: Reply, delay_s: float) -> Reply:
    """The same reply, sent after `delay_s` seconds."""
    return replace(reply, delay_s=delay_s)


Rule = tuple[str, "Reply | Sequence[Reply]"]


class ScriptedLM:
    """The server: start it with `with`, point `dspy.LM` at `api_base`, read what it saw afterwards."""

    def __init__(self, script: Iterable[Rule] = (), default: Reply | Sequence[Reply] | None = None) -> None:
        self._rules = [(needle, _as_list(replies)) for needle, replies in script]
        self._default = _as_list(default or malformed_reply("no scripted answer for this prompt"))
        self._served: dict[int, int] = {}  # rule index (-1: default) -> replies served
        self._lock = threading.Lock()
        self.requests: list[dict] = []  # request bodies, in arrival order
        self.in_flight = 0
        self.max_in_flight = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def api_base(self) -> str:
        """The base URL to give the client, ending in /v1."""
        assert self._httpd is not None, "the server is not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def request_count(self) -> int:
        """How many chat-completion requests arrived."""
        with self._lock:
            return len(self.requests)

    def user_messages(self) -> list[str]:
        """The text of the last user message of every request, in arrival order."""
        with self._lock:
            return [_last_user_text(body) for body in self.requests]

    def __enter__(self) -> Self:
        handler = type("Handler", (_Handler,), {"lm": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        # a short poll: shutdown() waits for it, once per test
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), name="scripted-lm",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def _choose(self, body: dict) -> Reply:
        """Record the request and pick its reply: the first rule whose needle is in the last user message."""
        text = _last_user_text(body)
        with self._lock:
            self.requests.append(body)
            index = next((i for i, (needle, _) in enumerate(self._rules) if needle in text), -1)
            replies = self._rules[index][1] if index >= 0 else self._default
            served = self._served.get(index, 0)
            self._served[index] = served + 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return replies[min(served, len(replies) - 1)]

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1


class _Handler(BaseHTTPRequestHandler):
    lm: ScriptedLM
    protocol_version = "HTTP/1.1"  # keep-alive, as the OpenAI clients expect

    def log_message(self, *args: object) -> None:
        """Quiet: tests read `ScriptedLM.requests`, not the log."""

    def do_GET(self) -> None:
        """`/v1/models`, for clients that list models before calling."""
        self._json(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})

    def do_POST(self) -> None:
        """Chat completions: answer per the script."""
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            return
        reply = self.lm._choose(body)
        try:
            if reply.delay_s:
                time.sleep(reply.delay_s)
            if reply.status != 200:
                self._error(reply)
            elif reply.body is not None:
                self._raw(reply.body)
            elif body.get("stream"):
                self._stream(body, reply)
            else:
                self._json(200, _completion(body, reply))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout); nothing left to answer
        finally:
            self.lm._done()

    def _error(self, reply: Reply) -> None:
        kind = {401: "invalid_api_key", 429: "rate_limit_exceeded", 500: "server_error"}.get(reply.status, "error")
        headers = {"Retry-After": reply.retry_after} if reply.retry_after is not None else {}
        self._json(reply.status, {"error": {"message": f"scripted {reply.status}", "type": kind,
                                            "code": kind}}, headers)

    def _json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _raw(self, text: str) -> None:
        data = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, body: dict, reply: Reply) -> None:
        """Server-sent events: the text in one chunk, then the finish reason and usage, then [DONE]."""
        full = _completion(body, reply)
        base = {k: full[k] for k in ("id", "object", "created", "model")} | {"object": "chat.completion.chunk"}
        chunks = [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": reply.text},
                                  "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}]},
        ]
        if "usage" in full:
            chunks.append({**base, "choices": [], "usage": full["usage"]})
        data = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        raw = data.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


def _completion(body: dict, reply: Reply) -> dict:
    """The non-streaming chat.completion object for a reply."""
    answer = {
        "id": "chatcmpl-scripted", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model", "scripted"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                     "finish_reason": reply.finish_reason}],
    }
    if reply.prompt_tokens is not None:
        answer["usage"] = {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                           "total_tokens": reply.prompt_tokens + reply.completion_tokens}
    return answer


def _last_user_text(body: dict) -> str:
    """The text of the request's last user message ('' when there is none)."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts
                return "".join(part.get("text", "") for part in content if isinstance(part, dict))
            return content or ""
    return ""


def _as_list(replies: Reply | Sequence[Reply]) -> list[Reply]:
    return [replies] if isinstance(replies, Reply) else list(replies)
