"""`otlake dataset ...`: build training sets from the warehouse, list them, show one."""

from __future__ import annotations

import os
from pathlib import Path

import click
import orjson

from events.errors import ConfigError

from .cli_common import ErrorsAsClickGroup, PartitionProgress, home_option, parse_instant
from .output import FORMATS, render

# DebugBench beside the repository (../shared/datasets/debugbench); $OTLAKE_DEBUGBENCH overrides it
DEBUGBENCH = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "debugbench"


def _list(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def eval_set_paths(debugbench: str | None, no_debugbench: bool, extra: tuple[str, ...]) -> tuple[str, ...]:
    """DebugBench (unless switched off) and the other evaluation sets, from options and the environment."""
    paths = list(extra)
    paths += [p for p in os.environ.get("OTLAKE_DECONTAMINATE_AGAINST", "").split(os.pathsep) if p]
    if not no_debugbench:
        bench = Path(debugbench or os.environ.get("OTLAKE_DEBUGBENCH") or DEBUGBENCH)
        if not bench.exists():
            raise ConfigError(f"DebugBench records not found at {bench}: pass --debugbench DIR (or set "
                              "OTLAKE_DEBUGBENCH), or --no-debugbench to build without decontaminating against it")
        paths.insert(0, str(bench))
    return tuple(dict.fromkeys(paths))


@click.group(cls=ErrorsAsClickGroup)
def dataset() -> None:
    """Training sets on demand: hygiene, dedup, decontamination, LLM Foundry JSONL.

    \b
    Example:
      otlake dataset build repair-v1 --out datasets/repair-v1
      otlake dataset build small --rules 'pyright[reportUndefinedVariable]' --max 1000 --out /tmp/small
      otlake dataset list
      otlake dataset show repair-v1
    """


@dataset.command()
@click.argument("name")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Folder for train.jsonl, eval.jsonl and README.md (created; replaced only with --overwrite).")
@click.option("--since", default=None, help="Only pairs at or after this instant (RFC 3339).")
@click.option("--until", default=None, help="Only pairs before this instant (RFC 3339).")
@click.option("--rules", default=None, metavar="R,...", help="Only these rules, e.g. 'ruff[F821],pyright[reportX]'.")
@click.option("--exclude-rules", default=None, metavar="R,...", help="Leave these rules out.")
@click.option("--sources", default="user,lm", show_default=True, help="Diff sources: user, lm or both.")
@click.option("--max", "max_examples", type=click.IntRange(1), default=None,
              help="At most this many examples (a seeded sample of what survives hygiene).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the sample, the split, the order and the anonymization placeholders.")
@click.option("--eval-share", type=click.FloatRange(0, 1, max_open=True), default=0.05, show_default=True,
              help="Share of examples for eval (whole repls: never split between train and eval).")
@click.option("--dedup-threshold", type=click.FloatRange(0, 1, min_open=True), default=0.85, show_default=True,
              help="MinHash Jaccard similarity from which two examples are near-duplicates.")
@click.option("--decontam-threshold", type=click.FloatRange(0, 1, min_open=True), default=0.7, show_default=True,
              help="MinHash Jaccard similarity to an evaluation record from which an example is dropped.")
@click.option("--ngram", type=click.IntRange(5), default=13, show_default=True,
              help="Tokens in a run shared with an evaluation record that drops an example.")
@click.option("--debugbench", type=click.Path(exists=True), default=None,
              help=f"DebugBench records to decontaminate against (default $OTLAKE_DEBUGBENCH, else {DEBUGBENCH}).")
@click.option("--no-debugbench", is_flag=True, help="Do not decontaminate against DebugBench.")
@click.option("--decontaminate-against", "extra", multiple=True, type=click.Path(exists=True),
              help="Another evaluation set: a JSON or JSONL file or a folder of them (repeatable; also "
                   "$OTLAKE_DECONTAMINATE_AGAINST, separated by ':').")
@click.option("--workers", type=click.IntRange(1), default=os.cpu_count() or 1, show_default=True,
              help="Processes for the per-example steps (big builds only).")
@click.option("--empty-split", type=click.Choice(["skip", "fail"]), default="skip", show_default=True,
              help="A split with no example: skip writes no file for it (Hugging Face datasets cannot load an "
                   "empty one; the card says why), fail builds nothing.")
@click.option("--overwrite", is_flag=True, help="Replace a dataset of the same name and the files in --out.")
@click.option("--format", "data_format", type=click.Choice(["jsonl", "mds"]), default="jsonl", show_default=True,
              help="mds: also write MosaicML Streaming shards (DIR/mds/SPLIT) for LLM Foundry; needs the train "
                   "environment (`make train-env`).")
@home_option
def build(name: str, out: Path, since: str | None, until: str | None, rules: str | None, exclude_rules: str | None,
          sources: str, max_examples: int | None, seed: int, eval_share: float, dedup_threshold: float,
          decontam_threshold: float, ngram: int, debugbench: str | None, no_debugbench: bool,
          extra: tuple[str, ...], workers: int, empty_split: str, overwrite: bool, data_format: str,
          home: str | None) -> None:
    """Build a training set from accepted diffs and register it.

    Private repls are dropped; then auto-generated, minified and Python 2
    files and unparseable fixes; e-mails, IP addresses and secrets are
    replaced by placeholders; examples that overlap the evaluation sets,
    exact and near duplicates are dropped; whole repls go to eval. Every
    drop is counted by reason in DIR/README.md, the dataset card. A split
    with no example gets no file (see --empty-split). The same warehouse,
    options and seed give byte-identical files.

    \b
    Example:
      otlake dataset build repair-v1 --out datasets/repair-v1
      otlake dataset build recent --since 2024-03-01 --sources user --max 5000 --seed 7 --out /tmp/recent
      otlake dataset build repair-v1 --out datasets/repair-v1 --format mds --overwrite
    """
    from warehouse.store import Warehouse

    from .stages import DatasetOptions, build_dataset

    options = DatasetOptions(
        since_us=parse_instant(since, "--since") if since is not None else None,
        until_us=parse_instant(until, "--until") if until is not None else None, rules=_list(rules),
        exclude_rules=_list(exclude_rules), sources=_list(sources), max_examples=max_examples, seed=seed,
        eval_share=eval_share, dedup_threshold=dedup_threshold, decontam_threshold=decontam_threshold,
        ngram=ngram, eval_sets=eval_set_paths(debugbench, no_debugbench, extra), workers=workers,
        overwrite=overwrite, empty_split=empty_split)
    with Warehouse(home) as wh, PartitionProgress("dataset (repls)") as bar:
        report = build_dataset(wh, name, out, options, progress=bar)
    click.echo(f"run {report.run_id}: {report.summary()}")
    if report.anonymized_examples:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(report.anonymized_values.items()))
        click.echo(f"anonymized {report.anonymized_examples} example{'s' if report.anonymized_examples > 1 else ''} "
                   f"({kinds})")
    click.echo(f"wrote {report.out}: {written_files(report)} in {report.seconds:.1f} s "
               f"({report.selected / max(report.seconds, 1e-9):,.0f} examples/s)")
    for split, why in report.skipped.items():
        click.echo(f"{split}.jsonl not written: {why} (Hugging Face datasets cannot load an empty split; the "
                   "card lists only the splits written)")
    if data_format == "mds":
        from .training import write_mds

        shards = write_mds(report.out)
        click.echo(f"wrote {Path(report.out) / 'mds'}: MDS shards, "
                   + ", ".join(f"{split} {n}" for split, n in shards["splits"].items()))


def written_files(report) -> str:
    """'train.jsonl (80), eval.jsonl (4), README.md': the files a build wrote, with their examples."""
    counts = {"train": report.train, "eval": report.eval}
    return ", ".join([f"{s}.jsonl ({counts[s]})" for s in report.written] + ["README.md"])


@dataset.command(name="list")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@home_option
def list_(fmt: str, home: str | None) -> None:
    """List the datasets built in this warehouse.

    \b
    Example:
      otlake dataset list --format json
    """
    from train.dataset import datasets
    from warehouse.store import Warehouse
    from warehouse.stores import DuckDBStore

    with Warehouse(home, read_only=True) as wh:
        built = datasets(DuckDBStore(wh.con))
    columns = ["name", "created_at", "train", "eval", "out_dir", "run_id"]
    rows = [(d["dataset_id"], d["created_at"], d["train_examples"], d["eval_examples"], d["out_dir"], d["run_id"])
            for d in built]
    if not rows and fmt == "table":
        click.echo("no datasets yet: build one with `otlake dataset build NAME --out DIR`")
        return
    click.echo(render(columns, rows, fmt))


@dataset.command()
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@home_option
def show(name: str, fmt: str, home: str | None) -> None:
    """Describe one dataset: files, counts at each step, drops by reason, parameters.

    \b
    Example:
      otlake dataset show repair-v1
    """
    from train.dataset import dataset as dataset_row
    from warehouse.store import Warehouse
    from warehouse.stores import DuckDBStore

    with Warehouse(home, read_only=True) as wh:
        info = dataset_row(DuckDBStore(wh.con), name)
    info["created_at"] = info["created_at"].isoformat().replace("+00:00", "Z")
    if fmt == "json":
        click.echo(orjson.dumps(info, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f"{name}: train {info['train_examples']}, eval {info['eval_examples']}; built "
               f"{info['created_at']} by run {info['run_id']}")
    click.echo(f"files in {info['out_dir']} (README.md is the dataset card):")
    not_written = info["counts"].get("not_written", {})
    for file, key in (("train.jsonl", "train_sha256"), ("eval.jsonl", "eval_sha256"), ("README.md", "card_sha256")):
        split = file.removesuffix(".jsonl")
        click.echo(f"  {file}  sha256 {info[key]}" if info[key] is not None else
                   f"  {file}  not written: {not_written.get(split, 'the split is empty')}")
    steps = info["counts"]["steps"]
    click.echo(render(["step", "in", "out", "dropped"],
                      [(s["step"], s["in"], s["out"], ", ".join(f"{r} {n}" for r, n in s["dropped"].items() if n))
                       for s in steps], "table"))
    click.echo("parameters: " + orjson.dumps(info["params"]).decode())

