"""The sandbox against real programs and real escapes: each run is a real process, nothing is mocked.

Kernel layers are also tested alone (seccomp, the network namespace), in a child process without the
audit hook, so a test fails if the layer beneath the hook stops working.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from eval.errors import EvalError
from eval.sandbox import BLOCKED, OUTPUT_CAP, Limits, SandboxResult, run_python

REPO = str(Path(__file__).resolve().parent.parent)
QUICK = Limits(cpu_s=2, wall_s=10, memory_mb=256)


def run(source: str, limits: Limits = QUICK, **kw) -> SandboxResult:
    return run_python(textwrap.dedent(source), limits=limits, **kw)


def session_members(sid: int) -> list[int]:
    """Processes still alive in session `sid` (the sandbox starts a session of its own)."""
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[3]) == sid:
            pids.append(int(entry))
    return pids


def layer_alone(code: str) -> list[str]:
    """Run `code` in a plain interpreter (no audit hook) after `from eval import confine`."""
    prelude = f"import sys; sys.path.append({REPO!r}); from eval import confine\n"
    done = subprocess.run([sys.executable, "-I", "-S", "-c", prelude + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.fixture
def server():
    """A listening TCP socket on 127.0.0.1 whose backlog shows whether anyone connected."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        s.setblocking(False)
        yield s


def connections(server: socket.socket) -> int:
    try:
        conn, _ = server.accept()
    except BlockingIOError:
        return 0
    conn.close()
    return 1


def test_a_plain_program_reads_stdin_and_its_files_and_is_ok():
    result = run(
        """
        import dataclasses, os, sys, threading
        from helper import twice
        @dataclasses.dataclass
        class Point:
            x: int
        out = []
        t = threading.Thread(target=out.append, args=(twice(sys.stdin.read().strip()),))
        t.start(); t.join()
        print(Point(1), out[0], open('data/in.txt').read(), os.getcwd() == os.environ['HOME'])
        """,
        stdin="ab\n",
        files={"helper.py": "def twice(s):\n    return s * 2\n", "data/in.txt": "from a file"},
    )
    assert (result.status, result.returncode, result.ok) == ("ok", 0, True)
    assert result.stdout == "Point(x=1) abab from a file True\n"
    assert result.stderr == ""
    assert (result.isolation, result.disk) == ("netns", "tmpfs")


def test_an_exception_is_an_error_with_its_traceback():
    result = run(
        """
        def solve(nums):
            return nums[10]
        solve([1, 2])
        """
    )
    assert (result.status, result.returncode, result.ok) == ("error", 1, False)
    assert "IndexError: list index out of range" in result.stderr
    assert 'program.py", line 3, in solve' in result.stderr
    assert "_run_program" not in result.stderr  # the sandbox's own frame is cut from the traceback


def test_a_syntax_error_and_a_nonzero_exit_are_errors():
    broken = run("def f(:\n    pass\n")
    assert (broken.status, broken.returncode) == ("error", 1)
    assert "SyntaxError" in broken.stderr
    exited = run("import sys; print('partial'); sys.exit(3)")
    assert (exited.status, exited.returncode, exited.stdout) == ("error", 3, "partial\n")


def test_an_infinite_loop_stops_at_the_cpu_limit_and_leaves_nothing_behind():
    result = run("import os\nprint(os.getpid(), flush=True)\nwhile True:\n    pass\n",
                 Limits(cpu_s=1, wall_s=3))
    assert result.status == "cpu_limit"  # not 'timeout': the kernel's CPU limit ended it before the wall clock
    assert session_members(int(result.stdout)) == []


def test_a_sleeping_program_is_killed_at_the_wall_clock_with_its_output_so_far():
    result = run("import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)\n", Limits(wall_s=1))
    assert (result.status, result.returncode, result.stdout.strip().isdigit()) == ("timeout", -9, True)
    assert session_members(int(result.stdout)) == []


FORKS = {
    "os.fork in a loop": "for _ in range(100):\n    if os.fork() == 0:\n        time.sleep(60)\n",
    "subprocess.run": "import subprocess\nsubprocess.run(['sh', '-c', 'sleep 60'])\n",
    "os.system": "os.system('sleep 60 &')\n",
    "os.posix_spawn": "os.posix_spawn('/bin/sleep', ['sleep', '60'], {})\n",
    "multiprocessing": "import multiprocessing\nmultiprocessing.Process(target=time.sleep, args=(60,)).start()\n",
}


@pytest.mark.parametrize("attempt", FORKS.values(), ids=FORKS.keys())
def test_starting_processes_is_blocked_and_no_child_survives(attempt):
    result = run("import os, time\nprint(os.getpid(), flush=True)\n" + attempt)
    assert (result.status, result.returncode) == ("blocked", 1)
    assert BLOCKED in result.stderr and "starting processes is not allowed" in result.stderr
    assert session_members(int(result.stdout)) == []


def test_the_kernel_refuses_fork_and_spawn_without_the_hook_but_keeps_threads():
    said = layer_alone(
        """
        import os, subprocess, threading
        print(confine.seccomp_no_processes())
        t = threading.Thread(target=print, args=("thread",)); t.start(); t.join()
        for attempt in (os.fork, lambda: subprocess.run(["true"])):
            try:
                attempt()
                print("started")
            except OSError as e:
                print("errno", e.errno)
        """
    )
    assert said == ["True", "thread", "errno", "1", "errno", "1"]


@pytest.mark.parametrize("hog", ["x = bytearray(4 * 1024**3)", "x = []\nwhile True:\n    x.append(bytearray(1 << 20))"])
def test_a_memory_hog_stops_with_status_memory(hog):
    result = run(hog, Limits(cpu_s=5, wall_s=10, memory_mb=256))
    assert (result.status, result.returncode) == ("memory", 1)
    assert result.stderr.rstrip().endswith("MemoryError")


WRITES = {
    "open": "open(T, 'w').write('x')",
    "os.open": "os.open(T, os.O_WRONLY | os.O_CREAT)",
    "pathlib": "import pathlib\npathlib.Path(T).write_text('x')",
    "os.rename": "open('mine', 'w').write('x')\nos.rename('mine', T)",
    "shutil.copyfile": "import shutil\nopen('mine', 'w').write('x')\nshutil.copyfile('mine', T)",
    "../": "rel = os.path.relpath(T)\nassert rel.startswith('../'), rel\nopen(rel, 'w').write('x')",
    "symlink to the file": "os.symlink(T, 'link')\nopen('link', 'w').write('x')",
    "symlink to its folder": "os.symlink(os.path.dirname(T), 'd')\nopen('d/target.txt', 'w').write('x')",
}


@pytest.mark.parametrize("attempt", WRITES.values(), ids=WRITES.keys())
def test_writes_outside_the_sandbox_are_blocked(tmp_path, attempt):
    target = tmp_path / "target.txt"
    result = run(f"import os\nT = {str(target)!r}\n" + attempt)
    assert result.status == "blocked", result.stderr
    assert BLOCKED in result.stderr and str(target.parent) in result.stderr
    assert not target.exists()


CHANGES = {
    "os.chmod": "os.chmod(V, 0o777)",
    "os.truncate": "os.truncate(V, 0)",
    "os.remove": "os.remove(V)",
    "os.link": "os.link(V, 'hard')\nopen('hard', 'w').write('x')",
}


@pytest.mark.parametrize("attempt", CHANGES.values(), ids=CHANGES.keys())
def test_changes_to_an_existing_file_outside_are_blocked(tmp_path, attempt):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    victim.chmod(0o644)
    result = run(f"import os\nV = {str(victim)!r}\n" + attempt)
    assert result.status == "blocked", result.stderr
    assert victim.read_text() == "keep" and victim.stat().st_mode & 0o777 == 0o644


KERNEL_WRITES = {  # no audit event covers these: Landlock refuses them
    "os.mkfifo": "import os\nos.mkfifo(T)",
    "os.mknod": "import os\nos.mknod(T)",
    "sqlite ATTACH": "import sqlite3\nc = sqlite3.connect(':memory:')\n"
                     "c.execute(f\"attach database '{T}' as x\")\nc.execute('create table x.t(a)')",
}


@pytest.mark.parametrize("attempt", KERNEL_WRITES.values(), ids=KERNEL_WRITES.keys())
def test_the_kernel_refuses_writes_the_hook_cannot_see(tmp_path, attempt):
    target = tmp_path / "target"
    result = run(f"T = {str(target)!r}\n" + attempt)
    assert result.status == "error", result.stderr
    assert "PermissionError" in result.stderr or "unable to open database" in result.stderr
    assert not target.exists()


def test_writes_inside_the_sandbox_work():
    result = run(
        """
        import os, shutil, tempfile
        os.makedirs('a/b')
        open('a/b/x.txt', 'w').write('hello')
        os.rename('a/b/x.txt', 'a/y.txt')
        shutil.copyfile('a/y.txt', 'a/z.txt')
        with tempfile.NamedTemporaryFile('w', delete=False) as f:
            f.write('t')
        open('/dev/null', 'w').write('discarded')
        print(open('a/z.txt').read(), os.path.dirname(f.name) == os.getcwd())
        shutil.rmtree('a')
        """
    )
    assert (result.status, result.stdout, result.stderr) == ("ok", "hello True\n", "")


NETWORK = {
    "socket.connect": "s = socket.socket()\ns.settimeout(2)\ns.connect(('127.0.0.1', PORT))",
    "create_connection": "socket.create_connection(('127.0.0.1', PORT), timeout=2)",
    "urlopen": "import urllib.request\nurllib.request.urlopen(f'http://127.0.0.1:{PORT}/', timeout=2)",
}


@pytest.mark.parametrize("attempt", NETWORK.values(), ids=NETWORK.keys())
def test_network_is_refused_and_the_server_sees_nothing(server, attempt):
    result = run(f"import socket\nPORT = {server.getsockname()[1]}\n" + attempt)
    assert result.status == "blocked", result.stderr
    assert "network access is not allowed" in result.stderr
    assert connections(server) == 0


def test_the_network_namespace_alone_cuts_loopback(server):
    said = layer_alone(
        f"""
        import socket
        print(confine.unshare_network())
        try:
            socket.create_connection(("127.0.0.1", {server.getsockname()[1]}), timeout=2)
            print("connected")
        except OSError as e:
            print("errno", e.errno)
        """
    )
    assert said == ["True", "errno", "101"]  # ENETUNREACH: not even loopback is up in the namespace
    assert connections(server) == 0


def test_network_true_reaches_the_server(server):
    result = run(f"import socket\nsocket.create_connection(('127.0.0.1', {server.getsockname()[1]})).close()",
                 Limits(network=True))
    assert (result.status, result.isolation) == ("ok", "none")
    assert connections(server) == 1


def test_a_file_over_file_mb_is_an_error():
    result = run("open('big', 'wb').write(b'x' * (2 << 20))", Limits(file_mb=1))
    assert result.status == "error"
    assert "File too large" in result.stderr


def test_stdout_over_the_cap_is_cut_not_hung():
    result = run("import sys\nsys.stdout.write('x' * (3 * OUT))\nprint('done', file=sys.stderr)".replace(
        "OUT", str(OUTPUT_CAP)))
    assert (result.status, result.stderr) == ("ok", "done\n")
    assert result.stdout == "x" * OUTPUT_CAP  # and 'ok', not 'timeout': the pipe was drained past the cap


@pytest.mark.parametrize("attempt", [
    "import os\nos.kill(os.getppid(), 0)",
    "import sys\nsys.addaudithook(lambda *a: None)",
    "import os\nopen(f'/proc/{os.getppid()}/environ').read()",
    "import ctypes",
    "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (100, 100))",
], ids=["signal the parent", "add an audit hook", "read the parent's environment", "ctypes", "raise a limit"])
def test_other_escapes_are_blocked(attempt):
    result = run(attempt)
    assert result.status == "blocked", result.stderr
    assert result.stderr.count(BLOCKED) >= 1


@pytest.mark.parametrize("files", [{"../x.py": ""}, {"/tmp/x.py": ""}, {"a/../../x.py": ""}, {"": ""},
                                   {"a//b": ""}])
def test_a_file_name_that_escapes_is_misuse(files):
    with pytest.raises(EvalError, match="plain relative path"):
        run_python("pass", files=files)


def test_limits_that_cannot_hold_are_misuse():
    with pytest.raises(EvalError, match="positive"):
        run_python("pass", limits=Limits(cpu_s=0))


def test_the_temporary_directory_is_removed_even_when_the_program_locks_it():
    result = run("import os\nos.makedirs('a/b')\nos.chmod('a', 0)\nos.chmod('.', 0)\nprint(os.getcwd())")
    assert result.status == "ok"
    assert not os.path.exists(os.path.dirname(result.stdout.strip()))


# ---- reads, sockets, disk, native code, environment: each layer named --------------------------------------

def kernel_layers(code: str, tmp_path: Path) -> list[str]:
    """`code` after stage 1's kernel layers (no audit hook), in a child with `work` = tmp_path/work."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return layer_alone(f"import os\nWORK = {str(work)!r}\n" + textwrap.dedent(code))


def test_reads_outside_the_work_folder_are_refused_by_the_hook(tmp_path, monkeypatch):
    bench = next(Path(REPO).parent.glob("shared/datasets/debugbench/*.json"), None) or Path(REPO, "README.md")
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE")
    for target in (bench, home / ".ssh" / "id_ed25519", Path(REPO, "README.md")):
        result = run(f"print(open({str(target)!r}).read()[:20])")
        assert (result.status, result.stdout) == ("blocked", ""), result.stderr
        assert f"read of {target.resolve()} outside the sandbox" in result.stderr
    allowed = run("import json, sortedcontainers\nprint(json.dumps([1]), sortedcontainers.SortedList([2, 1]))")
    assert (allowed.status, allowed.stdout) == ("ok", "[1] SortedList([1, 2])\n"), allowed.stderr


def test_the_kernel_refuses_those_reads_without_the_hook(tmp_path):
    secret = tmp_path / "answers.json"
    secret.write_text("{}")
    said = kernel_layers(
        f"""
        print(confine.landlock(WORK, False, confine.read_roots()))
        open(os.path.join(WORK, "mine"), "w").write("x")
        print(open(os.path.join(WORK, "mine")).read())
        import json  # the standard library stays readable
        for path in ({str(secret)!r}, "/proc/self/status", {str(Path(REPO, "README.md"))!r}):
            try:
                open(path).read()
                print("read")
            except OSError as e:
                print("errno", e.errno)
        """, tmp_path)
    assert said == ["True", "x", "errno", "13", "errno", "13", "errno", "13"]  # EACCES from Landlock


@pytest.fixture
def unix_server(tmp_path):
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(path)
        s.listen()
        s.setblocking(False)
        yield path, s


@pytest.fixture
def udp_server():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        yield s


def datagrams(server: socket.socket) -> int:
    try:
        server.recv(100)
    except BlockingIOError:
        return 0
    return 1


def test_unix_and_udp_sockets_are_refused_and_nothing_arrives(unix_server, udp_server):
    path, listener = unix_server
    # socket(AF_UNIX): the kernel (seccomp) refuses it beneath the hook, which lets AF_UNIX through for socketpair
    unix = run(f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({path!r})")
    assert unix.status == "error" and "PermissionError: [Errno 1] Operation not permitted" in unix.stderr
    # connect on the one Unix socket a program can have (a socketpair's): the hook refuses it
    paired = run(f"import socket\ns = socket.socketpair()[0]\ns.connect({path!r})")
    assert paired.status == "blocked" and "socket.connect: network access is not allowed" in paired.stderr
    udp = run(f"import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', "
              f"('127.0.0.1', {udp_server.getsockname()[1]}))")
    assert udp.status == "blocked" and "network access is not allowed" in udp.stderr
    assert connections(listener) == 0 and datagrams(udp_server) == 0


def test_seccomp_alone_refuses_every_socket_but_a_unix_stream_pair(unix_server, udp_server, tmp_path):
    _path, listener = unix_server
    said = kernel_layers(
        """
        import socket
        print(confine.seccomp_no_sockets())
        a, b = socket.socketpair()
        a.sendall(b"ok"); print(b.recv(2).decode())
        for family, kind in ((socket.AF_UNIX, socket.SOCK_STREAM), (socket.AF_INET, socket.SOCK_DGRAM),
                             (socket.AF_INET6, socket.SOCK_STREAM), (socket.AF_NETLINK, socket.SOCK_RAW)):
            try:
                socket.socket(family, kind)
                print("created")
            except OSError as e:
                print("errno", e.errno)
        try:
            socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            print("created")
        except OSError as e:
            print("errno", e.errno)
        """, tmp_path)
    assert said == ["True", "ok"] + ["errno", "1"] * 5  # EPERM from the seccomp filter
    assert connections(listener) == 0 and datagrams(udp_server) == 0


def test_the_network_namespace_alone_has_no_route_for_udp(udp_server, tmp_path):
    said = kernel_layers(
        f"""
        import socket
        print(confine.unshare_network())
        try:
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", {udp_server.getsockname()[1]}))
            print("sent")
        except OSError as e:
            print("errno", e.errno)
        """, tmp_path)
    assert said == ["True", "errno", "101"]  # ENETUNREACH
    assert datagrams(udp_server) == 0


def test_signals_out_are_refused_by_landlock_scoping_without_the_hook(tmp_path):
    said = kernel_layers(
        """
        print(confine.landlock(WORK, False))
        try:
            os.kill(os.getppid(), 0)
            print("delivered")
        except OSError as e:
            print("errno", e.errno)
        os.kill(os.getpid(), 0)
        print("own process ok")
        """, tmp_path)
    assert said == ["True", "errno", "1", "own", "process", "ok"]  # EPERM: Landlock's signal scope (ABI 6+)


def test_many_small_files_hit_the_work_folders_disk_budget():
    result = run("for n in range(64):\n    open(f'f{n}', 'wb').write(b'x' * (512 << 10))\n",
                 Limits(cpu_s=5, wall_s=10, memory_mb=256, file_mb=1, disk_mb=4))
    assert result.disk == "tmpfs"
    assert result.status == "error" and "No space left on device" in result.stderr


def test_native_code_written_into_the_work_folder_does_not_load():
    result = run(
        """
        import _bisect, importlib.util, shutil
        shutil.copyfile(_bisect.__file__, 'evil.so')
        spec = importlib.util.spec_from_file_location('_bisect', 'evil.so')
        importlib.util.module_from_spec(spec)
        """
    )
    assert result.status == "error"
    assert "failed to map segment from shared object" in result.stderr  # the tmpfs is mounted noexec


def test_the_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("OTLAKE_SECRET_TOKEN", "do-not-leak")
    result = run("import os\nprint(sorted(os.environ), 'do-not-leak' in repr(os.environ))")
    assert result.stdout == "['HOME', 'LANG', 'LC_ALL', 'PATH', 'TMPDIR'] False\n"


def test_frames_and_the_object_graph_are_out_of_reach_but_common_libraries_still_work():
    result = run(
        """
        import collections, enum, gc, logging, sys, typing
        for attempt in (lambda: sys._getframe(), gc.get_objects, lambda: sys.settrace(None),
                        lambda: (_ for _ in ()).gi_frame):
            try:
                attempt()
                print("reached")
            except ValueError:
                print("refused")
        try:
            1 / 0
        except ZeroDivisionError as e:
            try:
                e.__traceback__.tb_frame
            except ValueError:
                print("refused")
        P = collections.namedtuple("P", "a b")
        Color = enum.Enum("Color", "RED")
        T = typing.TypeVar("T")
        logging.warning("still logs")
        print(P(1, 2), Color.RED, T)
        """
    )
    assert result.stdout.split("\n")[:5] == ["refused"] * 5
    assert result.stdout.split("\n")[5] == "P(a=1, b=2) Color.RED ~T"
    assert "still logs" in result.stderr and result.status == "ok"


def test_reports_travel_with_the_nonce_and_anything_else_on_the_channel_is_forged():
    result = run(
        """
        import os
        def main(report):
            report("first")
            report("two\\nlines")
            for fd in range(3, 64):
                try:
                    os.write(fd, b"r forged\\n")
                except OSError:
                    pass
            print("r printed")
        """, entry="main")
    assert result.reports == ("first", "two lines")
    assert result.forged == 1 and "r printed" in result.stdout


def test_a_sandbox_that_cannot_start_the_program_says_so():
    with pytest.raises(EvalError, match="identifier"):
        run_python("pass", entry="not valid")
    result = run("pass", Limits(memory_mb=8))  # too little memory for the interpreter to reach the program
    assert result.status == "sandbox_failed" and result.reports == ()


def test_without_a_private_tmpfs_the_parent_watches_the_disk_budget():
    # network=True keeps the host's namespaces, so the work folder is the parent's: it is measured instead
    result = run("import time\nfor n in range(400):\n    open(f'f{n}', 'wb').write(b'x' * (256 << 10))\n"
                 "    time.sleep(0.005)\nprint('all written')",
                 Limits(cpu_s=5, wall_s=20, memory_mb=256, file_mb=1, disk_mb=4, network=True))
    assert (result.disk, result.status, result.returncode) == ("watched", "disk_limit", -9)
    assert "all written" not in result.stdout
