"""`otlake train run`: LLM Foundry's own entry point on a YAML, with progress, metrics and a resumable folder.

A run folder (the parent of the YAML's save_folder) holds run.yaml (what ran, overrides applied), train.log
(every attempt's full output), metrics.jsonl (one row per logged batch and eval, parsed from Composer's console
logger), loss.png and checkpoints/. `autoresume: true` with a fixed run_name makes a second `train run` of a
killed run start from its latest checkpoint.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import config as config_mod
from . import foundry_env
from .errors import TrainError

BATCH = re.compile(r"^\[batch=(\d+)/(\d+)\]:")
EVAL = re.compile(r"^\[Eval batch=(\d+)/(\d+)\]")
VALUE = re.compile(r"^\s+(Train|Eval) ([\w/.-]+): (-?[\d.]+(?:[eE][+-]?\d+)?|nan|inf)\s*$")
ERROR = re.compile(r"\b([A-Z]\w*(?:Error|Exception)): (.+)$")


@dataclass
class RunResult:
    run_dir: Path
    batches: int
    total_batches: int | None
    first_loss: float | None
    last_loss: float | None
    resumed: bool
    seconds: float
    gpus: int

    def summary(self) -> str:
        loss = (f"loss {self.first_loss:.4f} -> {self.last_loss:.4f}" if self.first_loss is not None
                and self.last_loss is not None else "no loss logged")
        return (f"{self.batches} batches{' (resumed)' if self.resumed else ''}, {loss}, {self.seconds:.0f} s on "
                f"{self.gpus or 'no'} GPU{'s' if self.gpus != 1 else ''}; "
                + (f"checkpoints in {self.run_dir / 'checkpoints'}" if (self.run_dir / "checkpoints").is_dir()
                   else "no checkpoints (save_folder unset)"))


def run_dir_of(cfg: dict, yaml_path: Path) -> Path:
    save = str(cfg.get("save_folder") or "")
    if save and "://" not in save:
        return Path(save).parent
    return yaml_path.resolve().parent / str(cfg.get("run_name") or yaml_path.stem)


def gpu_count() -> int:
    """GPUs nvidia-smi lists (0 where there is none or no driver)."""
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


class MetricsLog:
    """Composer's console lines -> rows keyed by (kind, batch); a resumed run's rows replace the old ones."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[tuple[str, int], dict] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                row = json.loads(line)
                self.rows[(row["kind"], row["batch"])] = row
        self.batch = 0
        self.total: int | None = None
        self.first: int | None = None  # the first batch this attempt logged
        self.current: dict | None = None

    def feed(self, line: str) -> dict | None:
        """Take one line; return a finished train row when a new batch header closes the previous one."""
        done = None
        if m := BATCH.match(line):
            done = self.close()
            self.batch, self.total = int(m.group(1)), int(m.group(2))
            self.first = self.batch if self.first is None else self.first
            self.current = {"kind": "train", "batch": self.batch, "of": self.total}
        elif EVAL.match(line):
            done = self.close()
            self.current = {"kind": "eval", "batch": self.batch}
        elif (m := VALUE.match(line)) and self.current is not None:
            self.current[m.group(2)] = float(m.group(3))
        return done

    def close(self) -> dict | None:
        row, self.current = self.current, None
        if row and len(row) > 3 - (row["kind"] == "eval"):
            self.rows[(row["kind"], row["batch"])] = row
            return row if row["kind"] == "train" else None
        return None

    def write(self) -> None:
        self.close()
        ordered = sorted(self.rows.values(), key=lambda r: (r["batch"], r["kind"]))
        self.path.write_text("".join(json.dumps(r) + "\n" for r in ordered))

    def losses(self) -> list[tuple[int, float]]:
        return [(r["batch"], r["loss/train/total"]) for r in sorted(self.rows.values(), key=lambda r: r["batch"])
                if r["kind"] == "train" and "loss/train/total" in r]


def describe_failure(lines: list[str]) -> str:
    """The error LLM Foundry (or torch, or composer) ended with, from the tail of its output."""
    for line in reversed(lines[-400:]):
        text = re.sub(r"^\[rank\d+\]:\s*", "", line).strip(" │╭╮╰╯─")
        if (m := ERROR.search(text)) and "Traceback" not in text:
            msg = m.group(2).strip()
            # rich wraps a long message over several lines: take what follows too
            idx = lines.index(line)
            for more in lines[idx + 1: idx + 4]:
                more = re.sub(r"^\[rank\d+\]:\s*", "", more).strip(" │╭╮╰╯─")
                if not more or ERROR.search(more) or more.startswith(("File ", "Traceback")):
                    break
                msg += " " + more
            return f"{m.group(1)}: {msg}"
    tail = [line.strip() for line in lines[-3:] if line.strip()]
    return " | ".join(tail) or "no output"


def launch(yaml_path: Path, overrides: tuple[str, ...] = (), progress: Callable[[str], None] | None = None,
           gpus: int | None = None) -> RunResult:
    """Run LLM Foundry on the YAML (plus overrides) to the end, resuming from the run's latest checkpoint."""
    yaml_path = Path(yaml_path)
    cfg = config_mod.apply_overrides(config_mod.load(yaml_path), overrides)
    config_mod.check_config(cfg)
    run_dir = run_dir_of(cfg, yaml_path)
    run_dir.mkdir(parents=True, exist_ok=True)
    gpus = gpu_count() if gpus is None else gpus
    notes = []
    model = cfg.get("model") or {}
    if model.get("use_flash_attention_2") and not (gpus and foundry_env.task("probe")["flash_attention"]):
        model["use_flash_attention_2"] = False
        model.setdefault("attn_implementation", "sdpa")
        notes.append("flash attention is not available here (no GPU or no flash-attn): running with sdpa")
    effective = run_dir / "run.yaml"
    effective.write_text(config_mod.dump(cfg))
    if gpus > 1 or (gpus == 1 and cfg.get("fsdp_config")):
        # one process per GPU; FSDP wants the distributed setup the launcher makes, even on one GPU
        cmd = [str(foundry_env.bin_path("composer")), "-n", str(gpus), "-m", "llmfoundry.cli.cli", "train",
               str(effective)]
    else:
        cmd = [str(foundry_env.bin_path("llmfoundry")), "train", str(effective)]
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    had_checkpoint = (run_dir / "checkpoints").exists() and any((run_dir / "checkpoints").glob("*.pt"))
    lines: list[str] = []
    started = time.time()
    for note in notes:
        progress and progress(note)
    with (run_dir / "train.log").open("a", encoding="utf-8") as log:
        log.write(f"==== otlake train run {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}: {' '.join(cmd)}\n")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=foundry_env.env(), cwd=run_dir, start_new_session=True)
        try:
            last = time.time()
            for line in proc.stdout:
                log.write(line)
                lines.append(line.rstrip("\n"))
                if len(lines) > 2000:
                    del lines[:1000]
                row = metrics.feed(line)
                if row and progress:
                    now = time.time()
                    loss = row.get("loss/train/total")
                    progress(f"batch {row['batch']}/{row['of']}  loss {loss:.4f}  ({now - last:.1f} s)"
                             if loss is not None else f"batch {row['batch']}/{row['of']}")
                    last = now
            code = proc.wait()
        except BaseException:
            # stopping otlake stops the whole training process group; its checkpoints stay for a resume
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        finally:
            metrics.write()
    if code != 0:
        raise TrainError(f"LLM Foundry stopped (exit {code}) on {yaml_path}: {describe_failure(lines)} "
                         f"(full log: {run_dir / 'train.log'})")
    losses = metrics.losses()
    # autoresume loaded a checkpoint when this attempt's first logged batch is not the run's first
    resumed = had_checkpoint and metrics.first is not None and metrics.first > 1
    result = RunResult(run_dir, len(losses), metrics.total, losses[0][1] if losses else None,
                       losses[-1][1] if losses else None, resumed, time.time() - started, gpus)
    if losses:
        plot_losses(metrics, run_dir / "loss.png", str(cfg.get("run_name") or run_dir.name))
    return result


def plot_losses(metrics: MetricsLog, out: Path, title: str) -> None:
    """loss.png: train loss per batch, and eval loss where an eval ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    train = metrics.losses()
    ax.plot([b for b, _ in train], [v for _, v in train], label="train loss", linewidth=1)
    evals = [(r["batch"], r["metrics/eval/LanguageCrossEntropy"]) for r in sorted(metrics.rows.values(),
             key=lambda r: r["batch"]) if r["kind"] == "eval" and "metrics/eval/LanguageCrossEntropy" in r]
    if evals:
        ax.plot([b for b, _ in evals], [v for _, v in evals], "o-", label="eval cross-entropy")
    ax.set_xlabel("batch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def latest_checkpoint(run: Path) -> Path:
    """The newest Composer checkpoint of a run folder (or the checkpoint file given)."""
    run = Path(run)
    if run.is_file() and run.suffix == ".pt":
        return run
    if run.is_file() and run.suffix in (".yaml", ".yml"):
        run = run_dir_of(config_mod.load(run), run)
    folder = run / "checkpoints"
    if not folder.is_dir():
        raise TrainError(f"{run} is not a run folder: it has no checkpoints/ (run one with `otlake train run`)")
    latest = folder / "latest-rank0.pt"
    if latest.exists():
        return latest.resolve()
    found = sorted(folder.glob("ep*-ba*-rank0.pt"), key=lambda p: int(re.search(r"-ba(\d+)-", p.name).group(1)))
    if not found:
        raise TrainError(f"run {run} has no checkpoint yet in {folder}: it saves every save_interval batches")
    return found[-1]
