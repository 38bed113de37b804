"""Sample repls and helpers shared by the lsp_runner tests (real pyright and ruff processes)."""

from __future__ import annotations

import time

# a beginner's repl: an import between files, a typo'd attribute, a wrong call, a stray semicolon
REPL = {
    "main.py": (
        "import os\n"
        "import turtle\n"
        "from helpers import greet\n"
        "\n"
        "screen = turtle.screen\n"
        'greet("ada", 2)\n'
        "print(undefined_name);\n"
    ),
    "helpers.py": 'def greet(name):\n    return f"hi {name}"\n',
    "pkg/__init__.py": "",
    "pkg/util.py": "from helpers import greet\n\ngreet()\n",
    "README.md": "# not Python\n",
}


def keys(diagnostics) -> set[tuple[str, str, int, int]]:
    """(path, code, start line, start character) of each diagnostic."""
    return {(d.path, d.code, d.start_line, d.start_character) for d in diagnostics}


def assert_gone(pids, timeout_s: float = 10.0) -> None:
    """Every pid has exited (and been reaped)."""
    deadline = time.monotonic() + timeout_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _alive(pid)]
        if alive:
            time.sleep(0.05)
    assert not alive, f"still running: {alive}"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


def expected_main() -> set[tuple[str, str, int, int]]:
    """What REPL's main.py must show, pyright and ruff merged."""
    return {
        ("main.py", "ruff[I001]", 0, 0),
        ("main.py", "ruff[F401]", 0, 7),
        ("main.py", "pyright[reportAttributeAccessIssue]", 4, 16),
        ("main.py", "pyright[reportCallIssue]", 5, 13),
        ("main.py", "pyright[reportUndefinedVariable]", 6, 6),
        ("main.py", "ruff[F821]", 6, 6),
        ("main.py", "ruff[E703]", 6, 21),
    }

