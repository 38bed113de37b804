"""`otlake train ...`: LLM Foundry configs and runs, Hugging Face exports, tokenizers (logic in train/)."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from .cli_common import ErrorsAsClickGroup, home_option


@click.group(cls=ErrorsAsClickGroup)
def train() -> None:
    """Fine-tune a repair model with LLM Foundry on a built dataset, export it, train tokenizers.

    LLM Foundry runs in its own environment (`make train-env`); config and
    tokenizer need only the default one.

    \b
    Example:
      otlake train config --dataset fixes-v1 --model qwen-hf --preset cpu-small --out run.yaml max_duration=20ba
      otlake train run run.yaml
      otlake train export fixes-v1-cpu-small --out fixes-v1-model
      otlake eval run --bench debugbench --model fixes-v1-model --limit 20 --out eval-tuned
    """


@train.command()
@click.option("--dataset", required=True, help="A dataset's name in the warehouse, or a built dataset folder.")
@click.option("--model", default=None,
              help="A Hugging Face causal-LM folder or hub id (replit-7b default: "
                   "deepseek-ai/deepseek-coder-7b-instruct-v1.5).")
@click.option("--preset", type=click.Choice(["replit-7b", "cpu-small"]), default="cpu-small", show_default=True,
              help="replit-7b: Replit's published 8xH100 run; cpu-small: one CPU process, fp32.")
@click.option("--format", "data_format", type=click.Choice(["jsonl", "mds"]), default="jsonl", show_default=True,
              help="Read the dataset's JSONL, or its MDS shards (`dataset build --format mds`).")
@click.option("--template", type=click.Choice(["chat", "plain"]), default=None,
              help="chat: each example as a user and an assistant turn in the model's chat template (how `eval "
                   "--model DIR` asks it); plain: prompt + response as they are. Default: chat where the model "
                   "folder's tokenizer has a chat template.")
@click.option("--seq", type=click.IntRange(64), default=None, help="max_seq_len (default 2048 for replit-7b, "
                                                                     "1024 for cpu-small).")
@click.option("--too-long", type=click.Choice(["drop", "keep"]), default="drop", show_default=True,
              help="drop: train only on examples that fit max_seq_len whole (a filtered copy in the run folder); "
                   "keep: leave them to LLM Foundry, which drops those whose prompt fills it and cuts the "
                   "response of the rest.")
@click.option("--check-lengths/--no-check-lengths", default=True, show_default=True,
              help="Measure each example with the model's tokenizer in LLM Foundry's environment (about 25 s).")
@click.option("--run-dir", type=click.Path(path_type=Path), default=None,
              help="Run folder: checkpoints, log, metrics (default: DATASET-PRESET beside --out).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The YAML file to write.")
@click.argument("overrides", nargs=-1)
@home_option
def config(dataset: str, model: str | None, preset: str, data_format: str, template: str | None, seq: int | None,
           too_long: str, check_lengths: bool, run_dir: Path | None, out: Path, overrides: tuple[str, ...],
           home: str | None) -> None:
    """Write an LLM Foundry finetuning YAML; KEY=VALUE arguments override any value.

    It checks every line of the dataset's JSONL, and measures each example
    in the model's tokenizer: how many fit max_seq_len, and what happens to
    the rest (--too-long).

    \b
    Example:
      otlake train config --dataset fixes-v1 --preset replit-7b --out replit.yaml
      otlake train config --dataset fixes-v1 --model ./qwen-hf --out run.yaml optimizer.lr=5e-5 max_duration=2ep
    """
    from train.run import run_dir_of

    from .training import train_config

    cfg = train_config(dataset, model, out, preset, data_format, overrides, run_dir, seq, home, template, too_long,
                       check_lengths)
    meta = cfg["metadata"]
    click.echo(f"wrote {out}: {preset} on dataset {meta['otlake_dataset']} ({data_format}, "
               f"{meta['otlake_template']} template), model "
               f"{cfg['model']['pretrained_model_name_or_path']}, run folder {run_dir_of(cfg, out)}")
    if overrides:
        click.echo(f"overrides: {' '.join(overrides)}")
    for line in lengths_report(meta["otlake_lengths"]):
        click.echo(line)


def lengths_report(lengths: dict) -> list[str]:
    """`train config`'s lines on how the examples fit max_seq_len."""
    seq = lengths["seq"]
    if not lengths["checked"]:
        return [(f"lengths not checked ({lengths['why']}): LLM Foundry will drop examples whose prompt fills "
                f"{seq} tokens and cut the response of longer ones")]
    lines = []
    for split in ("train", "eval"):
        c = lengths.get(split)
        if not c:
            continue
        line = (f"{split}: {c['fits']} of {c['examples']} examples fit {seq} tokens (longest {c['longest']})")
        if c["fits"] < c["examples"]:
            if lengths["too_long"] == "drop":
                line += f"; dropped the {c['examples'] - c['fits']} that do not"
            else:
                line += (f"; LLM Foundry will drop {c['dropped']} whose prompt fills the window and cut the "
                         f"response of {c['truncated']}")
            line += f" (--seq {c['longest']} fits all)"
        lines.append(line)
    if lengths.get("eval") and not lengths["eval"]["trained"]:
        lines.append("no eval example fits: the run has no eval loader")
    return lines


@train.command()
@click.argument("yaml_path", metavar="RUN.yaml", type=click.Path(path_type=Path))
@click.argument("overrides", nargs=-1)
@click.option("--gpus", type=click.IntRange(0), default=None,
              help="Processes to launch (default: the GPUs nvidia-smi lists; several go through composer's launcher).")
def run(yaml_path: Path, overrides: tuple[str, ...], gpus: int | None) -> None:
    """Run LLM Foundry on a YAML; a killed run resumes from its latest checkpoint when run again.

    \b
    Example:
      otlake train run run.yaml
      otlake train run run.yaml max_duration=4ba save_interval=2ba
    """
    from .training import train_run

    result = train_run(yaml_path, overrides, lambda line: click.echo(line, err=True), gpus)
    click.echo(f"run {result.run_dir.name}: {result.summary()}")
    click.echo(f"metrics: {result.run_dir / 'metrics.jsonl'}, loss curve: {result.run_dir / 'loss.png'}")


@train.command()
@click.argument("run_path", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The Hugging Face folder to write.")
@click.option("--gguf", "gguf_type", type=click.Choice(["q4_k_m", "q8_0", "f16"]), default=None,
              help="Also write OUT/model-TYPE.gguf with llama.cpp's converter, for the local LM server.")
def export(run_path: Path, out: Path, gguf_type: str | None) -> None:
    """Write a Hugging Face checkpoint (safetensors + tokenizer) from a run's newest checkpoint.

    RUN is a run folder, its YAML, or a Composer .pt file. A LoRA run is
    merged into its base model. `otlake eval run --model OUT` loads it;
    with --gguf, `otlake lm fetch --model NAME --from OUT/model-q4_k_m.gguf`
    stores the GGUF for `otlake lm serve --model NAME` and `--model local:NAME`.

    \b
    Example:
      otlake train export fixes-v1-cpu-small --out fixes-v1-model
      otlake train export fixes-v1-cpu-small --out fixes-v1-model --gguf q4_k_m
    """
    from .training import train_export

    result = train_export(run_path, out)
    click.echo(f"wrote {result['out']}: {result['architecture']}, {result['parameters']:,} parameters"
               f"{', LoRA merged' if result['lora_merged'] else ''}, from {result['checkpoint']} "
               f"in {result['seconds']} s")
    if gguf_type:
        from train.gguf import hf_to_gguf

        got = hf_to_gguf(Path(result["out"]), Path(result["out"]) / f"model-{gguf_type}.gguf", gguf_type)
        click.echo(f"wrote {got['gguf']}: {got['type']}, {got['bytes']:,} bytes in {got['seconds']} s "
                   f"(llama.cpp's converter from {got['converter']})")


@train.command(name="to-gguf")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The .gguf file to write.")
@click.option("--type", "gguf_type", type=click.Choice(["q4_k_m", "q8_0", "f16"]), default="q4_k_m",
              show_default=True, help="Weights of the GGUF (q4_k_m: as the stock local model ships).")
def to_gguf(folder: Path, out: Path, gguf_type: str) -> None:
    """Convert a Hugging Face folder to GGUF with llama.cpp's own converter, for `otlake lm serve`.

    \b
    Example:
      otlake train to-gguf fixes-v1-model --out fixes-v1.gguf
      otlake lm fetch --model fixes-v1 --from fixes-v1.gguf
    """
    from train.gguf import hf_to_gguf

    got = hf_to_gguf(folder, out, gguf_type)
    click.echo(f"wrote {got['gguf']}: {got['type']}, {got['bytes']:,} bytes in {got['seconds']} s "
               f"(llama.cpp's converter from {got['converter']})")


@train.command(name="import-gguf")
@click.argument("model", required=False)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The Hugging Face folder to write.")
@home_option
def import_gguf_(model: str | None, out: Path, home: str | None) -> None:
    """Convert a GGUF model (default: the fetched local one) to a Hugging Face folder to fine-tune.

    Quantized weights are dequantized to fp32 by transformers' GGUF loader.

    \b
    Example:
      otlake train import-gguf qwen2.5-coder-0.5b --out qwen-hf
    """
    from .training import import_gguf

    result = import_gguf(model, out, home)
    click.echo(f"wrote {result['out']}: {result['architecture']}, {result['parameters']:,} parameters, from "
               f"{result['gguf']} in {result['seconds']} s")


@train.command()
@click.option("--dataset", required=True, help="A dataset's name in the warehouse, or a built dataset folder.")
@click.option("--vocab", type=click.IntRange(300), default=8000, show_default=True, help="Vocabulary size.")
@click.option("--base", default=None, help="A tokenizer to compare with: a Hugging Face folder (tokenizer.json).")
@click.option("--held-out", type=click.FloatRange(0.01, 0.9), default=0.1, show_default=True,
              help="Share of the dataset's distinct files kept out of training, to measure on.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the tokenizer.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@home_option
def tokenizer(dataset: str, vocab: int, base: str | None, held_out: float, out: Path, fmt: str,
              home: str | None) -> None:
    """Train a byte-level BPE on the dataset's code; report tokens per character on held-out code.

    It is compared with the same BPE trained on prose (Python's own
    documentation, pydoc_data) and with --base, the model's tokenizer.

    \b
    Example:
      otlake train tokenizer --dataset fixes-v1 --vocab 8000 --base qwen-hf --out tok-code
    """
    from train.tokenizer import train_tokenizer

    from .training import dataset_ref

    report = train_tokenizer(dataset_ref(dataset, home), vocab, out, base=base, held_out=held_out)
    if fmt == "json":
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f"wrote {out}: byte-level BPE, vocabulary {report['vocab']}, trained on {report['train_files']} "
               f"files ({report['train_chars']:,} characters)")
    click.echo(f"held-out code: {report['held_out_files']} files, {report['held_out_chars']:,} characters")
    for name, row in report["tokenizers"].items():
        click.echo(f"  {name:<12} {row['tokens_per_char']:.4f} tokens/char  ({row['tokens']:,} tokens, "
                   f"vocabulary {row['vocab']:,})")
