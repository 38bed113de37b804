"""Tokens/s and MFU of the `replit-7b` preset's shape on this machine's GPUs (random weights, same config).

    make train-env install
    uv run --frozen python -m bench.train_mfu                  # seq 2048 and 4096, every GPU nvidia-smi lists
    uv run --frozen python -m bench.train_mfu --seq 2048 --layers 30 --batches 30

The model is DeepSeek-Coder-7B-Instruct-v1.5's shape (Llama: hidden 4096, MLP 11008, 32 heads, vocab 102400,
30 layers) built from a config.json with random weights (`model.pretrained=false`), so no hub is needed. The
run is `otlake train config --preset replit-7b` on a dataset of random-word examples sized so that the preset's
packing (ratio 6.0) fills each sequence, through `otlake train run` (the composer launcher, FSDP FULL_SHARD with
activation checkpointing, amp_bf16). Nothing is saved.

Full 7B training state is 16 bytes a parameter (fp32 weights, gradients and two Adam moments), about 110 GB:
FULL_SHARD spreads it over the GPUs. With fewer GPUs than that needs, `--layers auto` keeps the width and cuts
the depth to what fits (and says so); MFU per layer of the same width is what the figure compares.

MFU counts the model FLOPs of a step, not the recomputed ones (activation checkpointing): per token
6 * (parameters less the input embedding) + 12 * layers * hidden * seq (attention), as LLM Foundry counts its
own models, over the GPUs' dense bf16 peak. LLM Foundry's published figures for 7B on 8xH100: 46.4% MFU at seq
2048, 40.4% at 4096 with activation checkpointing. `--tiny` runs the same path on CPU with a 2-layer model
(a check that the script works, not a figure).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from train import foundry_env
from train.run import gpu_count

from .common import save

SHAPE = {"hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32, "num_key_value_heads": 32,
         "vocab_size": 102400, "num_hidden_layers": 30, "max_position_embeddings": 4096, "rope_theta": 10000.0,
         "rms_norm_eps": 1e-6}
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 4,
        "vocab_size": 4096, "num_hidden_layers": 2, "max_position_embeddings": 4096, "rope_theta": 10000.0,
        "rms_norm_eps": 1e-6}
PUBLISHED = {2048: 0.464, 4096: 0.404}  # LLM Foundry's 7B on 8xH100 (activation checkpointing at 4096)
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}

BUILD = """
import json, sys
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
from transformers import LlamaConfig, PreTrainedTokenizerFast
shape, words, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator([" ".join(words)] * 4, trainers.BpeTrainer(vocab_size=min(len(words) + 600, shape["vocab_size"]),
                        special_tokens=["<|eos|>", "<|pad|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|eos|>", pad_token="<|pad|>", bos_token="<|eos|>")
fast.save_pretrained(out)
cfg = LlamaConfig(**shape, tie_word_embeddings=False, torch_dtype="bfloat16", bos_token_id=fast.eos_token_id,
                  eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
cfg.architectures = ["LlamaForCausalLM"]
cfg.save_pretrained(out)
print(json.dumps({"vocab": len(fast), "tokens_per_word": len(fast(" ".join(words[:200]))["input_ids"]) / 200}))
"""


def model_flops_per_token(shape: dict, seq: int) -> float:
    h, f, layers, vocab = (shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"],
                           shape["vocab_size"])
    per_layer = 4 * h * h + 3 * h * f  # q, k, v, o and the gated MLP (no biases)
    params = layers * per_layer + h * vocab  # the output head counts; the input embedding is a lookup
    return 6 * params + 12 * layers * h * seq


def auto_layers(gpus: int, gib_per_gpu: float) -> int:
    """The depth whose full training state (16 bytes a parameter) fits in 70% of the GPUs' memory."""
    h, f, vocab = SHAPE["hidden_size"], SHAPE["intermediate_size"], SHAPE["vocab_size"]
    budget = 0.7 * gpus * gib_per_gpu * 2**30 / 16
    return max(1, min(SHAPE["num_hidden_layers"], int((budget - 2 * h * vocab) // (4 * h * h + 3 * h * f))))


def gpu_info() -> tuple[str, float]:
    """The first GPU's name and memory (GiB), from nvidia-smi."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30, check=False).stdout.splitlines()
        name, mib = out[0].rsplit(",", 1)
        return name.strip(), float(mib) / 1024
    except (OSError, IndexError, ValueError, subprocess.TimeoutExpired):
        return "", 0.0


def write_dataset(folder: Path, words: list[str], tokens_per_word: float, seq: int, examples: int) -> None:
    """README.md + train.jsonl of random-word examples, each about seq / 6 tokens (packing 6.0 fills a sequence)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seq)
    n = max(8, int(seq / 6 / tokens_per_word * 0.95))
    with (folder / "train.jsonl").open("w") as out:
        for _ in range(examples):
            text = rng.choices(words, k=n)
            cut = n * 3 // 4
            out.write(json.dumps({"prompt": " ".join(text[:cut]), "response": " " + " ".join(text[cut:])}) + "\n")
    (folder / "README.md").write_text(f"# random words for bench.train_mfu (seq {seq})\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seq", type=int, nargs="+", default=[2048, 4096])
    ap.add_argument("--layers", default="auto", help="depth of the model ('auto': all 30 where they fit)")
    ap.add_argument("--batches", type=int, default=30, help="batches per run; the median of the last half counts")
    ap.add_argument("--gpus", type=int, default=None, help="GPUs to use (default: all nvidia-smi lists)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of one GPU, if not known")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model on CPU: checks the script, no figure")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)

    gpus = 0 if args.tiny else (gpu_count() if args.gpus is None else args.gpus)
    name, gib = gpu_info() if gpus else ("cpu", 0.0)
    if not gpus and not args.tiny:
        sys.exit("bench.train_mfu: no GPU here (nvidia-smi lists none); --tiny checks the script on CPU")
    shape = dict(TINY if args.tiny else SHAPE)
    if not args.tiny:
        shape["num_hidden_layers"] = auto_layers(gpus, gib) if args.layers == "auto" else int(args.layers)
    peak = (args.peak_tflops * 1e12 if args.peak_tflops else
            next((v for k, v in PEAK_BF16.items() if k in name), None))
    work = args.workdir or Path(tempfile.mkdtemp(prefix="train-mfu-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    words = sorted({"".join(rng.choices("abcdefghijklmnopqrstuvwxyz_", k=rng.randint(3, 9))) for _ in range(3000)})
    proc = subprocess.run([str(foundry_env.python()), "-c", BUILD, json.dumps(shape), json.dumps(words),
                           str(work / "model")], capture_output=True, text=True, env=foundry_env.env(), check=False)
    if proc.returncode:
        sys.exit(f"bench.train_mfu: building the model config failed: {proc.stderr[-2000:]}")
    built = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = []
    for seq in args.seq:
        batch = 16 if not args.tiny else 4
        examples = batch * 6 * (args.batches + 2) + 64
        data = work / f"data-{seq}"
        write_dataset(data, words, built["tokens_per_word"], seq, examples)
        run_yaml = work / f"run-{seq}.yaml"
        overrides = ["model.pretrained=false", f"max_duration={args.batches}ba", "save_folder=null",
                     "autoresume=false", "save_interval=100000ba", f"run_name=mfu-{seq}",
                     "callbacks.speed_monitor.window_size=5", f"global_train_batch_size={batch}"]
        if args.tiny:
            overrides += ["precision=fp32", "fsdp_config=null", "model.init_device=cpu",
                          "device_train_microbatch_size=1", "train_loader.num_workers=0",
                          "train_loader.prefetch_factor=null", "train_loader.persistent_workers=false"]
        cmd = [sys.executable, "-m", "otlake", "train", "config", "--dataset", str(data), "--model",
               str(work / "model"), "--preset", "replit-7b", "--seq", str(seq), "--out", str(run_yaml), *overrides]
        subprocess.run(cmd, check=True)
        run = subprocess.run([sys.executable, "-m", "otlake", "train", "run", str(run_yaml), "--gpus", str(gpus)], check=False)
        metrics = [json.loads(line) for line in (work / f"mfu-{seq}" / "metrics.jsonl").read_text().splitlines()] \
            if (work / f"mfu-{seq}" / "metrics.jsonl").exists() else []
        train = [m for m in metrics if m["kind"] == "train"]
        late = train[len(train) // 2:]
        sps = [m["throughput/device/samples_per_sec"] for m in late if "throughput/device/samples_per_sec" in m]
        tps = [m["throughput/device/tokens_per_sec"] for m in late if "throughput/device/tokens_per_sec" in m]
        row = {"seq": seq, "gpus": gpus, "gpu": name, "layers": shape["num_hidden_layers"], "exit": run.returncode,
               "batches_logged": len(train)}
        if sps:
            seq_per_s = statistics.median(sps)
            flops = seq_per_s * seq * model_flops_per_token(shape, seq)
            nonpad = statistics.median(tps) if tps else None
            row.update(device_sequences_per_s=seq_per_s, device_tokens_per_s=seq_per_s * seq,
                       device_nonpad_tokens_per_s=nonpad, model_tflops_per_device=flops / 1e12,
                       # as LLM Foundry counts its MFU (every position of every sequence), and on the tokens
                       # that are not padding (what the packing left unfilled does not count)
                       mfu=flops / peak if peak else None,
                       mfu_nonpad=nonpad * model_flops_per_token(shape, seq) / peak if peak and nonpad else None,
                       published_mfu=PUBLISHED.get(seq))
        rows.append(row)
        print(json.dumps(row))
    for row in rows:
        if row.get("mfu") is not None and not math.isnan(row["mfu"]):
            bar = row["published_mfu"]
            print(f"seq {row['seq']}: {row['device_tokens_per_s']:,.0f} tokens/s per GPU, MFU {row['mfu']:.1%}"
                  + (f" ({row['mfu_nonpad']:.1%} of non-padding tokens)" if row.get("mfu_nonpad") else "")
                  + (f" (LLM Foundry 7B on 8xH100: {bar:.1%})" if bar else "")
                  + f" [{row['layers']} layers, {row['gpus']}x {row['gpu']}]")
    if not args.tiny:
        save("train_mfu", {"rows": rows, "shape": shape, "peak_flops": peak,
                           "note": "random weights, replit-7b preset; MFU excludes activation recompute"})


if __name__ == "__main__":
    main()
