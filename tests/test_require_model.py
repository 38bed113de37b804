"""OTLAKE_REQUIRE_MODEL=1 turns a test's skip for a missing model into a failure (CI cannot go green without it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REQUIRE_MODEL

ROOT = Path(__file__).resolve().parents[1]
REASON = "the model wheels cannot be fetched here (no package index?): pip said no"
PROBE = f"""
from tests.conftest import skip_or_fail


def test_needs_the_model():
    skip_or_fail({REASON!r})
"""


def run_probe(folder: Path, require: str | None) -> subprocess.CompletedProcess:
    """pytest -rs on a one-test file that calls skip_or_fail, in a process of its own."""
    (folder / "pytest.ini").write_text("[pytest]\n")  # its own rootdir: none of this repository's options
    (folder / "test_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != REQUIRE_MODEL and not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if require is not None:
        env[REQUIRE_MODEL] = require
    return subprocess.run([sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", "-p", "no:xdist",
                           str(folder / "test_probe.py")], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_a_missing_model_skips_with_its_reason_by_default(tmp_path):
    proc = run_probe(tmp_path, None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 skipped" in proc.stdout and "failed" not in proc.stdout
    assert f"SKIPPED [1] test_probe.py:6: {REASON}" in proc.stdout  # -rs prints why


@pytest.mark.parametrize("value", ["0", ""])
def test_zero_or_empty_is_off(tmp_path, value):
    proc = run_probe(tmp_path, value)
    assert proc.returncode == 0 and "1 skipped" in proc.stdout, proc.stdout + proc.stderr


def test_with_require_model_the_skip_is_a_failure_with_the_same_reason(tmp_path):
    proc = run_probe(tmp_path, "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed" in proc.stdout and "skipped" not in proc.stdout
    assert f"{REASON} ({REQUIRE_MODEL}=1: a missing model fails the run)" in proc.stdout
