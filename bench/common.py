"""Shared helpers: timing with medians, machine description, result files, checkouts of other commits."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(os.environ.get("OTLAKE_BENCH_DIR", "bench-data"))
ROOT = Path(__file__).resolve().parents[1]  # this checkout


def median_time(fn, repeat: int = 5) -> tuple[float, list[float]]:
    """Median wall time of fn() over repeat runs (and all the runs)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {cpu}, {mem:.0f} GiB RAM, Python {platform.python_version()}, {platform.system()}"


def git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def save(name: str, result: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine(), "git": git_rev(), **result}
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


def checkout(rev: str, src: Path) -> Path:
    """A worktree of git revision `rev` at `src` with its own locked environment (`uv sync --frozen`).

    Made once; reused while its .venv exists. Returns `src`, resolved.
    """
    src = Path(src).resolve()
    if not (src / ".venv").exists():
        shutil.rmtree(src, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=True)
        subprocess.run(["git", "worktree", "add", "--detach", "--force", str(src), rev], cwd=ROOT, check=True,
                       capture_output=True)
        uv = shutil.which("uv") or f"{sys.executable} -m uv"
        subprocess.run(f"{uv} sync --frozen --quiet", shell=True, cwd=src, check=True,
                       env={**os.environ, "UV_LINK_MODE": "copy", "VIRTUAL_ENV": ""})
    return src


def run_script(src: Path, script: str, args: list, what: str, python: str | None = None,
               env: dict | None = None) -> dict:
    """`python -c script args` in checkout `src` (its code first on sys.path), by its own environment's Python
    unless `python` is given; the JSON object on the last line of its stdout. RuntimeError if it fails."""
    done = subprocess.run([python or str(Path(src) / ".venv" / "bin" / "python"), "-c", script, *map(str, args)],
                          cwd=src, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
