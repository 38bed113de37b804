"""Stage 1 of the sandbox's child (eval.sandbox): the kernel confines the process before it execs stage 2.

Where the kernel offers them: a user + network namespace (no network at all), Landlock (writes only
under the run's directory, no TCP, no signals or abstract sockets out), seccomp (no fork, vfork or
process clone when processes=0; threads stay allowed) and rlimits. Each layer returns whether it
took: a kernel without one leaves stage 2's audit hook to refuse alone. ctypes is loaded only here.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import struct

_CLONE_NEWUSER, _CLONE_NEWNET, _CLONE_THREAD = 0x10000000, 0x40000000, 0x00010000
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_LL_WRITE_FILE, _LL_REFER, _LL_TRUNCATE = 1 << 1, 1 << 13, 1 << 14
_LL_FS_V1 = sum(1 << b for b in (1, 4, 5, 6, 7, 8, 9, 10, 11, 12))  # write, remove and make-anything rights
# machine: (AUDIT_ARCH, clone, clone3, syscalls that always start a process); Landlock is 444-446 on both
_ARCH = {"x86_64": (0xC000003E, 56, 435, (57, 58)), "aarch64": (0xC00000B7, 220, 435, ())}


def confine(cfg: dict) -> None:
    """Apply every layer the kernel offers to this process, as the run's config (sandbox._run) asks."""
    isolation = "none" if cfg["network"] else "netns" if unshare_network() else "guard"
    os.write(cfg["report_fd"], f"isolation {isolation}\n".encode())
    landlock(cfg["work"], cfg["network"])
    no_fork = cfg["processes"] == 0 and seccomp_no_processes()
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


def _libc():
    """ctypes and libc, with no_new_privs set (Landlock and seccomp need it); stage 1 only."""
    import ctypes  # stage 2 is a fresh interpreter in which ctypes is refused

    libc = ctypes.CDLL(None, use_errno=True)
    libc["prctl"](_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    return ctypes, libc


def unshare_network() -> bool:
    _, libc = _libc()
    uid, gid = os.getuid(), os.getgid()
    if libc["unshare"](_CLONE_NEWUSER | _CLONE_NEWNET) == 0:
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with contextlib.suppress(OSError), open(f"/proc/self/{name}", "w") as f:
                f.write(text)  # without the maps, only what getuid() reports inside changes
        return True
    return libc["unshare"](_CLONE_NEWNET) == 0  # root where user namespaces are off


def landlock(work: str, network: bool) -> bool:
    """Refuse writes outside `work` (and /dev/null), TCP unless `network`, and signals out of the sandbox."""
    if os.uname().machine not in _ARCH:
        return False
    ctypes, libc = _libc()
    syscall, c_long = libc["syscall"], ctypes.c_long
    syscall.restype = c_long
    abi = syscall(c_long(444), None, c_long(0), c_long(1))  # LANDLOCK_CREATE_RULESET_VERSION
    if abi < 1:
        return False
    fs = _LL_FS_V1 | (_LL_REFER if abi >= 2 else 0) | (_LL_TRUNCATE if abi >= 3 else 0)
    net = 0 if network or abi < 4 else 3  # bind and connect TCP
    scoped = (2 if network else 3) if abi >= 6 else 0  # signals; abstract unix sockets
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = syscall(c_long(444), struct.pack("QQQ", fs, net, scoped)[:size], c_long(size), c_long(0))
    if ruleset < 0:
        return False
    try:
        for path, allowed in ((work, fs), (os.devnull, fs & (_LL_WRITE_FILE | _LL_TRUNCATE))):
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = struct.pack("=Qi", allowed, fd)  # struct landlock_path_beneath_attr (packed)
                if syscall(c_long(445), c_long(ruleset), c_long(1), rule, c_long(0)) != 0:
                    return False
            finally:
                os.close(fd)
        return syscall(c_long(446), c_long(ruleset), c_long(0)) == 0
    finally:
        os.close(ruleset)


def seccomp_no_processes() -> bool:
    """Make fork, vfork and clone of a process fail with EPERM (threads stay allowed); exec is kept."""
    arch = _ARCH.get(os.uname().machine)
    if arch is None:
        return False
    audit_arch, clone, clone3, forks = arch
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06  # classic BPF opcodes
    allow, kill, eperm, enosys = 0x7FFF0000, 0x80000000, 0x00050001, 0x00050026

    def op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
        return struct.pack("HBBI", code, jt, jf, k)

    prog = [op(ld, 4), op(jeq, audit_arch, 1), op(ret, kill), op(ld, 0),
            op(jge, 0x40000000, 0, 1), op(ret, eperm),  # x32 numbers on x86_64
            op(jeq, clone3, 0, 1), op(ret, enosys)]  # clone3 hides its flags: libc falls back to clone
    for nr in forks:
        prog += [op(jeq, nr, 0, 1), op(ret, eperm)]
    prog += [op(jeq, clone, 0, 3), op(ld, 16), op(jset, _CLONE_THREAD, 1), op(ret, eperm), op(ret, allow)]
    ctypes, libc = _libc()
    code = ctypes.create_string_buffer(b"".join(prog), 8 * len(prog))
    fprog = struct.pack("@HP", len(prog), ctypes.addressof(code))  # struct sock_fprog
    return libc["prctl"](_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, fprog, 0, 0) == 0
