"""The API behind `otlake train ...`: config, run, export, tokenizer, import-gguf (logic in train/)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from train import config as config_mod
from train.errors import TrainError


def dataset_ref(dataset: str, home: str | None) -> config_mod.DatasetRef:
    """A dataset by its name in the warehouse, or a built dataset folder (train.jsonl + README.md)."""
    folder = Path(dataset)
    if folder.is_dir():
        card = folder / "README.md"
        if not card.is_file():
            raise TrainError(f"{folder} is not a dataset folder: it has no README.md (the card `otlake dataset "
                             "build` writes)")

        def digest(name: str) -> tuple[int, str | None]:
            path = folder / name
            if not path.is_file():
                return 0, None
            data = path.read_bytes()
            return data.count(b"\n"), hashlib.sha256(data).hexdigest()

        (train_n, train_sha), (eval_n, eval_sha) = digest("train.jsonl"), digest("eval.jsonl")
        return config_mod.DatasetRef(folder.name, folder.resolve(), train_n, eval_n, train_sha, eval_sha,
                                     hashlib.sha256(card.read_bytes()).hexdigest())
    from train.dataset import DatasetError
    from train.dataset import dataset as dataset_row
    from warehouse.store import Warehouse
    from warehouse.stores import DuckDBStore

    with Warehouse(home, read_only=True) as wh:
        try:
            row = dataset_row(DuckDBStore(wh.con), dataset)
        except DatasetError as e:
            raise TrainError(f"{e}, or pass a dataset folder") from None
    name, out_dir = row["dataset_id"], row["out_dir"]
    train_n, eval_n = row["train_examples"], row["eval_examples"]
    train_sha, eval_sha, card_sha = row["train_sha256"], row["eval_sha256"], row["card_sha256"]
    folder = Path(out_dir)
    if not folder.is_dir():
        raise TrainError(f"dataset {name!r} was written to {folder}, which no longer exists: rebuild it with "
                         f"`otlake dataset build {name} --out DIR --overwrite`")
    return config_mod.DatasetRef(name, folder, train_n, eval_n, train_sha, eval_sha, card_sha)


def train_config(dataset: str, model: str | None, out: Path, preset: str = "cpu-small", data_format: str = "jsonl",
                 overrides: tuple[str, ...] = (), run_dir: Path | None = None, seq: int | None = None,
                 home: str | None = None, template: str | None = None, too_long: str = "drop",
                 check_lengths: bool = True) -> dict:
    """Write the LLM Foundry YAML of a run to out; returns the config."""
    if preset not in config_mod.PRESETS:
        raise TrainError(f"unknown preset {preset!r}: the presets are {', '.join(config_mod.PRESETS)}")
    model = model or config_mod.DEFAULT_MODEL.get(preset)
    if not model:
        raise TrainError(f"preset {preset!r} has no default model: pass --model PATH_OR_HUB_ID")
    ref = dataset_ref(dataset, home)
    out = Path(out)
    cfg = config_mod.build_config(ref, model, preset, run_dir or out.resolve().parent / f"{ref.name}-{preset}",
                                  data_format, overrides, seq, template, too_long, check_lengths)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(config_mod.dump(cfg))
    return cfg


def train_run(yaml_path: Path, overrides: tuple[str, ...] = (), progress: Callable[[str], None] | None = None,
              gpus: int | None = None):
    """Launch LLM Foundry on the YAML; resumes a killed run from its latest checkpoint."""
    from train.run import launch

    return launch(Path(yaml_path), overrides, progress, gpus)


def train_export(run: Path, out: Path) -> dict:
    """A Hugging Face folder (safetensors, tokenizer, LoRA merged) from a run's newest checkpoint."""
    from train import foundry_env
    from train.run import latest_checkpoint

    checkpoint = latest_checkpoint(Path(run))
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    result = foundry_env.task("export", str(checkpoint), str(out))
    result["checkpoint"] = str(checkpoint)
    (out / "otlake_export.json").write_text(json.dumps({"checkpoint": str(checkpoint), "run": str(Path(run).resolve())},
                                                       indent=1) + "\n")
    return result


def import_gguf(model: str | None, out: Path, home: str | None = None) -> dict:
    """A GGUF model (a fetched one by name, or a file) as a Hugging Face folder, through transformers' GGUF loader."""
    from local_lm.fetch import stored_model
    from local_lm.models import DEFAULT_MODEL
    from train import foundry_env

    spec = model or DEFAULT_MODEL
    record = stored_model(spec, home)
    gguf = Path(record.path) if record is not None and record.format == "gguf" else Path(spec)
    if not gguf.is_file():
        raise TrainError(f"model {spec!r}: not a fetched GGUF model or a GGUF file (fetch it with "
                         "`otlake lm fetch`, or pass the .gguf path)")
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    result = foundry_env.task("import-gguf", str(gguf.resolve()), str(out))
    result["gguf"] = str(gguf.resolve())
    return result


def write_mds(folder: Path) -> dict:
    """MosaicML Streaming shards beside a dataset's JSONL (FOLDER/mds/SPLIT), written by streaming.MDSWriter."""
    from train import foundry_env

    return foundry_env.task("mds", str(Path(folder).resolve()))
