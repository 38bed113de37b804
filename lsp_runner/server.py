"""One `pyright-langserver --stdio` process spoken to in LSP, with LSP 3.17 pull diagnostics.

Why pull and not publishDiagnostics: pyright publishes a file as soon as its
diagnostics change, and a file that was only parsed and bound for another
file's imports is published before it is checked (seen: `utils.py` published
with 0 diagnostics, then with 1, both at the opened version). A
`textDocument/diagnostic` answer is complete by construction: pyright checks
the file before it replies, so "all files of a snapshot are done" is "every
request is answered".
"""

from __future__ import annotations

import os
import queue
import subprocess
import tempfile
import time
from pathlib import Path

from lsprotocol import types as lsp
from lsprotocol.converters import get_converter

from .config import LspConfig
from .errors import ServerFailed
from .jsonrpc import CLOSED, Connection
from .tools import langserver_command, node_binary

_CONVERTER = get_converter()
_RETRY_UNKNOWN_FILE = 20  # re-asks for a file pyright had not opened yet when the request arrived
COLD_TIMEOUT_S = 30.0  # a fresh server's first check parses the builtins and typeshed: allow longer


def client_capabilities() -> dict:
    """What we tell pyright we support: pull diagnostics with tags, configuration, watched files."""
    caps = lsp.ClientCapabilities(
        workspace=lsp.WorkspaceClientCapabilities(
            configuration=True,
            workspace_folders=True,
            did_change_watched_files=lsp.DidChangeWatchedFilesClientCapabilities(dynamic_registration=True),
        ),
        text_document=lsp.TextDocumentClientCapabilities(
            diagnostic=lsp.DiagnosticClientCapabilities(dynamic_registration=False),
            publish_diagnostics=lsp.PublishDiagnosticsClientCapabilities(
                version_support=True,
                tag_support=lsp.ClientDiagnosticsTagOptions(
                    value_set=[lsp.DiagnosticTag.Unnecessary, lsp.DiagnosticTag.Deprecated]),
            ),
        ),
        window=lsp.WindowClientCapabilities(work_done_progress=True),
    )
    return _CONVERTER.unstructure(caps)


class PyrightServer:
    """A warm language server whose workspace root is `workspace` (it holds pyrightconfig.json)."""

    def __init__(self, workspace: Path, config: LspConfig, timeout_s: float) -> None:
        self.workspace = workspace
        self.config = config
        self.timeout_s = timeout_s
        self.snapshots_checked = 0
        self._version = 0
        # lives as long as the process; closed in kill()
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        env = dict(os.environ)
        # no Python on PATH: pyright sees only the stdlib stubs unless config.python_path names one,
        # so results do not depend on whichever interpreter the runner happens to run in
        env["PATH"] = os.path.dirname(node_binary())
        env["PYRIGHT_PYTHON_IGNORE_WARNINGS"] = "1"
        try:
            self.proc = subprocess.Popen(
                langserver_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=self._stderr, cwd=workspace, env=env,
            )
        except BaseException:
            self._stderr.close()
            raise
        assert self.proc.stdin is not None and self.proc.stdout is not None  # both are PIPE
        self.conn = Connection(self.proc.stdin, self.proc.stdout, self._answer)
        try:
            self._initialize()
        except BaseException:
            self.kill()
            raise

    @property
    def pid(self) -> int:
        """The pid of the node process that is the server."""
        return self.proc.pid

    def rss_mb(self) -> float:
        """Resident memory of the server process in MiB (0 when it is gone)."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def check(self, root: Path, texts: dict[str, str]) -> dict[str, list[dict]]:
        """pyright's LSP diagnostics (raw dicts) for each file in `texts`, which lie under `root`."""
        self._version += 1
        uris = {path: (root / path).as_uri() for path in texts}
        try:
            for path, text in texts.items():
                self.conn.notify("textDocument/didOpen", {"textDocument": {
                    "uri": uris[path], "languageId": "python", "version": self._version, "text": text}})
            result = self._pull(uris)
        finally:
            if self.proc.poll() is None:
                for uri in uris.values():
                    try:
                        self.conn.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
                    except ServerFailed:
                        break
        self.snapshots_checked += 1
        return result

    def _pull(self, uris: dict[str, str]) -> dict[str, list[dict]]:
        pending = {self._ask(uri): path for path, uri in uris.items()}
        retries = {path: 0 for path in uris}
        result: dict[str, list[dict]] = {}
        timeout = self.timeout_s if self.snapshots_checked else max(self.timeout_s, COLD_TIMEOUT_S)
        deadline = time.monotonic() + timeout
        while pending:
            message = self._next(deadline, timeout)
            message_id = message.get("id")
            path = pending.pop(message_id, None) if isinstance(message_id, int) else None
            if path is None:
                continue  # publishDiagnostics, progress, log messages: not needed
            deadline = time.monotonic() + timeout  # a live server answers; silence is a hang
            if "error" in message:
                raise ServerFailed("protocol", f"diagnostics for {path!r}: {message['error']}")
            report = message.get("result") or {}
            if report.get("resultId") is None:
                # no result id: pyright answered before it had the file open; ask again
                if retries[path] == _RETRY_UNKNOWN_FILE:
                    raise ServerFailed("protocol", f"pyright never opened {path!r}")
                retries[path] += 1
                time.sleep(0.01 * retries[path])
                pending[self._ask(uris[path])] = path
                continue
            result[path] = list(report.get("items") or [])
        return result

    def _ask(self, uri: str) -> int:
        return self.conn.request("textDocument/diagnostic", {"textDocument": {"uri": uri}})

    def _next(self, deadline: float, timeout: float) -> dict:
        remaining = deadline - time.monotonic()
        try:
            message = self.conn.inbox.get(timeout=max(remaining, 0.001))
        except queue.Empty:
            raise ServerFailed("timeout", f"pyright (pid {self.pid}) gave no answer for "
                                          f"{timeout:g} s") from None
        if message is CLOSED:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            raise ServerFailed("crashed", f"pyright (pid {self.pid}) exited with code "
                                          f"{self.proc.returncode}{self._stderr_tail()}")
        return message

    def _initialize(self) -> None:
        params = {
            "processId": os.getpid(),  # pyright exits by itself when we are gone
            "rootUri": self.workspace.as_uri(),
            "workspaceFolders": [{"uri": self.workspace.as_uri(), "name": "otlake"}],
            "capabilities": client_capabilities(),
            "initializationOptions": {},
        }
        request_id = self.conn.request("initialize", params)
        timeout = max(self.timeout_s, COLD_TIMEOUT_S)
        deadline = time.monotonic() + timeout
        while True:
            message = self._next(deadline, timeout)
            if message.get("id") == request_id:
                if "error" in message:
                    raise ServerFailed("protocol", f"initialize failed: {message['error']}")
                break
        self.conn.notify("initialized", {})

    def _answer(self, method: str, params) -> object:
        """Replies to the requests pyright sends us."""
        if method == "workspace/configuration":
            return [self._settings(item.get("section")) for item in params.get("items", [])]
        if method == "workspace/workspaceFolders":
            return [{"uri": self.workspace.as_uri(), "name": "otlake"}]
        if method in ("client/registerCapability", "client/unregisterCapability",
                      "window/workDoneProgress/create", "window/showMessageRequest"):
            return None
        raise LookupError(method)

    def _settings(self, section: str | None) -> object:
        # analysis settings live in pyrightconfig.json, which wins over these; these keep the
        # server quiet (open files only) and point it at an interpreter when one is configured
        analysis = {"diagnosticMode": "openFilesOnly", "autoImportCompletions": False}
        python: dict[str, object] = {"analysis": analysis}
        if self.config.python_path:
            python["pythonPath"] = self.config.python_path
        return {"python": python, "python.analysis": analysis,
                "pyright": {"disableOrganizeImports": True}}.get(section or "", None)

    def _stderr_tail(self) -> str:
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(size - 400, 0))
            tail = self._stderr.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""
        return f"; stderr: {tail}" if tail else ""

    def shutdown(self) -> None:
        """Asks the server to exit; kills it if it does not within a few seconds."""
        if self.proc.poll() is None:
            try:
                request_id = self.conn.request("shutdown", None)
                deadline = time.monotonic() + 3
                while self._next(deadline, 3).get("id") != request_id:
                    pass
                self.conn.notify("exit", None)
                self.proc.wait(timeout=3)
            except (ServerFailed, subprocess.TimeoutExpired):
                pass
        self.kill()

    def kill(self) -> None:
        """SIGKILL (works on a stopped process too), reap it, and close the pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.conn.close()
        for stream in (self.proc.stdin, self.proc.stdout, self._stderr):
            try:
                if stream is not None:
                    stream.close()
            except (OSError, ValueError):
                pass
