"""JSON-RPC 2.0 with LSP's Content-Length framing over a child process's pipes."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from typing import IO, Any

from .errors import ServerFailed

# a server request the connection answers itself: method, params -> result
Handler = Callable[[str, Any], Any]
CLOSED = object()  # put on the inbox when the server's stdout ends


def encode(message: dict) -> bytes:
    """One framed message: header, blank line, UTF-8 JSON body."""
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def read_message(stream: IO[bytes]) -> dict | None:
    """The next message from a framed stream; None at its end."""
    length = None
    while True:
        line = stream.readline()
        if not line:
            return None
        line = line.strip()
        if not line:
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        raise ServerFailed("protocol", "a message without a Content-Length header")
    body = stream.read(length)
    if len(body) < length:
        return None
    return json.loads(body)


class Connection:
    """A writer thread sends what we queue; a reader thread queues what the server sends.

    Writes never block the caller: a stopped server that no longer reads its
    pipe must still run into our timeout, not hang us in write(). Requests
    from the server (workspace/configuration and the like) are answered on
    the reader thread by `handler`, so the server never waits on us while we
    wait on it.
    """

    def __init__(self, stdin: IO[bytes], stdout: IO[bytes], handler: Handler) -> None:
        self._handler = handler
        self._next_id = 0
        self._broken: str | None = None
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.inbox: queue.Queue = queue.Queue()
        threading.Thread(target=self._write_loop, args=(stdin,), daemon=True).start()
        threading.Thread(target=self._read_loop, args=(stdout,), daemon=True).start()

    def request(self, method: str, params: Any) -> int:
        """Sends a request and returns its id; the response arrives in `inbox`."""
        self._next_id += 1
        self._send({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params})
        return self._next_id

    def notify(self, method: str, params: Any) -> None:
        """Sends a notification."""
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def close(self) -> None:
        """Stops the writer thread once it has sent what is queued."""
        self._outbox.put(None)

    def _send(self, message: dict) -> None:
        if self._broken is not None:
            raise ServerFailed("crashed", f"cannot write to the server: {self._broken}")
        self._outbox.put(encode(message))

    def _write_loop(self, stdin: IO[bytes]) -> None:
        while (data := self._outbox.get()) is not None:
            try:
                stdin.write(data)
                stdin.flush()
            except (OSError, ValueError) as e:
                self._broken = str(e) or type(e).__name__
                return

    def _read_loop(self, stdout: IO[bytes]) -> None:
        try:
            while True:
                message = read_message(stdout)
                if message is None:
                    break
                if "method" in message and "id" in message:
                    self._answer(message)
                else:
                    self.inbox.put(message)
        except (OSError, ValueError, ServerFailed):
            pass  # a broken stream is reported as the end of the server below
        finally:
            self.inbox.put(CLOSED)

    def _answer(self, message: dict) -> None:
        try:
            reply = {"jsonrpc": "2.0", "id": message["id"],
                     "result": self._handler(message["method"], message.get("params"))}
        except Exception as e:  # noqa: BLE001 - any failure is an error reply, never a dead reader
            code = -32601 if isinstance(e, LookupError) else -32603  # method not found, internal error
            reply = {"jsonrpc": "2.0", "id": message["id"],
                     "error": {"code": code, "message": f"{message['method']}: {e!r}"}}
        try:
            self._send(reply)
        except ServerFailed:
            pass  # the reader sees the end of the stream next
