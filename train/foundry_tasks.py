"""Jobs that run inside LLM Foundry's environment (envs/train), started by train/foundry_env.py as a script.

It imports only what that environment holds (torch 2.7, transformers <4.52, composer, streaming, peft, gguf),
never otlake's packages: the two environments cannot share one resolver (DESIGN.md "Training"). Each job
prints one JSON object on its last stdout line; a failure prints {"error": ...} and exits 1.

  probe                      GPUs, flash attention, LLM Foundry's config keys
  export CKPT OUT [--base]   a Composer checkpoint -> a Hugging Face folder (safetensors; LoRA merged)
  mds FOLDER                 FOLDER/{train,eval}.jsonl -> FOLDER/mds/{train,eval}/ (MosaicML Streaming shards)
  import-gguf GGUF OUT       a GGUF model -> a Hugging Face folder, through transformers' GGUF loader
  generate FOLDER PROMPT N   greedy completion of N tokens (checks that an export loads and runs)
  lengths MODEL SEQ TEMPLATE FILE...
                             each JSONL example's length as LLM Foundry tokenizes it, and what it does with it
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# run as a script, this folder is sys.path[0], and train/gguf.py would shadow the gguf package that
# transformers' GGUF loader imports: the jobs import nothing from here but by path (foundry_chat below)
if sys.path and sys.path[0] and Path(sys.path[0]).resolve() == HERE:
    del sys.path[0]


def probe() -> dict:
    import torch
    from llmfoundry.utils.config_utils import TRAIN_CONFIG_KEYS

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    capability = torch.cuda.get_device_capability(0) if gpus else None
    try:
        import flash_attn  # noqa: F401
        flash = bool(gpus) and capability is not None and capability[0] >= 8
    except ImportError:
        flash = False
    return {"gpus": gpus, "gpu": torch.cuda.get_device_name(0) if gpus else None, "flash_attention": flash,
            "torch": torch.__version__, "train_config_keys": sorted(TRAIN_CONFIG_KEYS)}


def export(checkpoint: str, out: str) -> dict:
    """Write a Hugging Face folder that transformers (any version that reads safetensors) loads directly."""
    import torch
    import transformers
    from composer.models.huggingface import write_huggingface_pretrained_from_composer_checkpoint

    started = time.time()
    out_dir, checkpoint = Path(out).resolve(), str(Path(checkpoint).resolve())
    with tempfile.TemporaryDirectory(dir=out_dir.parent) as tmp:
        raw = Path(tmp) / "raw"
        os.chdir(tmp)  # composer leaves a tokenizer-save-dir-* in the working directory: let it land here
        write_huggingface_pretrained_from_composer_checkpoint(checkpoint, raw)
        tokenizer = transformers.AutoTokenizer.from_pretrained(raw)
        if (raw / "adapter_config.json").exists():
            import peft

            adapter = json.loads((raw / "adapter_config.json").read_text())
            base = transformers.AutoModelForCausalLM.from_pretrained(adapter["base_model_name_or_path"],
                                                                     torch_dtype=torch.float32)
            model = peft.PeftModel.from_pretrained(base, raw).merge_and_unload()
            merged = True
        else:
            config = transformers.AutoConfig.from_pretrained(raw)
            model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
            state = torch.load(raw / "pytorch_model.bin", map_location="cpu", weights_only=True)
            missing, unexpected = model.load_state_dict(state, strict=False)
            missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
            if missing or unexpected:
                raise RuntimeError(f"checkpoint does not fit its model: missing {missing[:5]}, "
                                   f"unexpected {unexpected[:5]}")
            merged = False
        staged = Path(tmp) / "hf"
        model.save_pretrained(staged, safe_serialization=True)
        tokenizer.save_pretrained(staged)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staged, out_dir)  # the folder appears whole or not at all
    params = sum(p.numel() for p in model.parameters())
    return {"out": str(out_dir), "parameters": params, "lora_merged": merged,
            "architecture": model.config.architectures[0], "seconds": round(time.time() - started, 1)}


def mds(folder: str) -> dict:
    """One shard set per JSONL split, columns prompt and response (LLM Foundry's finetuning MDS schema)."""
    from streaming import MDSWriter

    root = Path(folder)
    counts = {}
    for split in ("train", "eval"):
        src = root / f"{split}.jsonl"
        if not src.exists():
            continue
        out = root / "mds" / split
        if out.exists():
            shutil.rmtree(out)
        n = 0
        with (MDSWriter(out=str(out), columns={"prompt": "str", "response": "str"}, compression=None) as writer,
              src.open(encoding="utf-8") as f):
            for line in f:
                row = json.loads(line)
                writer.write({"prompt": row["prompt"], "response": row["response"]})
                n += 1
        counts[split] = n
    return {"splits": counts}


def import_gguf(gguf: str, out: str) -> dict:
    import torch
    import transformers

    started = time.time()
    path = Path(gguf)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                              torch_dtype=torch.float32)
    out_dir = Path(out)
    with tempfile.TemporaryDirectory(dir=out_dir.parent) as tmp:
        staged = Path(tmp) / "hf"
        model.save_pretrained(staged, safe_serialization=True)
        tokenizer.save_pretrained(staged)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staged, out_dir)
    return {"out": str(out_dir), "architecture": model.config.architectures[0],
            "parameters": sum(p.numel() for p in model.parameters()), "seconds": round(time.time() - started, 1)}


def generate(folder: str, prompt: str, tokens: str) -> dict:
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"], max_new_tokens=int(tokens), do_sample=False,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    new = out[0][ids["input_ids"].shape[1]:]
    return {"tokens": int(new.shape[0]), "text": tokenizer.decode(new, skip_special_tokens=True)}


def lengths(model: str, seq: str, template: str, *files: str) -> dict:
    """Per example: tokens after LLM Foundry's own tokenization, and whether it fits, is truncated or dropped.

    LLM Foundry drops an example whose prompt fills max_seq_len (no response token left to learn), and cuts the
    response of one whose prompt + response + EOS is longer; the collator adds the EOS this counts.
    """
    import transformers
    from llmfoundry.data.finetuning.collator import stitch_turns_decoder_only
    from llmfoundry.data.finetuning.tasks import is_valid_ift_example, tokenize_formatted_example

    # the chat form the runs train in (train/foundry_chat.py, which LLM Foundry loads through code_paths)
    spec = importlib.util.spec_from_file_location("otlake_foundry_chat", HERE / "foundry_chat.py")
    chat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(chat)
    max_len = int(seq)
    tokenizer = transformers.AutoTokenizer.from_pretrained(model)
    out = {}
    for name in files:
        tokens, status = [], []
        with open(name, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                example = {"prompt": row["prompt"], "response": row["response"]}
                turns = tokenize_formatted_example(chat.otlake_chat(example) if template == "chat" else example,
                                                   tokenizer)
                ids, _ = stitch_turns_decoder_only(turns["turns"], "none", "last", tokenizer.eos_token_id)
                tokens.append(len(ids))
                if not is_valid_ift_example(max_len, "none", "last", True, turns):
                    status.append("dropped")
                else:
                    status.append("fits" if len(ids) <= max_len else "truncated")
        out[name] = {"tokens": tokens, "status": status}
    return {"seq": max_len, "files": out}


JOBS = {"probe": probe, "export": export, "mds": mds, "import-gguf": import_gguf, "generate": generate,
        "lengths": lengths}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in JOBS:
        print(json.dumps({"error": f"usage: foundry_tasks.py {{{','.join(JOBS)}}} ARGS"}))
        return 2
    try:
        result = JOBS[argv[0]](*argv[1:])
    except Exception as e:  # noqa: BLE001  (reported to the otlake process, which words the error)
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
