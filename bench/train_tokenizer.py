"""Tokenizer training on the demo dataset's code: tokens per character on held-out code, and seconds per run.

`otlake train tokenizer` at vocabularies 2,000, 8,000 and 16,000 on the dataset `otlake demo --repls 100 --seed
0` builds (bench.train_cpu's cached copy), against the same BPE trained on prose and against Qwen2.5-Coder's own
tokenizer (the local model's, when bench.train_cpu has converted it; otherwise that column is left out and the
result says so). Each vocabulary is trained --repeat times; the time is the median.

  python -m bench.train_tokenizer [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from .common import save
from .train_cpu import WORK, demo_dataset


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.train_tokenizer", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--vocab", default="2000,8000,16000")
    args = parser.parse_args(argv)
    from otlake.training import dataset_ref
    from train.tokenizer import train_tokenizer

    ref = dataset_ref(str(demo_dataset()), None)
    base = WORK / "qwen-hf"
    base_arg = str(base) if (base / "tokenizer.json").is_file() else None
    results = {"dataset": str(ref.folder), "base": base_arg or "not converted (run bench.train_cpu first)",
               "runs": []}
    for vocab in (int(v) for v in args.vocab.split(",")):
        times, report = [], None
        for _ in range(args.repeat):
            started = time.perf_counter()
            report = train_tokenizer(ref, vocab, WORK / f"tok-{vocab}", base=base_arg)
            times.append(time.perf_counter() - started)
        rows = report["tokenizers"]
        row = {"vocab_asked": vocab, "vocab_code": rows["code"]["vocab"], "vocab_prose": rows["prose"]["vocab"],
               "code": rows["code"]["tokens_per_char"], "prose": rows["prose"]["tokens_per_char"],
               "base": rows["base"]["tokens_per_char"] if "base" in rows else None,
               "code_over_prose": round(rows["code"]["tokens_per_char"] / rows["prose"]["tokens_per_char"], 4),
               "seconds_median": round(statistics.median(times), 2), "seconds": [round(t, 2) for t in times],
               "held_out_files": report["held_out_files"], "held_out_chars": report["held_out_chars"],
               "train_chars": report["train_chars"], "prose_chars": report["prose_chars"]}
        results["runs"].append(row)
        print(row, flush=True)
    save("train_tokenizer", results)
    return results


if __name__ == "__main__":
    main()
