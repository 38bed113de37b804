"""`otlake eval ...`: judge repair models on benchmarks, list and report runs, freeze and make benches."""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from pathlib import Path

import click
import orjson

from eval.metrics import METRICS

from .cli_common import ErrorsAsClickGroup, home_option
from .output import render

SHOWN = METRICS


@click.group(cls=ErrorsAsClickGroup, name="eval")
def eval_() -> None:
    """Judge repair models: DebugBench, a frozen Replit-style set, or your own JSONL.

    \b
    Example:
      otlake eval run --bench debugbench --model oracle --limit 20 --out /tmp/eval-oracle
      otlake eval run --bench debugbench --model local --limit 20 --out /tmp/eval-qwen
      otlake eval report /tmp/eval-oracle /tmp/eval-qwen
      otlake eval list
    """


@eval_.command()
@click.option("--bench", type=click.Choice(["debugbench", "replit", "jsonl"]), default="debugbench",
              show_default=True, help="debugbench: DebugBench-format records; replit: a set frozen with "
                                      "`eval make-replit`; jsonl: {id, buggy_code, fixed_code, tests?} lines.")
@click.option("--data", multiple=True, help="Files or folders of the bench (repeatable). debugbench: default "
                                            "$OTLAKE_DEBUGBENCH, else ../shared/datasets/debugbench; replit: a "
                                            "frozen set's name or file (default: every frozen set).")
@click.option("--model", required=True,
              help="oracle, noop, local[:MODEL] (the local server, started if none runs), a Hugging Face "
                   "checkpoint folder, or a DSPy model string such as openai/<served-name> "
                   "(with $OTLAKE_LM_API_BASE). chat:local[:MODEL] or chat:openai/<served-name>: the same "
                   "server asked the bare prompt as one chat turn, the form `train config --template chat` "
                   "trains on (no DSPy around it).")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="At most this many items, taken round robin over subtypes in a seeded order.")
@click.option("--samples", type=click.IntRange(1), default=1, show_default=True,
              help="Answers per item; with more than 1, pass@k for k = samples (unbiased estimator).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the item choice and the sampling.")
@click.option("--temperature", type=click.FloatRange(0), default=0.1, show_default=True)
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=0.95, show_default=True)
@click.option("--top-k", type=click.IntRange(1), default=50, show_default=True)
@click.option("--max-tokens", type=click.IntRange(1), default=512, show_default=True)
@click.option("--fewshot", type=click.IntRange(0), default=0, show_default=True,
              help="DSPy models: show this many of the bench's items (shortest reference diffs, one subtype after "
                   "another) as demos before each prompt; they are left out of the items judged.")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Warm pyright language servers for the checks.")
@click.option("--concurrency", type=click.IntRange(1), default=4, show_default=True,
              help="LM requests in flight at once.")
@click.option("--batch", type=click.IntRange(1), default=64, show_default=True,
              help="Items per partition: targets, reference tests, answers and scores a batch at a time "
                   "(the progress bar counts batches; the rows do not depend on it).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for run.json (the summary) and items.jsonl (every sample); `eval report` reads it.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="json: print one JSON object (bench, model, items, metrics, by_category, not_scored) "
                   "instead of tables.")
@home_option
def run(bench: str, data: tuple[str, ...], model: str, limit: int | None, samples: int, seed: int,
        temperature: float, top_p: float, top_k: int, max_tokens: int, fewshot: int, workers: int, concurrency: int,
        batch: int, out: Path, fmt: str, home: str | None) -> None:
    """Ask a model for a numbered line diff for each item and score it.

    Each item's prompt is the sentinel schema: the numbered buggy code, the
    diagnostic the meta-LSP reports for the bug, and its line. The answer's
    diff is applied strictly, then scored: target as reference (the hunk at
    the target equals the reference's), deletes only (the diff only removes
    code; lower is better), extracted, applies, changes, target gone
    (meta-LSP re-check), functional (the item's tests, in the sandbox), AST
    exact match and AST match with string fallback against the reference.
    A sample whose meta-LSP check or sandbox run failed is not scored for
    that metric and counted apart (`not_scored`).
    The run and every sample are stored in `eval_runs` and `eval_items`, in
    one commit when the run ends: a failed or killed run stores none (its
    `runs` row says failed or interrupted, and `eval list` shows it).

    \b
    Example:
      otlake eval run --bench debugbench --model noop --limit 10 --out /tmp/noop
      otlake eval run --bench jsonl --data mine.jsonl --model openai/qwen --samples 5 --out /tmp/mine
    """
    from eval.models import Sampling, resolve_model
    from eval.run import RunOptions
    from lsp_runner.pool import LspPool
    from warehouse.store import Warehouse

    from .cli_common import PartitionProgress
    from .stages import run_eval

    sampling = Sampling(temperature, top_p, top_k, max_tokens, seed)
    options = RunOptions(samples=samples, sampling=sampling, limit=limit, batch=batch)
    with contextlib.ExitStack() as stack:
        lm = None
        chat = model.startswith("chat:")
        model = model.removeprefix("chat:")
        if model == "local" or model.startswith("local:"):
            from .cli import _lm_settings

            lm = _lm_settings(stack, model, concurrency, home)
            model = lm.model
        elif "/" in model and not os.path.isdir(model):
            from .cli import _lm_settings

            lm = _lm_settings(stack, model, concurrency, home)
        repair_model = resolve_model(f"chat:{model}" if chat else model, lm)
        pool = stack.enter_context(LspPool(size=workers))
        bar = stack.enter_context(PartitionProgress("eval (batches of items)")) if fmt == "table" else None
        with Warehouse(home) as wh:
            report = run_eval(wh, bench, data, repair_model, options, seed, pool, bar, out, fewshot)
    write_run(report, out)
    if fmt == "json":
        click.echo(orjson.dumps(report.as_json(), option=orjson.OPT_NON_STR_KEYS).decode())
        return
    click.echo(f"run {report.run_id}: {report.bench}, model {report.model}, {report.metrics.get('items', 0)} items "
               f"x {samples} sample{'s' if samples > 1 else ''} in {report.seconds:.1f} s; wrote {out}")
    if report.skipped:
        click.echo("skipped: " + ", ".join(f"{r} {n}" for r, n in report.skipped.items()))
    if any(report.not_scored.values()):  # the meta-LSP or the sandbox failed: left out of those metrics
        click.echo("not scored (infrastructure failed): "
                   + ", ".join(f"{m} {n} samples" for m, n in report.not_scored.items() if n))
    tests = report.result.tests
    if tests.get("items"):
        click.echo(f"tests: {tests['with_tests']} of {tests['items']} items have tests; references passing their "
                   f"derived tests: {_pct(tests['reference_pass_rate'])}")
    skipped = Counter(r["subtype"] or "-" for r in report.result.rows if r["status"] == "skipped")
    click.echo(summary_table(report.metrics, report.by_subtype, samples, skipped))


def summary_table(metrics: dict, groups: dict, samples: int, skipped: Counter) -> str:
    """The metrics table: one row for all items, then one per group (items skipped beside the items scored)."""
    names = list(SHOWN) + ([f"{m}@{samples}" for m in SHOWN] if samples > 1 else [])
    rows = [("all", metrics.get("items", 0), sum(skipped.values()), *(_pct(metrics.get(n)) for n in names))]
    for g in sorted(set(groups) | set(skipped)):
        v = groups.get(g, {"items": 0})
        rows.append((g, v["items"], skipped.get(g, 0), *(_pct(v.get(n)) for n in names)))
    return render(["group", "items", "skipped", *names], rows, "table")


def write_run(report, out: Path) -> None:
    """run.json and items.jsonl in the --out folder (replaced)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_bytes(orjson.dumps(report.as_json(), option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    with open(out / "items.jsonl", "wb") as f:
        f.writelines(orjson.dumps({"run_id": report.run_id, **row}) + b"\n" for row in report.result.rows)


@eval_.command(name="list")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@home_option
def list_(fmt: str, home: str | None) -> None:
    """List past eval runs, newest first, with their main metrics.

    Runs that did not finish are listed too, with their status (failed;
    interrupted: its process died; running) and no metrics.

    \b
    Example:
      otlake eval list
      otlake sql "SELECT subtype, avg(target_gone::INT) FROM eval_items WHERE run_id = 'eval-...' GROUP BY 1"
    """
    from eval.stage import list_runs
    from warehouse.store import Warehouse
    from warehouse.stores import DuckDBStore

    with Warehouse(home, read_only=True) as wh:
        columns, rows = list_runs(DuckDBStore(wh.con))
    if not rows and fmt == "table":
        click.echo("no eval runs yet: run one with `otlake eval run --bench debugbench --model oracle --out DIR`")
        return
    click.echo(render(columns, rows, fmt))


def _pct(value) -> str:
    return "-" if value is None else f"{value:.1%}"


@eval_.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for report.md, metrics.png and by_category.png.")
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="Add the newest oracle and noop runs of the warehouse on the same items when RUNS lack them "
                   "(their folders must still exist).")
@home_option
def report(runs: tuple[Path, ...], out: Path, baselines: bool, home: str | None) -> None:
    """Write a Markdown table and PNG plots comparing eval runs (recomputed from their items.jsonl).

    \b
    Example:
      otlake eval report /tmp/eval-oracle /tmp/eval-noop /tmp/eval-qwen --out /tmp/report
    """
    from eval.report import markdown, plot, read_run

    loaded = [read_run(folder) for folder in runs]
    if baselines:
        loaded += _baseline_runs(loaded, home)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(markdown(loaded))
    pictures = plot(loaded, out)
    click.echo(f"wrote {out / 'report.md'}, " + ", ".join(p.name for p in pictures) + f" ({len(loaded)} runs)")


def _baseline_runs(loaded: list, home: str | None) -> list:
    """The newest done oracle and noop runs over the same items as the given runs, when those lack them."""
    from eval.report import read_run
    from eval.stage import baseline_folders
    from warehouse.store import Warehouse
    from warehouse.stores import DuckDBStore

    have = {(r.model, r.bench) for r in loaded}
    with Warehouse(home, read_only=True) as wh:
        found = baseline_folders(DuckDBStore(wh.con), [r.run_id for r in loaded])
    return [read_run(folder) for model, bench, folder in found
            if (model, bench) not in have and folder and Path(folder, "items.jsonl").exists()]


@eval_.command(name="make-replit")
@click.argument("name")
@click.option("--per-rule", type=click.IntRange(1), default=20, show_default=True,
              help="At most this many items per rule (one pair per repl and rule).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the order items are taken in.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The JSONL file to write (default: HOME/eval-sets/NAME.jsonl).")
@click.option("--decontaminate-against", "extra", multiple=True, type=click.Path(exists=True),
              help="Another training set to decontaminate against (JSON/JSONL file or folder; repeatable); every "
                   "dataset built in the warehouse always counts.")
@click.option("--overwrite", is_flag=True, help="Replace an eval set of the same name and its file.")
@home_option
def make_replit(name: str, per_rule: int, seed: int, out: Path | None, extra: tuple[str, ...], overwrite: bool,
                home: str | None) -> None:
    """Freeze a held-out Replit-style eval set from the warehouse's verified pairs.

    Pairs of public repls with an accepted fix (user-mined first, else LM),
    sampled per rule; low-quality code dropped, PII anonymized, duplicates
    and anything overlapping a training set built so far dropped (pairs in a
    dataset, near duplicates, shared 13-token runs). The set is registered:
    `eval run --bench replit --data NAME` judges a model on it, and every
    later `dataset build` decontaminates against it.

    \b
    Example:
      otlake eval make-replit heldout-v1 --per-rule 10
      otlake eval run --bench replit --data heldout-v1 --model oracle --out /tmp/heldout-oracle
    """
    from warehouse.store import Warehouse, data_home

    from .cli_common import PartitionProgress
    from .stages import make_replit as freeze

    path = out or data_home(home) / "eval-sets" / f"{name}.jsonl"
    with Warehouse(home) as wh, PartitionProgress("make-replit (repls)") as bar:
        frozen = freeze(wh, name, path, per_rule, seed, overwrite, extra, progress=bar)
    counts = frozen.counts
    click.echo(f"froze {name}: {counts['kept']} items from {counts['candidates']} candidate pairs -> {frozen.path}")
    if counts["dropped"]:
        click.echo("dropped: " + ", ".join(f"{k} {v}" for k, v in counts["dropped"].items()))
    click.echo(f"decontaminated against {len(frozen.against)} training file(s); sha256 {frozen.sha256}")


@eval_.command()
@click.option("--from", "source", type=click.Path(exists=True, dir_okay=False), required=True,
              help="Correct solutions: a JSON list or JSONL, the code under oracle_code, code, solution or "
                   "fixed_code; slug/id, description and examples are carried over (tests derive from examples).")
@click.option("--subtypes", default=None, metavar="S,...", help="Bug kinds to plant (default: all ten).")
@click.option("--seed", type=int, default=0, show_default=True, help="Chooses the site of each bug.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for python3_<subtype>.json files in DebugBench's format.")
@click.option("--injector", type=click.Choice(["rules", "lm", "both"]), default="rules", show_default=True,
              help="rules: deterministic rule-based injectors; lm: ask an LM (--lm) for a one-line bug; both.")
@click.option("--lm", "model", default=None,
              help="The LM for --injector lm: a DSPy model string (with $OTLAKE_LM_API_BASE) or local[:MODEL].")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Warm pyright language servers for the checks.")
@home_option
def inject(source: str, subtypes: str | None, seed: int, out: Path, injector: str, model: str | None, workers: int,
           home: str | None) -> None:
    """Plant DebugBench-style bugs into correct solutions; keep those the meta-LSP flags at the planted line.

    New problems after a model's training cutoff (the LiveCodeBench idea):
    each injector is rule-based and deterministic in (code, subtype, seed).
    The output is a DebugBench-format folder for `eval run --bench debugbench --data`.

    \b
    Example:
      otlake eval inject --from solutions.jsonl --out /tmp/fresh
      otlake eval run --bench debugbench --data /tmp/fresh --model oracle --out /tmp/fresh-oracle
    """
    from eval.inject import SUBTYPES
    from eval.plant import inject_bugs, read_solutions
    from lsp_runner.pool import LspPool

    chosen = tuple(s.strip() for s in (subtypes or ",".join(SUBTYPES)).split(",") if s.strip())
    unknown = [s for s in chosen if s not in SUBTYPES]
    if unknown or not chosen:
        raise click.BadParameter(f"unknown subtype {', '.join(unknown) or '(none)'}; use: {', '.join(SUBTYPES)}",
                                 param_hint="--subtypes")
    solutions, bad = read_solutions(source)
    for line in bad:
        click.echo(f"skipped {line}", err=True)
    injectors = ("rules", "lm") if injector == "both" else (injector,)
    with contextlib.ExitStack() as stack:
        lm = None
        if "lm" in injectors:
            from .cli import _lm_settings

            lm = _lm_settings(stack, model, 4, home)
        pool = stack.enter_context(LspPool(size=workers))
        result = inject_bugs(solutions, chosen, seed, pool, out, bad, injectors, lm)
    rows = [(s, c["solutions"], c["kept"], ", ".join(f"{k.removeprefix('dropped:')} {v}" for k, v in c.items()
                                                    if k.startswith("dropped:")))
            for s, c in result.counts.items()]
    click.echo(render(["subtype", "solutions", "kept", "dropped"], rows, "table"))
    click.echo(f"wrote {len(result.files)} file(s) to {out}")
