"""`make bench`: every benchmark, results in bench-data/*.json (copy figures into BENCHMARKS.md).

`python -m bench.run NAME...` runs some. `lm_synth` and `eval_repair_lm` (about an hour each with the
real local model) run only when named; `sandbox_cost` compares this tree's sandbox with a base commit's. `train_cpu` and `train_tokenizer` need LLM Foundry's environment
(`make bench` installs it); `train_mfu` needs GPUs and runs only when named.
"""

from __future__ import annotations

import sys

from . import (
    dataset,
    eval_repair,
    ingest,
    lm_serving,
    lm_synth,
    pairs,
    replay,
    timetravel,
    train_cpu,
    train_tokenizer,
    usermine,
)


def main() -> None:
    which = set(sys.argv[1:]) or {"replay", "timetravel", "ingest", "pairs", "dataset", "usermine", "lm_serving",
                                  "eval_repair", "sandbox_cost", "train_cpu", "train_tokenizer"}
    if "replay" in which:
        replay.main()
    if "timetravel" in which:
        timetravel.main()
    if "ingest" in which:
        ingest.main()
    if "pairs" in which:  # and the synth verification chain on the same warehouse
        pairs.main()
    if "dataset" in which:
        dataset.main()
    if "usermine" in which:  # user-fix mining on DebugBench repls with several bugs, and on the demo's
        usermine.main()
    if "lm_serving" in which:  # the local LM server: tokens/s, time to first token, requests/s
        lm_serving.main()
    if "lm_synth" in which:  # LM diffs from the local model through the verification chain
        lm_synth.main([])
    if "eval_repair" in which:  # oracle and noop on every DebugBench record (the model figures: eval_repair_lm)
        eval_repair.main(["--no-lm"])
    if "train_cpu" in which:  # LoRA against full fine-tuning of the 0.5B on CPU, a few batches each
        train_cpu.main([])
    if "train_tokenizer" in which:  # BPE on the demo's code against prose and Qwen's tokenizer
        train_tokenizer.main([])
    if "train_mfu" in which:  # the replit-7b shape on GPUs: tokens/s and MFU (not on a CPU machine)
        from . import train_mfu

        train_mfu.main([])
    if "sandbox_cost" in which:  # oracle items/s and the sandbox's ms per item against 02db57d, same run
        from . import sandbox_cost

        sandbox_cost.main([])
    if "eval_repair_lm" in which:  # and the local 0.5B model, 0- and 3-shot, on 100 items (about an hour)
        eval_repair.main(["--limit", "100", "--fewshot", "0,3"])


if __name__ == "__main__":
    main()
