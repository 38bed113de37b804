"""Fine-tuning on this CPU: LoRA against a full fine-tune of Qwen2.5-Coder-0.5B-Instruct, a few batches each.

Every step is an otlake command's API: the demo warehouse and its dataset (`otlake demo --repls 100 --seed 0`,
cached in bench-data/train/lake), the local GGUF as a Hugging Face folder (`train import-gguf`, cached),
`train config` (cpu-small, chat template, --seq 512, examples that do not fit dropped) and `train run`, for
`--batches` batches of 2 examples with no checkpoints. Reported: seconds per batch and trained tokens per
second (median over the batches after the first, which pays for warm-up), the ratio LoRA / full in the same
run, and how the dataset's examples fit 512 and 1024 tokens in the model's tokenizer (`train config`'s check).

  python -m bench.train_cpu [--batches 6] [--modes lora,full]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from .common import OUT, save

LORA = ("model.peft_config={peft_type: LORA, task_type: CAUSAL_LM, r: 16, lora_alpha: 32, lora_dropout: 0.05, "
        "target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]}")
WORK = OUT / "train"


def demo_dataset() -> Path:
    """The demo's dataset folder (176 train + 9 eval examples at seed 0), built once."""
    from otlake.demo import run_demo

    lake = WORK / "lake"
    folder = lake / "datasets" / "demo"
    if not (folder / "train.jsonl").is_file():
        run_demo(str(lake), 100, 0)
    return folder


def qwen_hf() -> Path:
    """The local Qwen2.5-Coder-0.5B-Instruct GGUF as a Hugging Face folder (fetched and converted once)."""
    from local_lm.launcher import resolve
    from local_lm.models import DEFAULT_MODEL
    from otlake.training import import_gguf

    folder = WORK / "qwen-hf"
    if not (folder / "config.json").is_file():
        import_gguf(resolve(DEFAULT_MODEL).path, folder)
    return folder


def batch_times(metrics: Path) -> list[tuple[float, float | None]]:
    """(seconds, tokens) of each training batch after the first (tokens None for the last).

    Composer logs cumulative time/train (hours, up to the end of the batch) and time/token (tokens before it).
    """
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    rows = [r for r in rows if r["kind"] == "train" and "time/train" in r]
    out = []
    for k in range(1, len(rows)):
        seconds = 3600 * (rows[k]["time/train"] - rows[k - 1]["time/train"])
        tokens = rows[k + 1]["time/token"] - rows[k]["time/token"] if k + 1 < len(rows) else None
        out.append((seconds, tokens))
    return out


def one_mode(mode: str, dataset: Path, model: Path, batches: int) -> tuple[dict, dict]:
    """One mode's timings, and `train config`'s length report at 512 tokens (the same for every mode)."""
    from otlake.training import train_config, train_run

    out = WORK / "runs" / f"{mode}.yaml"
    overrides = [f"max_duration={batches + 1}ba", "global_train_batch_size=2", "device_train_microbatch_size=1",
                 "optimizer.lr=2e-4" if mode == "lora" else "optimizer.lr=1e-5", "scheduler.t_warmup=1ba",
                 "save_folder=null", "autoresume=false", "eval_interval=1000ba"] + ([LORA] if mode == "lora" else [])
    cfg = train_config(str(dataset), str(model), out, "cpu-small", overrides=tuple(overrides), seq=512)
    started = time.perf_counter()
    result = train_run(out, gpus=0)
    wall = time.perf_counter() - started
    # batch 1 is logged when it ends, so the first difference is batch 2: warm from there on
    times = batch_times(result.run_dir / "metrics.jsonl")
    seconds = statistics.median(t for t, _ in times)
    tokens = statistics.median(n / t for t, n in times if n is not None and t > 0)
    return {"mode": mode, "batches": result.batches, "wall_s": round(wall, 1),
            "seconds_per_batch": round(seconds, 2), "tokens_per_s": round(tokens, 1),
            "all_batch_s": [round(t, 2) for t, _ in times], "first_loss": result.first_loss,
            "last_loss": result.last_loss}, cfg["metadata"]["otlake_lengths"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.train_cpu", description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=6, help="timed batches per mode (one more runs first)")
    parser.add_argument("--modes", default="lora,full")
    args = parser.parse_args(argv)
    from otlake.training import train_config

    dataset, model = demo_dataset(), qwen_hf()
    fit_1024 = train_config(str(dataset), str(model), WORK / "runs" / "fit-1024.yaml", "cpu-small",
                            seq=1024)["metadata"]["otlake_lengths"]
    results = {"dataset": str(dataset), "model": str(model), "fit_1024": fit_1024, "modes": []}
    for mode in args.modes.split(","):
        timings, results["fit_512"] = one_mode(mode, dataset, model, args.batches)
        results["modes"].append(timings)
        print(json.dumps(results["modes"][-1]), flush=True)
    by = {m["mode"]: m for m in results["modes"]}
    if {"lora", "full"} <= set(by):
        results["lora_over_full_seconds_per_batch"] = round(by["lora"]["seconds_per_batch"]
                                                            / by["full"]["seconds_per_batch"], 3)
    save("train_cpu", results)
    return results


if __name__ == "__main__":
    main()
