"""LLM Foundry finetuning YAML: presets, `key=value` overrides, and the checks that catch a bad run before it starts.

The YAML is LLM Foundry's own (`llmfoundry train run.yaml` runs it unchanged); every value otlake chooses is in
it, and every value can be overridden with a dotted `key=value` (the value read as YAML, as LLM Foundry's own
command-line overrides read it). `metadata` records the dataset's name, folder and digests, the preset and the
overrides, so a run says what it was trained on.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import fit
from .errors import TrainError

# LLM Foundry 0.22's TrainConfig fields (llmfoundry/utils/config_utils.py): a top-level key outside this set
# makes it refuse the YAML; tests/test_train.py compares the list with the installed LLM Foundry
FOUNDRY_KEYS = frozenset({
    "model", "tokenizer", "optimizer", "scheduler", "train_loader", "device_train_batch_size",
    "device_eval_batch_size", "max_duration", "max_seq_len", "seed", "precision", "code_paths",
    "max_split_size_mb", "expandable_segments", "cuda_load_lazy", "dist_timeout", "fsdp_config", "tp_config",
    "accumulate_train_batch_on_tokens", "eval_interval", "eval_loader", "eval_loaders", "icl_tasks",
    "icl_tasks_str", "eval_gauntlet", "eval_gauntlet_str", "icl_subset_num_batches", "icl_seq_len", "loggers",
    "progress_bar", "log_to_console", "python_log_level", "console_log_interval", "log_config", "callbacks",
    "algorithms", "save_folder", "save_latest_filename", "save_overwrite", "save_weights_only", "save_filename",
    "save_interval", "save_num_checkpoints_to_keep", "load_path", "load_weights_only",
    "load_strict_model_weights", "load_ignore_keys", "save_ignore_keys", "only_hf_checkpoint",
    "only_composer_checkpoint", "train_subset_num_batches", "device_train_microbatch_size",
    "global_train_batch_size", "spin_dataloaders", "eval_subset_num_batches", "eval_first", "compile_config",
    "metadata", "flatten_metadata", "run_name", "autoresume", "profiler", "variables", "n_gpus",
    "device_train_grad_accum",
})
# set by LLM Foundry from the batch sizes and the GPUs; a YAML that sets them is refused
DERIVED_KEYS = frozenset({"n_gpus", "device_train_batch_size", "device_train_grad_accum", "eval_loaders",
                          "icl_tasks_str", "eval_gauntlet_str"})

PRESETS = ("replit-7b", "cpu-small")
DEFAULT_MODEL = {"replit-7b": "deepseek-ai/deepseek-coder-7b-instruct-v1.5"}
DATA_FORMATS = ("jsonl", "mds")
TEMPLATES = ("chat", "plain")
CHAT_CODE = Path(__file__).resolve().with_name("foundry_chat.py")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class DatasetRef:
    """A built dataset: its name, folder and digests (the `datasets` row)."""

    name: str
    folder: Path
    train_examples: int
    eval_examples: int
    train_sha256: str | None
    eval_sha256: str | None
    card_sha256: str


def _preset(name: str, seq: int) -> dict:
    """The values of a preset that do not depend on the dataset, the model or the run folder."""
    # Replit's optimizer and clipping (DESIGN.md "Training"); cpu-small keeps them and shrinks the rest
    shared = {
        "max_seq_len": seq, "seed": 17,
        "optimizer": {"name": "decoupled_adamw", "lr": 1.0e-5, "betas": [0.9, 0.99], "eps": 1.0e-8,
                      "weight_decay": 0.0},
        "algorithms": {"gradient_clipping": {"clipping_type": "norm", "clipping_threshold": 1.0}},
        "eval_interval": "1ep", "eval_first": False,
    }
    if name == "replit-7b":
        # Replit's code-repair run: one node of 8 H100
        return {
            **shared, "precision": "amp_bf16",
            "scheduler": {"name": "cosine_with_warmup", "t_warmup": "100ba", "alpha_f": 0.01},
            "max_duration": "4ep", "global_train_batch_size": 16, "device_train_microbatch_size": "auto",
            "device_eval_batch_size": 2,
            "fsdp_config": {"sharding_strategy": "FULL_SHARD", "mixed_precision": "PURE",
                            "activation_checkpointing": True, "activation_checkpointing_reentrant": False,
                            "activation_cpu_offload": False, "limit_all_gathers": True},
            "packing_ratio": 6.0, "pad_trimming": False, "flash_attention": True, "init_device": "mixed",
            "num_workers": 8, "save_interval": "1ep", "save_num_checkpoints_to_keep": 1,
        }
    if name == "cpu-small":
        # a single CPU process: no FSDP, fp32 (bf16 autocast on CPU is slower than fp32 here), small batches;
        # a batch is as long as its longest example, not max_seq_len: on CPU every padded token costs
        return {
            **shared, "precision": "fp32",
            "scheduler": {"name": "cosine_with_warmup", "t_warmup": "2ba", "alpha_f": 0.01},
            "max_duration": "1ep", "global_train_batch_size": 4, "device_train_microbatch_size": 1,
            "device_eval_batch_size": 1, "fsdp_config": None,
            "packing_ratio": None, "pad_trimming": True, "flash_attention": False, "init_device": "cpu",
            "num_workers": 0, "save_interval": "10ba", "save_num_checkpoints_to_keep": 2,
        }
    raise TrainError(f"unknown preset {name!r}: the presets are {', '.join(PRESETS)}")


def check_model(model: str) -> str:
    """The model as the YAML names it: an existing causal-LM folder (absolute) or a Hugging Face hub id."""
    path = Path(model).expanduser()
    if path.exists():
        config = path / "config.json"
        if not path.is_dir() or not config.is_file():
            raise TrainError(f"model {model!r} is not a Hugging Face checkpoint folder: it has no config.json "
                             "(convert the local GGUF model with `otlake train import-gguf`, or pass a hub id)")
        try:
            cfg = json.loads(config.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TrainError(f"model {model!r}: config.json is not JSON ({e})") from None
        archs = cfg.get("architectures") or []
        if not isinstance(archs, list) or not any(str(a).endswith("ForCausalLM") for a in archs):
            raise TrainError(f"model {model!r} is not a causal LM: config.json names architectures {archs} "
                             "(LLM Foundry's hf_causal_lm needs a *ForCausalLM model)")
        return str(path.resolve())
    if model.startswith((".", "/", "~")) or not HUB_ID.match(model):
        raise TrainError(f"model {model!r} does not exist: pass a Hugging Face checkpoint folder or a hub id "
                         "such as deepseek-ai/deepseek-coder-7b-instruct-v1.5")
    return model


def has_chat_template(model: str) -> bool:
    """Whether a model folder's tokenizer carries a chat template (an instruct model)."""
    folder = Path(model)
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        return bool(json.loads((folder / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False


def dataset_loader(ref: DatasetRef, split: str, data_format: str, values: dict, template: str = "plain",
                   path: Path | None = None) -> dict:
    """LLM Foundry's `finetuning` dataloader over one split of a built dataset (JSONL or MDS shards).

    path: the JSONL file to read instead of the dataset's own (the copy that holds only examples that fit).
    """
    if data_format == "jsonl":
        data_file = path or ref.folder / f"{split}.jsonl"
        source = {"hf_name": "json", "hf_kwargs": {"data_files": {split: str(data_file)}},
                  "split": split}
        if template == "chat":
            source["preprocessing_fn"] = "otlake_chat"  # train/foundry_chat.py, loaded through code_paths
    else:
        # LLM Foundry streams MDS only through `remote` or `streams`; a stream with just `local` reads the shards
        # where they are, copying nothing
        source = {"streams": {ref.name: {"local": str(ref.folder / "mds"), "split": split}}}
    dataset = {**source, "max_seq_len": values["max_seq_len"], "allow_pad_trimming": values["pad_trimming"],
               "decoder_only_format": True, "shuffle": split == "train"}
    if values["packing_ratio"] and split == "train":
        dataset["packing_ratio"] = values["packing_ratio"]
    loader = {"name": "finetuning", "dataset": dataset, "drop_last": split == "train",
              "num_workers": values["num_workers"]}
    if values["num_workers"]:
        loader.update(pin_memory=False, prefetch_factor=2, persistent_workers=True, timeout=0)
    else:
        # torch's DataLoader refuses these in the main process; LLM Foundry's defaults set them
        loader.update(prefetch_factor=None, persistent_workers=False)
    return loader


def build_config(ref: DatasetRef, model: str, preset: str = "cpu-small", run_dir: Path | None = None,
                 data_format: str = "jsonl", overrides: tuple[str, ...] = (), seq: int | None = None,
                 template: str | None = None, too_long: str = "drop", check_lengths: bool = True) -> dict:
    """The finetuning config of one run, overrides applied and checked.

    template: chat puts each example in the model's chat template (a user turn, an assistant turn), as
    `otlake eval --model DIR` asks an instruct model; plain trains on prompt + response as they are. The default
    is chat for a model folder whose tokenizer has a chat template, else plain.
    too_long: drop trains only on the examples that fit max_seq_len whole (measured with the model's tokenizer
    when LLM Foundry's environment and the tokenizer are here; metadata.otlake_lengths says what was found);
    keep leaves them to LLM Foundry, which drops those whose prompt fills the window and cuts the rest.
    """
    if too_long not in fit.TOO_LONG:
        raise TrainError(f"unknown --too-long {too_long!r}: use one of {', '.join(fit.TOO_LONG)}")
    if data_format not in DATA_FORMATS:
        raise TrainError(f"unknown data format {data_format!r}: use one of {', '.join(DATA_FORMATS)}")
    if template is not None and template not in TEMPLATES:
        raise TrainError(f"unknown template {template!r}: use one of {', '.join(TEMPLATES)}")
    if ref.train_examples < 1 or ref.train_sha256 is None:
        raise TrainError(f"dataset {ref.name!r} has no training examples (train split empty in {ref.folder}): "
                         "build it from more repls, or with fewer filters")
    train_file = ref.folder / ("mds/train/index.json" if data_format == "mds" else "train.jsonl")
    if not train_file.is_file():
        hint = ("rebuild it with `otlake dataset build ... --format mds`" if data_format == "mds"
                else "rebuild it with `otlake dataset build`")
        raise TrainError(f"dataset {ref.name!r}: {train_file} is missing ({hint})")
    files = {split: ref.folder / f"{split}.jsonl" for split, n in (("train", ref.train_examples),
                                                                    ("eval", ref.eval_examples)) if n}
    files = {split: path for split, path in files.items() if path.is_file()}
    for path in files.values():
        fit.check_jsonl(path, ref.name)
    values = _preset(preset, seq or (2048 if preset == "replit-7b" else 1024))
    model_id = check_model(model)
    template = template or ("chat" if has_chat_template(model_id) else "plain")
    if template == "chat" and data_format == "mds":
        raise TrainError("--template chat reads the JSONL files (LLM Foundry applies the chat template while "
                         "loading them); MDS shards hold prompt and response as they are: use --format jsonl, "
                         "or --template plain")
    run_name = f"{ref.name}-{preset}"
    run_dir = Path(run_dir or Path.cwd() / run_name).resolve()
    max_seq_len = apply_overrides({"max_seq_len": values["max_seq_len"]},
                                  [o for o in overrides if o.partition("=")[0].strip() == "max_seq_len"])
    values["max_seq_len"] = max_seq_len["max_seq_len"]  # every loader and the length check use the final value
    if not isinstance(values["max_seq_len"], int) or isinstance(values["max_seq_len"], bool) \
            or values["max_seq_len"] < 1:
        raise TrainError(f"config key 'max_seq_len' must be a positive integer, not {values['max_seq_len']!r}")
    lengths, read = _fit_examples(ref, model_id, values["max_seq_len"], template, files, data_format, too_long,
                                  check_lengths, run_dir)
    model_cfg = {"name": "hf_causal_lm", "pretrained": True, "pretrained_model_name_or_path": model_id,
                 "init_device": values["init_device"], "use_flash_attention_2": values["flash_attention"],
                 "trust_remote_code": False}
    if not values["flash_attention"]:
        model_cfg["attn_implementation"] = "sdpa"  # PyTorch's fused attention; transformers' eager is slower
    cfg = {
        "run_name": run_name,
        "max_seq_len": values["max_seq_len"],
        "seed": values["seed"],
        "model": model_cfg,
        "tokenizer": {"name": model_id, "kwargs": {"model_max_length": values["max_seq_len"]}},
        "train_loader": dataset_loader(ref, "train", data_format, values, template, read.get("train")),
        "optimizer": values["optimizer"],
        "scheduler": values["scheduler"],
        "algorithms": values["algorithms"],
        "max_duration": values["max_duration"],
        "global_train_batch_size": values["global_train_batch_size"],
        "device_train_microbatch_size": values["device_train_microbatch_size"],
        "device_eval_batch_size": values["device_eval_batch_size"],
        "precision": values["precision"],
        "progress_bar": False, "log_to_console": True, "console_log_interval": "1ba", "python_log_level": "info",
        "callbacks": {"speed_monitor": {"window_size": 10}, "lr_monitor": {}, "runtime_estimator": {}},
        "loggers": {},
        "save_folder": str(run_dir / "checkpoints"),
        "save_interval": values["save_interval"],
        "save_num_checkpoints_to_keep": values["save_num_checkpoints_to_keep"],
        "autoresume": True,
        "metadata": {"otlake_dataset": ref.name, "otlake_dataset_dir": str(ref.folder),
                     "otlake_dataset_card_sha256": ref.card_sha256, "otlake_train_sha256": ref.train_sha256,
                     "otlake_eval_sha256": ref.eval_sha256, "otlake_data_format": data_format,
                     "otlake_preset": preset, "otlake_template": template, "otlake_overrides": list(overrides),
                     "otlake_lengths": lengths},
    }
    if template == "chat":
        cfg["code_paths"] = [str(CHAT_CODE)]
    if values["fsdp_config"]:
        cfg["fsdp_config"] = values["fsdp_config"]
    eval_left = lengths.get("eval", {}).get("trained", ref.eval_examples) if lengths["checked"] else ref.eval_examples
    if ref.eval_examples and ref.eval_sha256 and eval_left:
        cfg["eval_loader"] = dataset_loader(ref, "eval", data_format, values, template, read.get("eval"))
        cfg["eval_interval"] = values["eval_interval"]
        cfg["eval_first"] = values["eval_first"]
    else:
        cfg["eval_interval"] = 1  # LLM Foundry's default; no eval loader, so nothing runs
    cfg = apply_overrides(cfg, overrides)
    peft = cfg.get("model", {}).get("peft_config") if isinstance(cfg.get("model"), dict) else None
    if isinstance(peft, dict) and "task_type" not in peft:
        peft["task_type"] = "CAUSAL_LM"  # the only task LLM Foundry's PEFT support takes; it refuses a config without
    batch = cfg.get("global_train_batch_size")
    trained = lengths["train"]["trained"] if lengths["checked"] else ref.train_examples
    if isinstance(batch, int) and 0 < trained < batch and cfg["train_loader"].get("drop_last"):
        # the train loader drops the last incomplete batch: an epoch would hold no batch at all
        raise TrainError(f"dataset {ref.name!r} gives {trained} training example(s) at max_seq_len "
                         f"{values['max_seq_len']}, fewer than global_train_batch_size {batch}: pass "
                         f"global_train_batch_size={trained} or less, or a dataset with more examples")
    if preset == "cpu-small" and not any(o.partition("=")[0].strip() == "max_duration" for o in overrides) \
            and isinstance(batch, int) and batch > 0:
        # one epoch counted in batches (whole batches: the last incomplete one is dropped): on CPU, Composer with
        # an epoch duration sat over 7 minutes on a first batch that takes a minute with the same data and a
        # batch duration (BENCHMARKS.md, "Fine-tuning")
        cfg["max_duration"] = f"{trained // batch}ba"
    check_config(cfg)
    return cfg


def _fit_examples(ref: DatasetRef, model_id: str, seq: int, template: str, files: dict[str, Path],
                  data_format: str, too_long: str, check: bool, run_dir: Path) -> tuple[dict, dict[str, Path]]:
    """What the run trains on at max_seq_len: metadata.otlake_lengths, and the JSONL files to read per split."""
    why = "--no-check-lengths" if not check else ("the dataset has no train.jsonl" if "train" not in files
                                                   else fit.unmeasurable(model_id))
    if why:
        return {"checked": False, "why": why, "seq": seq}, {}
    measured = fit.measure(model_id, seq, template, files)
    # MDS shards are read as written: only a JSONL run can leave examples out
    dropping = too_long == "drop" and data_format == "jsonl"
    report: dict = {"checked": True, "seq": seq, "too_long": too_long if data_format == "jsonl" else "keep"}
    for split, found in measured.items():
        counts = found.counts()
        # LLM Foundry itself drops an example whose prompt fills the window; it trains on the truncated rest
        counts["trained"] = counts["fits"] if dropping else counts["fits"] + counts["truncated"]
        report[split] = counts
    train = report["train"]
    if not train["trained"]:
        raise TrainError(f"none of the {train['examples']} training examples of dataset {ref.name!r} "
                         + ("fits whole" if dropping else "leaves a response token") + f" in max_seq_len {seq} "
                         f"(the shortest is {train['shortest']} tokens in the {template} form): pass --seq "
                         f"{train['shortest']} or more")
    read = fit.write_fitting(files, measured, run_dir / "data") if dropping else {}
    return report, {split: path for split, path in read.items() if path != files[split]}


def parse_value(text: str):
    """A command-line value as YAML reads it, with 1e-5 a number (YAML 1.1 reads it as a string)."""
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as e:
        raise TrainError(f"value {text!r} is not YAML ({str(e).splitlines()[0]})") from None
    if isinstance(value, str):
        try:
            return float(value) if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+", value) else value
        except ValueError:
            return value
    return value


def apply_overrides(cfg: dict, overrides: tuple[str, ...] | list[str]) -> dict:
    """A copy of cfg with each `a.b.c=value` set (a value of `null` stores null, as LLM Foundry reads it)."""
    out = copy.deepcopy(cfg)
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise TrainError(f"override {item!r} is not KEY=VALUE (a dotted key such as optimizer.lr=2e-5)")
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise TrainError(f"override {item!r}: {'.'.join(parts[:i + 1])} is {child!r}, not a mapping")
            node = child
        node[parts[-1]] = parse_value(text)
    return out


def check_config(cfg: dict) -> None:
    """The mistakes LLM Foundry would only report after loading the model: unknown or derived keys, no data."""
    for key in cfg:
        if key not in FOUNDRY_KEYS:
            near = difflib.get_close_matches(key, sorted(FOUNDRY_KEYS), n=1)
            raise TrainError(f"config key {key!r} is not one LLM Foundry knows" +
                             (f" (did you mean {near[0]!r}?)" if near else ""))
        if key in DERIVED_KEYS:
            raise TrainError(f"config key {key!r} is set by LLM Foundry itself: remove it")
    for key in ("model", "tokenizer", "optimizer", "scheduler", "train_loader", "max_duration", "max_seq_len"):
        if cfg.get(key) in (None, "", {}):
            raise TrainError(f"config key {key!r} is required by LLM Foundry and is missing or empty")
    for key in ("global_train_batch_size", "max_seq_len"):
        if not isinstance(cfg.get(key, 1), int) or cfg.get(key, 1) < 1:
            raise TrainError(f"config key {key!r} must be a positive integer, not {cfg.get(key)!r}")
    if cfg.get("autoresume") and not cfg.get("save_folder"):
        raise TrainError("autoresume needs a save_folder to resume from: set save_folder, or autoresume=false "
                         "for a run without checkpoints")


def dump(cfg: dict) -> str:
    """The YAML text, keys in the order built (LLM Foundry reads it with OmegaConf)."""
    head = ("# LLM Foundry finetuning config written by `otlake train config`; run it with `otlake train run "
            "THIS.yaml`\n# or unchanged with `llmfoundry train THIS.yaml`. metadata.otlake_* says what it "
            "trains on.\n")
    return head + yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False, width=120)


def load(path: Path) -> dict:
    """A run's YAML, checked as at `train config` time."""
    try:
        cfg = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise TrainError(f"no config at {path}: write one with `otlake train config`") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise TrainError(f"{path} is not a YAML file LLM Foundry can read: {str(e).splitlines()[0]}") from None
    if not isinstance(cfg, dict):
        raise TrainError(f"{path} is not an LLM Foundry config: its top level is not a mapping")
    try:
        check_config(cfg)
    except TrainError as e:
        raise TrainError(f"{path}: {e}") from None
    return cfg
