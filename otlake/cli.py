"""The otlake command line: a thin layer over the Python API."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

import click

from .cli_common import ErrorsAsClickGroup, PartitionProgress, Progress, home_option, parse_instant
from .dataset_cli import dataset
from .eval_cli import eval_
from .lm_cli import lm
from .lsp_cli import lsp
from .output import FORMATS, render, render_relation
from .train_cli import train


@click.group(cls=ErrorsAsClickGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="otlake")
def main() -> None:
    """otlake: an event-sourced warehouse of IDE sessions.

    \b
    Example:
      otlake simulate --repls 20 --seed 1 --out sessions.jsonl
      otlake ingest sessions.jsonl
      otlake sql "SELECT kind, count(*) FROM events GROUP BY kind"
      otlake replay REPL_ID --at 2024-03-01T12:00:00Z --out /tmp/repl
    """


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--checkpoint-every", type=click.IntRange(1), default=None,
              help="Store each file's content every K versions (fixed at a warehouse's first ingest; default 256).")
@click.option("--chunk-records", type=click.IntRange(1), default=200_000, show_default=True,
              help="Records per transaction; a killed run keeps whole chunks and a rerun resumes.")
@home_option
def ingest(files: tuple[Path, ...], checkpoint_every: int | None, chunk_records: int, home: str | None) -> None:
    """Ingest JSONL (.jsonl, .jsonl.gz) or Parquet event files.

    Bad records go to the `quarantine` table; the rest is stored. Re-ingesting
    a file changes nothing.

    \b
    Example:
      otlake ingest sessions.jsonl more.parquet
    """
    from otlake.stages import ingest_files
    from warehouse.store import Warehouse

    total = sum(_count_records(p) for p in files)
    with Warehouse(home) as wh, Progress(total, "ingest") as bar:
        report = ingest_files(wh, list(files), progress=bar, checkpoint_every=checkpoint_every,
                              chunk_records=chunk_records)
    click.echo(f"run {report.run_id}: {report.summary()}")
    click.echo(f"{report.records_in / max(report.seconds, 1e-9):,.0f} records/s; warehouse: "
               f"{Path(wh.path)}")


def _count_records(path: Path) -> int:
    if path.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path).metadata.num_rows
        except (OSError, pa.ArrowException):
            return 0  # no progress total; ingest says why the file cannot be read
    if path.suffix.lower() == ".gz":
        return 0
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


@main.command()
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="table, csv, or json (an array of row objects); values as DuckDB renders them.")
@click.option("--write", is_flag=True, help="Open the warehouse writable (default: read-only).")
@home_option
def sql(query: str, fmt: str, write: bool, home: str | None) -> None:
    """Run SQL on the warehouse; file_at() and files_at() replay files.

    QUERY is one or more statements (each runs; the last one's rows are
    printed), or - to read them from stdin. Statements that change the
    warehouse need --write.

    \b
    Example:
      otlake sql "SELECT d.code, file_at(d.repl_id, d.path, d.ts) AS code_then
                  FROM diagnostics d LIMIT 3" --format json
      otlake sql - --format csv < report.sql
    """
    from warehouse.sql import run_sql
    from warehouse.store import Warehouse

    if query == "-":
        # bytes that are not UTF-8 become lone surrogates, which run_sql names as not UTF-8
        query = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
    with Warehouse(home, read_only=not write) as wh:
        kind, rel = run_sql(wh.con, query)
        text, n = render_relation(rel, fmt) if rel is not None else ("", 0)
    # a statement that returns nothing (CREATE, SET, ...) says so instead of printing an empty table
    click.echo(text if n or kind == "SELECT" else "ok")


@main.command()
@click.argument("repl_id")
@click.option("--at", "at", default=None, help="Instant, RFC 3339 (default: now, i.e. the latest state).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the whole file tree here.")
@click.option("--path", "path", default=None, help="Print this one file to stdout.")
@home_option
def replay(repl_id: str, at: str | None, out: Path | None, path: str | None, home: str | None) -> None:
    """Rebuild a repl's files as they were at an instant.

    \b
    Example:
      otlake replay repl-000001-ab12cd --at 2024-03-01T12:00:00Z --out /tmp/repl
      otlake replay repl-000001-ab12cd --at 2024-03-01T12:00:00Z --path main.py
    """
    from warehouse.replay import write_tree
    from warehouse.store import Warehouse

    if (out is None) == (path is None):
        raise click.UsageError("give exactly one of --out DIR or --path FILE")
    instant = parse_instant(at)
    with Warehouse(home, read_only=True) as wh:
        travel = wh.travel()
        try:
            if path is not None:
                (text,) = travel.file_at([repl_id], [path], [instant])
                if text is None:
                    known = travel.paths_at(repl_id, instant)  # UnknownRepl if there is no such repl
                    hint = f" (files then: {', '.join(known[:10])})" if known else " (the repl had no files then)"
                    raise click.ClickException(f"{repl_id}: no readable file {path!r} at {at or 'now'}{hint}")
                sys.stdout.write(text)
                return
            written, unknown = write_tree(travel.files_at(repl_id, instant), out)
        finally:
            travel.cur.close()
    for p in unknown:
        click.echo(f"warning: {p}: content unknown at that instant (its stream broke; see quarantine)", err=True)
    click.echo(f"wrote {written} files of {repl_id} at {at or 'now'} to {out}")


@main.command()
@click.option("--repl", "repls", multiple=True, help="Only this repl (repeatable).")
@home_option
def verify(repls: tuple[str, ...], home: str | None) -> None:
    """Replay every repl to its end and compare with its stored snapshot events.

    Also checks the derived tables against the replay and that every key of them is unique.
    Mismatches are reported and recorded in `quarantine` (source 'verify').

    \b
    Example:
      otlake verify
    """
    from warehouse.store import Warehouse

    from .stages import verify as run_verify

    with Warehouse(home) as wh, PartitionProgress("verify (repls)") as bar:
        report = run_verify(wh, list(repls) or None, progress=bar)
    for m in report.mismatches + report.projection_errors:
        click.echo(f"MISMATCH {m['repl_id']} seq {m['seq']} [{m['kind']}]: {m['message']}")
    click.echo(f"run {report.run_id}: {report.repls} repls, {report.snapshots} snapshots: "
               f"{report.matched} match, {len(report.mismatches)} differ; "
               f"{len(report.projection_errors)} projection errors")
    if not report.ok():
        sys.exit(1)


@main.command()
@click.option("--repls", "repls", multiple=True, metavar="ID[,ID...]",
              help="Only these repls (repeatable, or comma-separated).")
@click.option("--since", default=None, help="Only diagnostics logged at or after this instant (RFC 3339).")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Warm pyright language servers checking in parallel.")
@click.option("--stylistic", default="ruff[E501],ruff[I001]", show_default=True,
              help="Rules filtered as stylistic, comma-separated.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds a language server may stay silent before it is restarted.")
@click.option("--batch-snapshots", type=click.IntRange(1), default=64, show_default=True,
              help="Snapshots per checker call (one ruff process each); each repl is committed whole, so a "
                   "killed run keeps the repls it finished.")
@home_option
def pairs(repls: tuple[str, ...], since: str | None, workers: int, stylistic: str, timeout: float,
          batch_snapshots: int, home: str | None) -> None:
    """Turn logged diagnostics into reproduced (code, diagnostic) pairs.

    Each diagnostic is filtered (private repl, non-Python file, code action,
    stylistic rule, file too large), or its repl is replayed to that instant
    and pyright + ruff check the file tree; a diagnostic that reproduces is
    stored in `pairs`. Diagnostics already decided are skipped, so a killed
    run picks up where it stopped.

    \b
    Example:
      otlake pairs --workers 2
      otlake pairs --repls repl-000001-ab12cd --since 2024-03-01T00:00:00Z
    """
    from warehouse.store import Warehouse

    from .stages import PairsOptions, build_pairs

    ids = tuple(r for value in repls for r in value.split(",") if r)
    options = PairsOptions(repls=ids, since_us=parse_instant(since, "--since") if since else None,
                           workers=workers, timeout_s=timeout, batch_snapshots=batch_snapshots,
                           stylistic=tuple(s.strip() for s in stylistic.split(",") if s.strip()))
    with Warehouse(home) as wh, PartitionProgress("pairs (repls)") as bar:
        report = build_pairs(wh, options, progress=bar)
    click.echo(f"run {report.run_id}: {report.summary()}")
    if report.already_decided:
        click.echo(f"({report.already_decided} diagnostics were decided by earlier runs and skipped)")
    rates = report.rates()
    if rates:
        click.echo(render(["rule", "checked", "reproduced", "rate"],
                          [(code, n, k, f"{rate:.0%}") for code, n, k, rate in rates], "table"))
    click.echo(f"{report.snapshots} snapshots checked in {report.seconds:.1f} s "
               f"({report.snapshots / max(report.seconds, 1e-9):.1f}/s); {report.pairs_written} new pairs")


@main.command()
@click.option("--source", type=click.Choice(["user", "lm", "both"]), default="user", show_default=True,
              help="user: mine the user's own later fix; lm: ask an LM; both.")
@click.option("--lm", "model", default=None,
              help="Model string dspy.LM accepts (default $OTLAKE_LM_MODEL), e.g. openai/deepseek-coder; "
                   "api base and key from $OTLAKE_LM_API_BASE / $OTLAKE_LM_API_KEY (or OPENAI_*). "
                   "'local' (or local:MODEL) uses the local server on port $OTLAKE_LM_PORT (default 8765), "
                   "starting one for this command if none runs; with only $OTLAKE_LM_API_BASE set, the model "
                   "it serves.")
@click.option("--limit", type=click.IntRange(1), default=None, help="At most this many pairs per source.")
@click.option("--judge", is_flag=True, help="Also ask the LM to judge each diff that passed the LSP checks.")
@click.option("--fewshot", type=click.IntRange(0), default=3, show_default=True,
              help="Verified user fixes shown to the LM as examples.")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Warm pyright language servers for the checks.")
@click.option("--concurrency", type=click.IntRange(1), default=4, show_default=True,
              help="LM requests in flight at once.")
@home_option
def synth(source: str, model: str | None, limit: int | None, judge: bool, fewshot: int, workers: int,
          concurrency: int, home: str | None) -> None:
    """Make a verified numbered line diff for each pair.

    Every candidate goes through the same chain: a diff is extracted, well
    formed, applies strictly, changes the code, parses, the language servers
    no longer report the diagnostic and report no new error (and, with
    --judge, an LM judge accepts it). Results go to `diffs`, accepted or not,
    with every step's verdict. Pairs that already have a diff from a source
    are skipped.

    \b
    Example:
      otlake synth                          # user fixes: no LM needed
      otlake synth --source lm --lm local   # the local Qwen2.5-Coder, started for this command
      OTLAKE_LM_API_BASE=http://localhost:8000/v1 otlake synth --source lm --lm openai/deepseek-coder
    """
    from warehouse.store import Warehouse

    from .stages import SynthOptions, run_synth

    sources = ("user", "lm") if source == "both" else (source,)
    with contextlib.ExitStack() as stack:
        settings = _lm_settings(stack, model, concurrency, home) if "lm" in sources or judge else None
        options = SynthOptions(sources=sources, lm=settings, limit=limit, judge=judge, fewshot=fewshot,
                               workers=workers)
        with Warehouse(home) as wh, PartitionProgress("synth (repls)") as bar:
            report = run_synth(wh, options, progress=bar)
    click.echo(f"run {report.run_id}:")
    for line in report.summary():
        click.echo(f"  {line}")
    if report.already_done:
        click.echo(f"  ({report.already_done} pair/source combinations already had a diff and were skipped)")
    for name, stats in report.by_source.items():
        steps = stats.as_dict()["steps"]
        if steps:
            click.echo(f"\n{name}: acceptance at each verification step")
            click.echo(render(["step", "reached", "passed", "rate", "main reason for failing"],
                              [(step, s["reached"], s["passed"], f"{s['rate']:.0%}",
                                next(iter(s["failed_by_reason"]), "")) for step, s in steps.items()], "table"))


def _lm_settings(stack: contextlib.ExitStack, model: str | None, concurrency: int, home: str | None):
    """LmSettings for --lm: `local[:MODEL]` uses (or starts, for this command only) the local server."""
    from synth.lm import ENV_API_BASE, ENV_MODEL, LmSettings

    home_dir = home or os.environ.get("OTLAKE_HOME") or "otlake-data"
    cache = str(Path(home_dir) / "dspy-cache")
    model = model or os.environ.get(ENV_MODEL)
    if model == "local" or (model or "").startswith("local:"):
        from local_lm.launcher import local_lm

        spec = model.partition(":")[2] or None
        endpoint = stack.enter_context(local_lm(spec, home=home, log=lambda m: click.echo(m, err=True)))
        # no more in flight than the server generates at once (the rest would wait in its queue with their
        # timeout running), and a timeout a small model on a CPU can meet: 1024 tokens at ~25 tokens/s
        return LmSettings.from_env(model=endpoint.dspy_model, api_base=endpoint.api_base,
                                   concurrency=min(concurrency, endpoint.parallel), timeout_s=300.0, cache_dir=cache)
    api_base = next((os.environ[n] for n in ENV_API_BASE if os.environ.get(n)), None)
    if not model and api_base:
        from local_lm.launcher import served_model

        model = f"openai/{served_model(api_base)}"
    return LmSettings.from_env(model=model, concurrency=concurrency, cache_dir=cache)


@main.command()
@click.option("--repls", type=click.IntRange(1), default=30, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@home_option
def demo(repls: int, seed: int, home: str | None) -> None:
    """Simulate sessions, ingest, verify, and show what was built and how to query it.

    \b
    Example:
      otlake demo
      OTLAKE_HOME=/tmp/lake otlake demo --repls 100 --seed 7
    """
    from .demo import run_demo

    run_demo(home, repls, seed)


@main.command()
@click.option("--repls", type=click.IntRange(1), default=20, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--corpus", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder of .py files to type (default: modules of this Python's standard library).")
@click.option("--long-session", type=click.IntRange(1), default=None,
              help="Instead: one repl, one file, this many edits (for benchmarks).")
@click.option("--diagnostics", type=click.Choice(["meta-lsp", "ruff"]), default="meta-lsp", show_default=True,
              help="What users saw: pyright + ruff merged like pyright-extended, or ruff alone (faster).")
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True,
              help="Warm pyright servers for meta-lsp diagnostics.")
def simulate(repls: int, seed: int, out: Path, corpus: Path | None, long_session: int | None, diagnostics: str,
             workers: int) -> None:
    """Write a realistic session log (JSONL) of simulated repls.

    \b
    Example:
      otlake simulate --repls 20 --seed 1 --out sessions.jsonl
      otlake simulate --repls 200 --diagnostics ruff --out big.jsonl
    """
    from events.simulator import long_session as make_long
    from events.simulator import simulate as make
    from events.simulator import write_jsonl

    from .simulate_cli import SimulateProgress, suggestions

    linter = None
    if diagnostics == "meta-lsp":
        from lsp_runner.linter import MetaLspLinter

        linter = MetaLspLinter(workers=workers)
    checker = (f"pyright + ruff ({workers} pyright server{'s' if workers > 1 else ''})" if linter else "ruff")
    progress = SimulateProgress(checker)
    if long_session:
        click.echo(f"simulating one repl with {long_session:,} edits (seed {seed}); {checker} checks it as it "
                   "grows ...", err=True)
    else:
        click.echo(f"simulating {repls} repls (seed {seed}) ...", err=True)
    try:
        events = (make_long(long_session, seed, corpus, linter=linter) if long_session
                  else make(repls, seed, corpus, linter=linter, progress=progress))
    finally:
        progress.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(events, out)
    kinds: dict[str, int] = {}
    for ev in events:
        kinds[ev["kind"]] = kinds.get(ev["kind"], 0) + 1
    summary = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    n_repls = len({e["repl_id"] for e in events})
    click.echo(f"wrote {len(events)} events of {n_repls} repl{'s' if n_repls != 1 else ''} to {out} ({summary})")
    for line in suggestions(events, str(out)):
        click.echo(line)


main.add_command(lsp)
main.add_command(lm)
main.add_command(dataset)
main.add_command(eval_)
main.add_command(train)


def run() -> None:
    """Console entry point; SIGTERM stops a command as Ctrl-C does: the servers and runs it started stop with it."""
    signal.signal(signal.SIGTERM, _stop)
    main()


def _stop(signum, _frame) -> None:
    # SystemExit unwinds the command: every `finally` and context manager runs (the local LM server's launcher
    # stops its server, `train run` stops LLM Foundry), where the default action would kill this process alone
    signal.signal(signum, signal.SIG_DFL)  # a second SIGTERM ends it at once
    click.echo(f"otlake: stopped by {signal.Signals(signum).name}", err=True)
    raise SystemExit(128 + signum)
