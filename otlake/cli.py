"""The otlake command line: a thin layer over the Python API."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from events.errors import BadEvent, OtlakeError

from .output import FORMATS, render

HOME_HELP = "Warehouse folder (default: $OTLAKE_HOME, else ./otlake-data)."


def _home_option(f):
    return click.option("--home", type=click.Path(file_okay=False), default=None, help=HOME_HELP)(f)


def _parse_instant(value: str | None) -> int:
    """RFC 3339 text -> µs since the epoch; None means now."""
    from events.validate import parse_ts

    if value is None:
        now = datetime.now(UTC)
        return int(now.timestamp() * 1_000_000)
    if "T" not in value and len(value) == 10:
        value += "T00:00:00Z"
    try:
        return parse_ts(value)
    except BadEvent as e:
        raise click.BadParameter(f"{e.detail} (e.g. 2024-03-01T12:00:00Z)", param_hint="--at") from None


class _Progress:
    """A progress bar on stderr (quiet when stderr is not a terminal)."""

    def __init__(self, total: int | None, label: str) -> None:
        self.bar = click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True) if total else None

    def __enter__(self):
        if self.bar:
            self.bar.__enter__()
        return self

    def __call__(self, n: int) -> None:
        if os.environ.get("OTLAKE_TRACE"):
            print(f"progress +{n}", file=sys.stderr, flush=True)
        if self.bar:
            self.bar.update(n)

    def __exit__(self, *exc) -> None:
        if self.bar:
            self.bar.__exit__(*exc)


class _Group(click.Group):
    """Turns otlake's own errors into a clean message and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OtlakeError as e:
            raise click.ClickException(str(e)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
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
@_home_option
def ingest(files: tuple[Path, ...], checkpoint_every: int | None, chunk_records: int, home: str | None) -> None:
    """Ingest JSONL (.jsonl, .jsonl.gz) or Parquet event files.

    Bad records go to the `quarantine` table; the rest is stored. Re-ingesting
    a file changes nothing.

    \b
    Example:
      otlake ingest sessions.jsonl more.parquet
    """
    from warehouse.ingest import ingest_files
    from warehouse.store import Warehouse

    total = sum(_count_records(p) for p in files)
    with Warehouse(home) as wh, _Progress(total, "ingest") as bar:
        report = ingest_files(wh, list(files), progress=bar, checkpoint_every=checkpoint_every,
                              chunk_records=chunk_records)
    click.echo(f"run {report.run_id}: {report.summary()}")
    click.echo(f"{report.records_in / max(report.seconds, 1e-9):,.0f} records/s; warehouse: "
               f"{Path(wh.path)}")


def _count_records(path: Path) -> int:
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if path.suffix.lower() == ".gz":
        return 0
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


@main.command()
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--write", is_flag=True, help="Open the warehouse writable (default: read-only).")
@_home_option
def sql(query: str, fmt: str, write: bool, home: str | None) -> None:
    """Run SQL on the warehouse; file_at() and files_at() replay files.

    \b
    Example:
      otlake sql "SELECT d.code, file_at(d.repl_id, d.path, d.ts) AS code_then
                  FROM diagnostics d LIMIT 3" --format json
    """
    import duckdb

    from warehouse.store import Warehouse

    with Warehouse(home, read_only=not write) as wh:
        try:
            cur = wh.con.execute(query)
        except duckdb.Error as e:
            raise click.ClickException(str(e)) from None
        if cur.description is None:
            click.echo("ok")
            return
        columns = [d[0] for d in cur.description]
        rows = cur.fetchall()
    click.echo(render(columns, rows, fmt))


@main.command()
@click.argument("repl_id")
@click.option("--at", "at", default=None, help="Instant, RFC 3339 (default: now, i.e. the latest state).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the whole file tree here.")
@click.option("--path", "path", default=None, help="Print this one file to stdout.")
@_home_option
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
    instant = _parse_instant(at)
    with Warehouse(home, read_only=True) as wh:
        travel = wh.travel()
        try:
            if path is not None:
                (text,) = travel.file_at([repl_id], [path], [instant])
                if text is None:
                    known = travel.paths_at(repl_id, instant)
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
@_home_option
def verify(repls: tuple[str, ...], home: str | None) -> None:
    """Replay every repl to its end and compare with its stored snapshot events.

    Mismatches are reported and recorded in `quarantine` (source 'verify').

    \b
    Example:
      otlake verify
    """
    from warehouse.store import Warehouse
    from warehouse.verify import verify as run_verify

    with Warehouse(home) as wh:
        total = len(repls) or wh.con.execute("SELECT count(DISTINCT repl_id) FROM events").fetchone()[0]
        with _Progress(total, "verify") as bar:
            report = run_verify(wh, list(repls) or None, progress=bar)
    for m in report.mismatches + report.projection_errors:
        click.echo(f"MISMATCH {m['repl_id']} seq {m['seq']} [{m['kind']}]: {m['message']}")
    click.echo(f"run {report.run_id}: {report.repls} repls, {report.snapshots} snapshots: "
               f"{report.matched} match, {len(report.mismatches)} differ; "
               f"{len(report.projection_errors)} projection errors")
    if not report.ok():
        sys.exit(1)


@main.command()
@click.option("--repls", type=click.IntRange(1), default=30, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@_home_option
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
def simulate(repls: int, seed: int, out: Path, corpus: Path | None, long_session: int | None) -> None:
    """Write a realistic session log (JSONL) of simulated repls.

    \b
    Example:
      otlake simulate --repls 20 --seed 1 --out sessions.jsonl
    """
    from events.simulator import long_session as make_long
    from events.simulator import simulate as make
    from events.simulator import write_jsonl

    events = make_long(long_session, seed, corpus) if long_session else make(repls, seed, corpus)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(events, out)
    kinds: dict[str, int] = {}
    for ev in events:
        kinds[ev["kind"]] = kinds.get(ev["kind"], 0) + 1
    summary = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    click.echo(f"wrote {len(events)} events of {len({e['repl_id'] for e in events})} repls to {out} ({summary})")


def run() -> None:
    """Console entry point."""
    main()
