"""A pool of warm pyright language servers plus batched ruff: snapshots in, merged diagnostics out.

Layout: the pool owns one temporary workspace (every server's root, with the
pyrightconfig.json). Each `check` call writes its snapshots under
`b-<call>/s-<index>/` and removes them when it returns. The hyphens keep
those folders from ever being named by an import, so a snapshot's imports
resolve only inside itself (pyright resolves an absolute import it cannot
find at the root from the importing file's folder upwards). Folder names are
never reused, so no server can answer from a stale cache.
"""

from __future__ import annotations

import queue
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Self

from .config import DEFAULT_CONFIG, LspConfig
from .diagnostic import Diagnostic
from .errors import LspError, ServerFailed
from .merge import merge
from .result import FAILED, OK, CheckResult, RunStats
from .ruff import lint_trees
from .server import PyrightServer
from .snapshot import Snapshot, Tree, temporary_root, write_tree

Progress = Callable[[CheckResult], None]


class LspPool:
    """Warm `pyright-langserver --stdio` processes; use as a context manager.

    timeout_s: longest silence allowed from a server that owes answers.
    recycle_after: snapshots per server before it is replaced by a fresh one.
    max_rss_mb: a server above this resident memory is replaced after its snapshot.
    max_attempts: pyright attempts per snapshot before it is reported as failed.
    """

    def __init__(self, size: int = 1, config: LspConfig = DEFAULT_CONFIG, timeout_s: float = 30.0,
                 recycle_after: int = 500, max_rss_mb: float = 1024.0, max_attempts: int = 3) -> None:
        if size < 1 or recycle_after < 1 or max_attempts < 1 or timeout_s <= 0:
            raise LspError("size, recycle_after, max_attempts and timeout_s must be positive")
        self.size = size
        self.config = config
        self.timeout_s = timeout_s
        self.recycle_after = recycle_after
        self.max_rss_mb = max_rss_mb
        self.max_attempts = max_attempts
        self.stats = RunStats()
        self._servers: list[PyrightServer | None] = [None] * size
        self._root_cm = None
        self.root: Path | None = None
        self._calls = 0

    def __enter__(self) -> Self:
        self._root_cm = temporary_root("otlake-lsp-pool-")
        self.root = self._root_cm.__enter__()
        (self.root / "pyrightconfig.json").write_text(self.config.pyrightconfig_json())
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stops every server and removes the workspace."""
        for slot, server in enumerate(self._servers):
            if server is not None:
                server.shutdown()
                self._servers[slot] = None
        if self._root_cm is not None:
            self._root_cm.__exit__(None, None, None)
            self._root_cm = None
        self.root = None

    def server_pids(self) -> list[int]:
        """pids of the running servers (for monitoring, and for tests that kill one)."""
        return [s.pid for s in self._servers if s is not None and s.proc.poll() is None]

    def check(self, snapshots: Sequence[Snapshot], progress: Progress | None = None) -> list[CheckResult]:
        """Checks every snapshot; a snapshot that cannot be checked comes back failed, never raised.

        The whole list is written to disk at once and ruff runs over it in one
        process, so pass batches (tens to hundreds of snapshots), not everything.
        `progress` is called with each result as it is ready.
        """
        if self.root is None:
            raise LspError("LspPool.check outside `with LspPool(...) as pool:`")
        self._calls += 1
        batch = self.root / f"b-{self._calls:06d}"
        try:
            trees = [write_tree(s, batch / f"s-{i:06d}", self.config) for i, s in enumerate(snapshots)]
            for tree in trees:
                for reason in tree.skipped.values():
                    self.stats.skipped[reason.partition(":")[0]] += 1
            with ThreadPoolExecutor(max_workers=1 + self.size, thread_name_prefix="otlake-lsp") as ex:
                ruff = ex.submit(self._ruff, trees, batch)
                results: list[CheckResult | None] = [None] * len(trees)
                work: queue.SimpleQueue = queue.SimpleQueue()
                for index in range(len(trees)):
                    work.put(index)
                workers = [ex.submit(self._work, slot, work, trees, ruff, results, progress)
                           for slot in range(min(self.size, max(len(trees), 1)))]
                for worker in workers:
                    worker.result()
        finally:
            shutil.rmtree(batch, ignore_errors=True)
        return [r for r in results if r is not None]

    def _work(self, slot: int, work: queue.SimpleQueue, trees: list[Tree], ruff: Future,
              results: list, progress: Progress | None) -> None:
        while True:
            try:
                index = work.get_nowait()
            except queue.Empty:
                return
            result = self._check_tree(slot, trees[index], ruff, index)
            results[index] = result
            if progress is not None:
                progress(result)

    def _check_tree(self, slot: int, tree: Tree, ruff_batch: Future, index: int) -> CheckResult:
        result = CheckResult(tree.snapshot.id, OK, skipped=dict(tree.skipped))
        if tree.error is not None:
            result.status, result.reason = FAILED, tree.error
            self.stats.add(snapshots=1, failed=1)
            return result
        items, failure = self._pyright(slot, tree, result)
        ruff = ruff_batch.result()[index]  # after pyright: the two run side by side
        if failure is None and isinstance(ruff, str):
            failure = ruff
        if failure is not None or not isinstance(ruff, dict):
            result.status, result.reason = FAILED, failure
            self.stats.add(snapshots=1, failed=1)
            return result
        result.diagnostics = {path: merge(path, items.get(path, ()), ruff.get(path, ()), self.config)
                              for path in tree.texts}
        self.stats.add(snapshots=1, files_checked=len(tree.texts))
        return result

    def _pyright(self, slot: int, tree: Tree, result: CheckResult) -> tuple[dict, str | None]:
        if not tree.texts:
            return {}, None
        failures: list[str] = []
        started = time.monotonic()
        try:
            for attempt in range(1, self.max_attempts + 1):
                result.attempts = attempt
                try:
                    items = self._server(slot).check(tree.root, tree.texts)
                except ServerFailed as e:
                    failures.append(str(e))
                    self._replace_failed(slot, e)
                    continue
                self._maybe_recycle(slot)
                return items, None
        finally:
            result.seconds = time.monotonic() - started
            self.stats.add(pyright_seconds=result.seconds)
        return {}, f"pyright failed {len(failures)} times: " + "; ".join(failures)

    def _server(self, slot: int) -> PyrightServer:
        server = self._servers[slot]
        if server is None or server.proc.poll() is not None:
            if server is not None:  # died between snapshots: found now, counted as a crash
                raise ServerFailed("crashed", f"pyright (pid {server.pid}) exited with code "
                                              f"{server.proc.returncode} while idle")
            assert self.root is not None, "check() makes sure the pool is open"
            try:
                server = PyrightServer(self.root, self.config, self.timeout_s)
            except OSError as e:
                raise ServerFailed("crashed", f"pyright could not start: {e}") from e
            self._servers[slot] = server
            self.stats.add(servers_started=1)
        return server

    def _replace_failed(self, slot: int, error: ServerFailed) -> None:
        server = self._servers[slot]
        if server is not None:
            server.kill()
            self._servers[slot] = None
        counter = {"timeout": "timeouts", "crashed": "crashes"}.get(error.kind, "protocol_errors")
        self.stats.add(restarts=1, **{counter: 1})

    def _maybe_recycle(self, slot: int) -> None:
        server = self._servers[slot]
        if server is None:
            return
        rss = server.rss_mb()
        self.stats.saw_rss(rss)
        if server.snapshots_checked >= self.recycle_after or rss > self.max_rss_mb:
            server.shutdown()
            self._servers[slot] = None
            self.stats.add(recycles=1)

    def _ruff(self, trees: list[Tree], batch: Path) -> list[dict[str, list[Diagnostic]] | str]:
        """ruff's diagnostics per tree; a tree ruff failed on gets the reason instead."""
        started = time.monotonic()
        try:
            self.stats.add(ruff_runs=1)
            found: list[dict[str, list[Diagnostic]] | str] = list(lint_trees(trees, batch, self.config))
            return found
        except LspError:
            # find the snapshot ruff chokes on: one process per snapshot, the rest still checked
            out: list[dict[str, list[Diagnostic]] | str] = []
            for tree in trees:
                self.stats.add(ruff_runs=1)
                try:
                    out.append(lint_trees([tree], batch, self.config)[0])
                except LspError as e:
                    out.append(f"ruff failed: {e}")
            return out
        finally:
            self.stats.add(ruff_seconds=time.monotonic() - started)
