"""Faults and bad input, each against real pyright processes: handled, counted, and the rest checked."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from lsp_runner import LspPool, Snapshot

from .lsp_fixtures import REPL, assert_gone, expected_main, keys


@pytest.fixture(scope="module")
def pool():
    with LspPool(size=1, timeout_s=30) as p:
        yield p


class Killer:
    """SIGKILLs every pyright server of a pool as soon as it is serving, `times` times at most."""

    def __init__(self, pool: LspPool, times: int | None) -> None:
        self.pool, self.times, self.killed = pool, times, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and (self.times is None or len(self.killed) < self.times):
            for pid in self.pool.server_pids():
                if pid not in self.killed:
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
            time.sleep(0.002)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def test_a_server_killed_mid_check_is_replaced_and_the_snapshot_retried():
    with LspPool(size=1) as p:
        killer = Killer(p, times=1)
        (result,) = p.check([Snapshot("r1", REPL)])
        killer.stop()
        stats = p.stats
        survivors = p.server_pids()
    assert len(killer.killed) == 1 and killer.killed[0] not in survivors
    assert (result.status, result.attempts) == ("ok", 2)
    assert keys(result.diagnostics["main.py"]) == expected_main()
    assert (stats.crashes, stats.restarts, stats.failed, stats.servers_started) == (1, 1, 0, 2)
    assert_gone(killer.killed + survivors)


def test_a_snapshot_that_keeps_failing_is_reported_failed_and_the_run_goes_on():
    with LspPool(size=1, max_attempts=2) as p:
        killer = Killer(p, times=None)
        doomed, fine = p.check([Snapshot("doomed", REPL), Snapshot("fine", REPL)],
                               progress=lambda r: killer.stop())
        stats = p.stats
    assert (doomed.status, doomed.attempts, doomed.diagnostics) == ("failed", 2, {})
    assert doomed.reason.startswith("pyright failed 2 times") and doomed.reason.count("[crashed]") == 2
    assert fine.ok and keys(fine.diagnostics["main.py"]) == expected_main()
    assert (stats.failed, stats.crashes, stats.restarts, stats.snapshots) == (1, 2, 2, 2)
    assert_gone(killer.killed)


def test_a_hung_server_is_killed_after_the_timeout_and_the_snapshot_retried():
    stopped: list[int] = []

    def freeze_the_server(result):
        if not stopped:
            stopped.append(p.server_pids()[0])
            os.kill(stopped[0], signal.SIGSTOP)  # alive, but it never answers again

    # 300 KB to send: more than a pipe holds, so a writer that blocked would hang us, not time out
    notes = "# a long comment line, repeated\n" * 10_000
    with LspPool(size=1, timeout_s=2) as p:
        first, second = p.check([Snapshot("a", REPL), Snapshot("b", {**REPL, "notes.py": notes})],
                                progress=freeze_the_server)
        stats = p.stats
    assert first.ok and first.attempts == 1
    assert second.ok and second.attempts == 2 and second.seconds >= 2
    assert keys(second.diagnostics["main.py"]) == expected_main() and second.diagnostics["notes.py"] == []
    assert (stats.timeouts, stats.restarts, stats.failed) == (1, 1, 0)
    assert_gone(stopped)


def test_path_escapes_are_refused_and_the_rest_is_checked(pool):
    tag = uuid.uuid4().hex[:8]
    escape, absolute = f"../otlake-escape-{tag}.py", f"{tempfile.gettempdir()}/otlake-abs-{tag}.py"
    before = pool.stats.skipped["bad_path"]
    (result,) = pool.check([Snapshot("r", {**REPL, escape: "x = 1\n", absolute: "y = 2\n", "nul\x00.py": "z\n"})])
    assert result.ok and keys(result.diagnostics["main.py"]) == expected_main()
    assert {p: r.split(": ", 1)[0] for p, r in result.skipped.items()} == {
        escape: "bad_path", absolute: "bad_path", "nul\x00.py": "bad_path"}
    assert "escapes the repl's root" in result.skipped[escape] and "absolute" in result.skipped[absolute]
    assert "NUL" in result.skipped["nul\x00.py"]
    assert pool.stats.skipped["bad_path"] == before + 3
    assert not Path(absolute).exists() and not (pool.root.parent / f"otlake-escape-{tag}.py").exists()
    assert not list(pool.root.parent.glob(f"**/otlake-escape-{tag}.py"))


def test_binary_and_non_utf8_files_are_skipped_and_counted(pool):
    before = pool.stats.skipped["not_utf8"]
    files = {**REPL, "latin.py": "café = 1\n".encode("latin-1"), "blob.py": bytes(range(256)),
             "lone.py": "x = '\ud800'\n", "logo.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
             "ok_bytes.py": "né = 1\n".encode()}
    (result,) = pool.check([Snapshot("r", files)])
    assert result.ok and keys(result.diagnostics["main.py"]) == expected_main()
    assert sorted(result.skipped) == ["blob.py", "latin.py", "lone.py"]
    assert all(reason.startswith("not_utf8") for reason in result.skipped.values())
    assert result.diagnostics["ok_bytes.py"] == [] and "logo.png" not in result.diagnostics
    assert pool.stats.skipped["not_utf8"] == before + 3


def test_odd_but_legal_file_names_are_checked(pool):
    names = ["my file.py", "ü.py", "a#b.py", "100%.py", "x?y.py", "emoji🎉.py", "new\nline.py", "-dash.py"]
    (result,) = pool.check([Snapshot("odd", {name: "print(undefined)\n" for name in names})])
    assert result.ok and result.skipped == {}
    assert {name: [d.code for d in result.diagnostics[name]] for name in names} == {
        name: ["pyright[reportUndefinedVariable]", "ruff[F821]"] for name in names}


def test_a_5_mb_file_is_skipped_and_counted(pool):
    big = "value = 1\n" * (5 * 2**20 // 10)  # pyright needs minutes for this; it must not stall the run
    before = pool.stats.skipped["too_large"]
    (result,) = pool.check([Snapshot("r", {**REPL, "big.py": big})])
    assert result.ok and keys(result.diagnostics["main.py"]) == expected_main()
    assert result.skipped["big.py"].startswith("too_large: 5,242,880 bytes")
    assert "big.py" not in result.diagnostics and pool.stats.skipped["too_large"] == before + 1


def test_a_repl_with_500_files(pool):
    files = {"main.py": "import pkg.m0\n\npkg.m0.value.upper()\n", "pkg/__init__.py": ""}
    for i in range(498):
        source = f"from pkg.m{i + 1} import value as v\n" if i < 497 else "v = 0\n"
        files[f"pkg/m{i}.py"] = f"{source}\nvalue: int = v + {i}\nprint(missing_{i})\n"
    assert len(files) == 500
    (result,) = pool.check([Snapshot("big-repl", files)])
    assert result.ok and len(result.diagnostics) == 500
    upper = 'Cannot access attribute "upper" for class "int"\n\xa0\xa0Attribute "upper" is unknown'
    assert [d.message for d in result.diagnostics["main.py"]] == [upper]
    for i in (0, 250, 497):
        assert keys(result.diagnostics[f"pkg/m{i}.py"]) == {
            (f"pkg/m{i}.py", "pyright[reportUndefinedVariable]", 3, 6), (f"pkg/m{i}.py", "ruff[F821]", 3, 6)}
