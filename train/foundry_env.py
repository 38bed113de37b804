"""LLM Foundry's own environment (envs/train: torch 2.7, transformers <4.52), reached through subprocesses.

LLM Foundry 0.22 pins huggingface-hub <0.34 and the default environment's litellm needs >=0.34, so the two
cannot be one uv environment. `make train-env` builds envs/train/.venv; $OTLAKE_TRAIN_PYTHON points at
another interpreter that has llm-foundry installed.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from .errors import TrainError

ROOT = Path(__file__).resolve().parents[1]
ENV_DIR = ROOT / "envs" / "train"
TASKS = Path(__file__).resolve().with_name("foundry_tasks.py")
ENV_PYTHON = "OTLAKE_TRAIN_PYTHON"


def python() -> Path:
    """The train environment's interpreter, or a clear error saying how to install it."""
    configured = os.environ.get(ENV_PYTHON)
    path = Path(configured) if configured else ENV_DIR / ".venv" / "bin" / "python"
    if not path.exists():
        raise TrainError(f"LLM Foundry's environment is not installed ({path} is missing): run `make train-env` "
                         f"(about 2 minutes and 7 GB: torch 2.7 from PyPI is its CUDA build), or set "
                         f"{ENV_PYTHON} to a python that has llm-foundry 0.22")
    return path


def env() -> dict[str, str]:
    """The environment of a training process: offline (no hub on these machines), quiet, unbuffered."""
    out = dict(os.environ)
    out.pop("PYTHONPATH", None)  # the default environment's packages must not leak into the train one
    out.setdefault("HF_HUB_OFFLINE", "1")
    out.setdefault("HF_DATASETS_OFFLINE", "1")
    out.setdefault("TRANSFORMERS_OFFLINE", "1")
    out.setdefault("TOKENIZERS_PARALLELISM", "false")
    out.setdefault("PYTHONWARNINGS", "ignore")
    out["PYTHONUNBUFFERED"] = "1"
    return out


def bin_path(name: str) -> Path:
    """A console script of the train environment (llmfoundry, composer)."""
    return python().parent / name


def task(*args: str, timeout: float | None = None) -> dict:
    """Run one job of foundry_tasks.py in the train environment; its JSON result, or TrainError with its words."""
    cmd = [str(python()), str(TASKS), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise TrainError(f"{args[0]} in the train environment took longer than {timeout:.0f} s") from None
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise TrainError(f"{args[0]} in the train environment failed (exit {proc.returncode}): "
                         + " | ".join(tail))
    if "error" in result:
        raise TrainError(f"{args[0]}: {result['error']}")
    return result
