"""The sandbox's child (eval.sandbox starts it): stage 1 confines the process, stage 2 guards and runs the program.

Stage 1 applies the kernel's layers (eval.confine) and execs stage 2, a fresh interpreter that never loaded
ctypes. Stage 2 reads the run's nonce and program from descriptors it then closes, installs an audit hook
that refuses what the kernel layers refuse (with a readable message) and the introspection that could reach
the harness, and runs the program; a program with an entry gets `report`, which writes nonce-carrying lines
on the report channel. This module imports nothing of otlake, so stage 2 reads only eval/.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import socket
import sys
import traceback
import types

BLOCKED = "[sandbox] blocked: "  # stderr prefix of each refused action
FLAGS = ("-I", "-S", "-B", "-X", "utf8")  # -B: no .pyc writes, which the guard would refuse
BOOTSTRAP = "import sys; sys.path.append(sys.argv[1]); import eval.child as c; c._child_main(sys.argv[2])"



def _child_main(config: str) -> None:
    cfg = json.loads(config)
    if cfg["stage"] == 1:
        from eval.confine import confine

        confine(cfg)
        cfg["stage"] = 2
        os.execv(sys.executable, [sys.executable, *FLAGS, "-c", BOOTSTRAP, cfg["repo"], json.dumps(cfg)])
    _run_program(cfg)


def _run_program(cfg: dict) -> None:
    work, program, fd = cfg["work"], cfg["program"], cfg["report_fd"]
    secret = [_read_all(cfg["nonce_fd"])]  # the run's nonce: from here on only in closures and this frame
    source = _read_all(cfg["program_fd"])
    sys.path[:] = [work] + [p for p in sys.path if p != cfg["repo"]] + [cfg["lib"]]
    sys.argv = [program]
    main = types.ModuleType("__main__")
    main.__file__, main.__builtins__ = program, builtins
    sys.modules["__main__"] = main
    relaxed = [False]  # True once the nonce is gone: frames and reads no longer reach anything secret
    guard = _guard(work, cfg, secret, relaxed)
    report = _reporter(fd, secret)
    os.write(fd, secret[0] + b" start\n")
    try:
        code = compile(source, program, "exec")  # before the hook: a SyntaxError reads the file for its message
        sys.addaudithook(guard)
        exec(code, main.__dict__)  # noqa: S102 - running it is the point
        if cfg["entry"] is not None:
            main.__dict__[cfg["entry"]](report)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - every failure of the program is printed, exit 1
        if isinstance(e, MemoryError):  # report first, then free what the program held
            _say(fd, secret, b"memory")
        _forget(secret, relaxed)
        if isinstance(e, MemoryError):
            traceback.clear_frames(e.__traceback__)
            main.__dict__.clear()
        traceback.print_exception(type(e), e, e.__traceback__.tb_next)  # without this frame
        sys.exit(1)
    finally:
        _forget(secret, relaxed)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def _forget(secret: list, relaxed: list) -> None:
    secret.clear()
    relaxed[0] = True


def _say(fd: int, secret: list, line: bytes, _write=os.write) -> None:
    if secret:
        with contextlib.suppress(OSError):
            _write(fd, secret[0] + b" " + line + b"\n")


def _reporter(fd: int, secret: list):
    """The program's `report(line)`: one line on the report channel, with the nonce; tools bound now, before
    any program code can replace them."""

    def report(line: str, _say=_say, _encode=str.encode, _text=str.__str__, _replace=str.replace) -> None:
        text = _replace(_replace(_text(line), "\r", " "), "\n", " ")  # a str subclass is read as plain str
        _say(fd, secret, b"r " + _encode(text, "utf-8", "backslashreplace"))

    return report


_PROCESS_EVENTS = frozenset({"os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.spawn", "os.system",
                             "subprocess.Popen", "pty.spawn", "os.startfile"})
_NET_EVENTS = frozenset({"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
                         "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
                         "socket.getnameinfo", "socket.sethostname"})
_REFUSED = frozenset({"resource.setrlimit", "resource.prlimit", "sqlite3.enable_load_extension",
                      "sqlite3.load_extension", "sys.addaudithook"})
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


# Audit events that hand out frames or arbitrary objects: from them a program could walk to the harness's
# frames and the report function. Refused with ValueError (what CPython raises when no frame is there),
# which namedtuple, typing and logging already handle; the run is not marked blocked for them.
_INTROSPECTION = frozenset({"sys._getframe", "sys._current_frames", "sys._current_exceptions", "sys.settrace",
                            "sys.setprofile", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
                            "sys._getframemodulename", "sys.monitoring.register_callback"})
_FRAME_ATTRS = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back"})


def _guard(work: str, cfg: dict, secret: list, relaxed: list):
    processes, network, report_fd = cfg["processes"], cfg["network"], cfg["report_fd"]
    readable = tuple(_read_roots(cfg))

    def guard(event: str, args: tuple, _refusal=_refusal, _write=os.write, _say=_say) -> None:
        if not relaxed[0] and (event in _INTROSPECTION or
                               (event == "object.__getattr__" and len(args) > 1 and args[1] in _FRAME_ATTRS)):
            raise ValueError(f"sandbox: {event} is not available")
        try:
            why = _refusal(event, args, work, processes, network, () if relaxed[0] else readable)
        except Exception as e:  # noqa: BLE001 - fail closed: what cannot be checked is refused
            why = f"cannot check ({e!r})"
        if why is None:
            return
        line = f"{event}: {why}"
        with contextlib.suppress(OSError):
            _write(2, (BLOCKED + line).encode(errors="replace") + b"\n")
        _say(report_fd, secret, b"blocked " + line.encode(errors="replace"))
        raise PermissionError(f"sandbox refused {line}")

    return guard


def _read_roots(cfg: dict) -> list[str]:
    """What the guard lets a program open for reading besides its work folder (Landlock's list, as paths)."""
    from eval.confine import readable_paths

    return [*readable_paths(cfg["lib"], cfg["libraries"]), os.devnull]


def _refusal(event: str, args: tuple, work: str, processes: int, network: bool,
             readable: tuple[str, ...] = ()) -> str | None:
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
        if readable and not _inside(real, work) and not any(_inside(real, r) for r in readable):
            return f"read of {real} outside the sandbox"
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
