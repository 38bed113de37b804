"""Stage 1 of the sandbox's child (eval.sandbox): the kernel confines the process before it execs stage 2.

Where the kernel offers them: a user + network + mount namespace (no network at all; the work folder a
size-bounded tmpfs mounted noexec, so the run's files have one disk budget and no native code loads from
them), Landlock (reads only of the work folder, the interpreter and its standard library; writes only
under the work folder; no TCP; no signals or abstract sockets out), seccomp (no fork, vfork or process
clone when processes=0, threads stay allowed; no socket but a Unix stream socketpair without network)
and rlimits. Each layer returns whether it took: a kernel without one leaves stage 2's audit hook (and
the parent's disk watch) to refuse alone. ctypes is loaded only here.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import shutil
import struct
import sysconfig

_CLONE_NEWNS, _CLONE_NEWUSER, _CLONE_NEWNET, _CLONE_THREAD = 0x00020000, 0x10000000, 0x40000000, 0x00010000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REC, _MS_PRIVATE = 0x2, 0x4, 0x8, 0x4000, 0x40000
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_LL_EXECUTE, _LL_WRITE_FILE, _LL_READ_FILE, _LL_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_LL_REFER, _LL_TRUNCATE = 1 << 13, 1 << 14
_LL_FS_V1 = sum(1 << b for b in (1, 4, 5, 6, 7, 8, 9, 10, 11, 12))  # write, remove and make-anything rights
_LL_READ = _LL_READ_FILE | _LL_READ_DIR
# machine: (AUDIT_ARCH, clone, clone3, syscalls that always start a process,
#           socket, socketpair, syscalls that reach out from a socket: connect bind listen accept accept4)
_ARCH = {"x86_64": (0xC000003E, 56, 435, (57, 58), 41, 53, (42, 49, 50, 43, 288)),
         "aarch64": (0xC00000B7, 220, 435, (), 198, 199, (203, 200, 201, 202, 242))}
_AF_UNIX, _SOCK_STREAM = 1, 1
_LD, _JEQ, _JGE, _JSET, _AND, _RET = 0x20, 0x15, 0x35, 0x45, 0x54, 0x06  # classic BPF opcodes
_ALLOW, _KILL, _EPERM, _ENOSYS = 0x7FFF0000, 0x80000000, 0x00050001, 0x00050026


def confine(cfg: dict) -> None:
    """Apply every layer the kernel offers to this process, as the run's config (sandbox._run) asks."""
    isolation, private_mounts = ("none", False) if cfg["network"] else unshare()
    disk = private_mounts and mount_work(cfg["work"], cfg["disk_mb"])
    stage_files(cfg["staged"], cfg["work"])
    os.chdir(cfg["work"])  # the working directory was the folder the tmpfs now covers
    os.write(cfg["report_fd"], f"isolation {isolation}\ndisk {'tmpfs' if disk else 'watched'}\n".encode())
    landlock(cfg["work"], cfg["network"], read_roots(cfg["lib"], cfg["libraries"]))
    no_fork = cfg["processes"] == 0 and seccomp_no_processes()
    if not cfg["network"]:
        seccomp_no_sockets()
    mb = 1 << 20
    cpu = max(1, math.ceil(cfg["cpu_s"]))
    wanted = [(resource.RLIMIT_CPU, cpu, cpu + 1), (resource.RLIMIT_AS, cfg["memory_mb"] * mb, None),
              (resource.RLIMIT_FSIZE, cfg["file_mb"] * mb, None), (resource.RLIMIT_CORE, 0, None)]
    if cfg["processes"] == 0 and not no_fork:
        wanted.append((resource.RLIMIT_NPROC, 0, None))
    elif cfg["processes"] and isolation == "netns":  # counted afresh in the new user namespace (not for root)
        wanted.append((resource.RLIMIT_NPROC, 1 + cfg["processes"], None))
    for which, soft, hard in wanted:
        old_hard = resource.getrlimit(which)[1]
        hard = soft if hard is None else hard
        hard = hard if old_hard == resource.RLIM_INFINITY else min(hard, old_hard)
        resource.setrlimit(which, (min(soft, hard), hard))


def readable_paths(lib: str | None, libraries: tuple[str, ...] | list[str]) -> list[str]:
    """The paths of read_roots whose files may be read (not those that may only be listed)."""
    return [p for p, rights in read_roots(lib, libraries).items() if rights & _LL_READ_FILE]


def read_roots(lib: str | None = None, libraries: tuple[str, ...] | list[str] = ()) -> dict[str, int]:
    """What stage 2 may read (path -> Landlock rights): the interpreter, its standard library and shared
    libraries, the sandbox's own modules, and the packages linked into `lib` (LeetCode's sortedcontainers);
    the repository itself only as a listing (imports need it)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rights = {os.path.realpath(p): _LL_READ | _LL_EXECUTE
              for p in {sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib"),
                        sysconfig.get_config_var("LIBDIR") or "/usr/lib",
                        "/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib"}
              if p and os.path.isdir(p)}
    import sys

    rights[os.path.realpath(sys.executable)] = _LL_READ_FILE | _LL_EXECUTE
    rights[os.path.join(repo, "eval")] = _LL_READ  # stage 2 imports eval.child (and eval.confine)
    rights.setdefault(repo, _LL_READ_DIR)
    for path in libraries:
        rights[os.path.realpath(path)] = _LL_READ
    if lib:
        rights[lib] = _LL_READ_DIR
    if os.path.isfile("/etc/ld.so.cache"):
        rights["/etc/ld.so.cache"] = _LL_READ_FILE
    return rights


def _libc():
    """ctypes and libc, with no_new_privs set (Landlock and seccomp need it); stage 1 only."""
    import ctypes  # stage 2 is a fresh interpreter in which ctypes is refused

    libc = ctypes.CDLL(None, use_errno=True)
    libc["prctl"](_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    return ctypes, libc


def unshare() -> tuple[str, bool]:
    """New user, network and mount namespaces where the kernel allows: ('netns', mounts are ours) or ('guard', False)."""
    _, libc = _libc()
    uid, gid = os.getuid(), os.getgid()
    for flags in (_CLONE_NEWUSER | _CLONE_NEWNET | _CLONE_NEWNS, _CLONE_NEWUSER | _CLONE_NEWNET):
        if libc["unshare"](flags) == 0:
            for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
                with contextlib.suppress(OSError), open(f"/proc/self/{name}", "w") as f:
                    f.write(text)  # without the maps, only what getuid() reports inside changes
            return "netns", bool(flags & _CLONE_NEWNS)
    return ("netns" if libc["unshare"](_CLONE_NEWNET) == 0 else "guard"), False  # root where user namespaces are off


def unshare_network() -> bool:
    """A network namespace of our own (with a user namespace where allowed): no network at all."""
    return unshare()[0] == "netns"


def mount_work(work: str, disk_mb: int) -> bool:
    """Mount a private tmpfs of `disk_mb` MiB on `work`: noexec (no native code loads from it), nosuid, nodev."""
    ctypes, libc = _libc()
    mount = libc["mount"]
    mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    if mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:  # nothing we mount leaks out
        return False
    options = f"size={disk_mb}m,mode=0700,nr_inodes={max(1024, disk_mb * 256)}".encode()
    return mount(b"tmpfs", os.fsencode(work), b"tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, options) == 0


def stage_files(staged: str, work: str) -> None:
    """Copy the run's files (written by the parent under `staged`) into the work folder."""
    if os.path.isdir(staged):
        shutil.copytree(staged, work, dirs_exist_ok=True)


def landlock(work: str, network: bool, roots: dict[str, int] | None = None) -> bool:
    """Refuse reads outside `roots` and `work`, writes outside `work` (and /dev/null), TCP unless `network`,
    and signals out of the sandbox. roots=None leaves reads alone."""
    if os.uname().machine not in _ARCH:
        return False
    ctypes, libc = _libc()
    syscall, c_long = libc["syscall"], ctypes.c_long
    syscall.restype = c_long
    abi = syscall(c_long(444), None, c_long(0), c_long(1))  # LANDLOCK_CREATE_RULESET_VERSION
    if abi < 1:
        return False
    write = _LL_FS_V1 | (_LL_REFER if abi >= 2 else 0) | (_LL_TRUNCATE if abi >= 3 else 0)
    fs = write | (0 if roots is None else _LL_READ | _LL_EXECUTE)
    net = 0 if network or abi < 4 else 3  # bind and connect TCP
    scoped = (2 if network else 3) if abi >= 6 else 0  # signals; abstract unix sockets
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = syscall(c_long(444), struct.pack("QQQ", fs, net, scoped)[:size], c_long(size), c_long(0))
    if ruleset < 0:
        return False
    file_rights = _LL_EXECUTE | _LL_WRITE_FILE | _LL_READ_FILE | _LL_TRUNCATE
    rules = {work: write | (fs & _LL_READ), os.devnull: (_LL_WRITE_FILE | _LL_TRUNCATE | _LL_READ_FILE)}
    for path, rights in (roots or {}).items():
        rules.setdefault(path, rights)
    try:
        for path, allowed in rules.items():
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a root that is not there is nothing to allow
            try:
                if not os.path.isdir(path):
                    allowed &= file_rights
                rule = struct.pack("=Qi", allowed & fs, fd)  # struct landlock_path_beneath_attr (packed)
                if syscall(c_long(445), c_long(ruleset), c_long(1), rule, c_long(0)) != 0:
                    return False
            finally:
                os.close(fd)
        return syscall(c_long(446), c_long(ruleset), c_long(0)) == 0
    finally:
        os.close(ruleset)


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def _install(prog: list[bytes]) -> bool:
    ctypes, libc = _libc()
    code = ctypes.create_string_buffer(b"".join(prog), 8 * len(prog))
    fprog = struct.pack("@HP", len(prog), ctypes.addressof(code))  # struct sock_fprog
    return libc["prctl"](_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, fprog, 0, 0) == 0


def _head(audit_arch: int) -> list[bytes]:
    """Kill a call of another architecture, refuse x32 numbers, then load the syscall number."""
    return [_op(_LD, 4), _op(_JEQ, audit_arch, 1), _op(_RET, _KILL), _op(_LD, 0),
            _op(_JGE, 0x40000000, 0, 1), _op(_RET, _EPERM)]


def seccomp_no_processes() -> bool:
    """Make fork, vfork and clone of a process fail with EPERM (threads stay allowed); exec is kept."""
    arch = _ARCH.get(os.uname().machine)
    if arch is None:
        return False
    audit_arch, clone, clone3, forks = arch[:4]
    prog = [*_head(audit_arch), _op(_JEQ, clone3, 0, 1), _op(_RET, _ENOSYS)]  # clone3 hides its flags: libc falls back
    for nr in forks:
        prog += [_op(_JEQ, nr, 0, 1), _op(_RET, _EPERM)]
    prog += [_op(_JEQ, clone, 0, 3), _op(_LD, 16), _op(_JSET, _CLONE_THREAD, 1), _op(_RET, _EPERM), _op(_RET, _ALLOW)]
    return _install(prog)


def seccomp_no_sockets() -> bool:
    """Make socket() of every family, and connect, bind, listen and accept, fail with EPERM; a Unix stream
    socketpair (asyncio's wake-up pipe) stays allowed, since it reaches nothing outside the process."""
    arch = _ARCH.get(os.uname().machine)
    if arch is None:
        return False
    audit_arch, socket_nr, socketpair_nr, reach = arch[0], arch[4], arch[5], arch[6]
    prog = _head(audit_arch)
    for nr in (socket_nr, *reach):
        prog += [_op(_JEQ, nr, 0, 1), _op(_RET, _EPERM)]
    prog += [_op(_JEQ, socketpair_nr, 1, 0), _op(_RET, _ALLOW),
             _op(_LD, 16), _op(_JEQ, _AF_UNIX, 1, 0), _op(_RET, _EPERM),  # args[0]: the family
             _op(_LD, 24), _op(_AND, 0xF), _op(_JEQ, _SOCK_STREAM, 1, 0), _op(_RET, _EPERM),  # args[1]: the type
             _op(_RET, _ALLOW)]
    return _install(prog)
