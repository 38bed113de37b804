"""`otlake demo`: simulate sessions, ingest, verify, build pairs, user-fix diffs and a dataset; show what was built."""

from __future__ import annotations

import click

from events.privacy import public_sql
from otlake.stages import ingest_files
from warehouse.store import Warehouse

from .output import render
from .stages import PairsOptions, SynthOptions, build_pairs, run_synth, verify

TABLES = ("repls", "events", "ot_ops", "path_events", "checkpoints", "diagnostics", "pairs", "diffs", "datasets",
          "dataset_examples", "quarantine", "runs")


def run_demo(home: str | None, repls: int, seed: int, workers: int = 1) -> None:
    """The main job on the embedded defaults, narrated."""
    from events.simulator import simulate, write_jsonl
    from lsp_runner.linter import MetaLspLinter

    with Warehouse(home) as wh:
        log = wh.home / "demo" / f"sessions-{repls}-{seed}-meta-lsp.jsonl"
        if not log.exists():
            log.parent.mkdir(parents=True, exist_ok=True)
            click.echo(f"1. simulating {repls} repls typed from this Python's standard library (seed {seed}); "
                       "what users saw comes from pyright + ruff (the meta-LSP) ...")
            write_jsonl(simulate(repls, seed, linter=MetaLspLinter(workers=workers)), log)
        else:
            click.echo(f"1. reusing the simulated sessions in {log}")
        click.echo(f"2. ingesting {log} into {wh.path} ...")
        report = ingest_files(wh, [log])
        click.echo(f"   {report.summary()}")
        click.echo(f"   ({report.records_in / max(report.seconds, 1e-9):,.0f} records/s; a second run only finds "
                   "duplicates: writes are idempotent)")
        click.echo("3. verifying: every repl replayed to its end and compared with its snapshot ...")
        check = verify(wh)
        click.echo(f"   {check.snapshots} snapshots: {check.matched} match, {len(check.mismatches)} differ, "
                   f"{len(check.projection_errors)} projection errors")
        click.echo("4. pairs: each logged diagnostic filtered, or its repl replayed to that instant and checked "
                   "again by pyright + ruff ...")
        pairs = build_pairs(wh, PairsOptions(workers=workers))
        click.echo(f"   {pairs.summary()}")
        rates = pairs.rates()
        if rates:
            click.echo("   reproduction rate per rule (logged diagnostics that reached the language servers):")
            click.echo(render(["rule", "checked", "reproduced", "rate"],
                              [(c, n, k, f"{r:.0%}") for c, n, k, r in rates[:15]], "table"))
        click.echo("5. synth: the user's own later fix of each pair, verified (no LM needed) ...")
        synth = run_synth(wh, SynthOptions(workers=workers))
        for line in synth.summary():
            click.echo(f"   {line}")
        _build_dataset(wh)
        _show(wh)


def _build_dataset(wh: Warehouse) -> None:
    """6. A training set from the accepted diffs: anonymized, filtered, deduplicated, decontaminated."""
    from .dataset_cli import DEBUGBENCH, eval_set_paths, written_files
    from .stages import DatasetError, DatasetOptions, build_dataset

    out = wh.home / "datasets" / "demo"
    eval_sets = eval_set_paths(None, False, ()) if DEBUGBENCH.exists() else ()
    against = "DebugBench" if eval_sets else "nothing (DebugBench not found beside the repository)"
    click.echo(f"6. dataset: accepted diffs anonymized, filtered, deduplicated, decontaminated against {against}, "
               f"split ...")
    try:
        report = build_dataset(wh, "demo", out, DatasetOptions(eval_sets=eval_sets, overwrite=True))
    except DatasetError as e:  # e.g. nothing accepted in a tiny demo
        click.echo(f"   no dataset: {e}")
        return
    click.echo(f"   {report.summary()}")
    click.echo(f"   wrote {out}: {written_files(report)} (the card); `otlake dataset show demo` describes it")
    for split, why in report.skipped.items():
        click.echo(f"   {split}.jsonl not written: {why}")


def _show(wh: Warehouse) -> None:
    con = wh.con
    counts = [(t, con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]) for t in TABLES]
    click.echo("\nWhat the warehouse holds:")
    click.echo(render(["table", "rows"], counts, "table"))
    click.echo("\nEvents by kind:")
    q = "SELECT kind, count(*) AS events FROM events GROUP BY kind ORDER BY events DESC"
    click.echo(render(["kind", "events"], con.execute(q).fetchall(), "table"))
    sample = con.execute(
        f"""SELECT d.repl_id, d.path, d.ts, d.code, d.message, d.start_line FROM diagnostics d
           JOIN repls r USING (repl_id) WHERE {public_sql("r.is_private")}
           ORDER BY d.code NOT LIKE 'pyright[report%', d.repl_id, d.seq LIMIT 1""").fetchall()
    if not sample:
        return
    (repl_id, path, ts, code, message, line), = sample
    at = ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    ((text,),) = con.execute("SELECT file_at(?, ?, ?::TIMESTAMPTZ)", [repl_id, path, at]).fetchall()
    lines = (text or "").splitlines()
    lo = max(line - 2, 0)
    click.echo(f"\nA diagnostic the user saw, and the file at that instant (file_at):\n  {code} {message}")
    click.echo(f"  {repl_id} {path} at {at}:")
    for n in range(lo, min(line + 3, len(lines))):
        click.echo(f"  {'>' if n == line else ' '}{n + 1:4} {lines[n]}")
    home = f"OTLAKE_HOME={wh.home} " if str(wh.home) != "otlake-data" else ""
    click.echo(f"""
Try (the CLI is .venv/bin/otlake, or `uv run otlake`):
  {home}otlake sql "SELECT code, count(*) AS n FROM diagnostics GROUP BY code ORDER BY n DESC LIMIT 5"
  {home}otlake sql "SELECT d.message, file_at(d.repl_id, d.path, d.ts) AS code FROM diagnostics d LIMIT 1" --format json
  {home}otlake sql "SELECT * FROM files_at('{repl_id}', TIMESTAMPTZ '{at}')"
  {home}otlake replay {repl_id} --at {at} --path {path}
  {home}otlake replay {repl_id} --at {at} --out /tmp/{repl_id}
  {home}otlake verify
  {home}otlake sql "SELECT code, count(*) AS pairs FROM pairs GROUP BY code ORDER BY pairs DESC"
  {home}otlake sql "SELECT source, accepted, failed_step, count(*) AS n FROM diffs GROUP BY ALL ORDER BY n DESC"
  {home}otlake lsp check /tmp/{repl_id}
  {home}otlake dataset show demo
  {home}otlake dataset build mine --rules pyright[reportUndefinedVariable] --max 50 --seed 1 --out /tmp/mine""")
    _show_example(wh)


def _show_example(wh: Warehouse) -> None:
    """One verified fix, as the training example it becomes; `synth.showcase` picks a whole-line repair."""
    from synth.schema import Prompt, SchemaError, render_response
    from synth.showcase import excerpt, pick

    cur = wh.con.execute(
        """SELECT p.pair_id, d.source, d.model, p.content, d.diff, p.start_line FROM diffs d JOIN pairs p
           USING (pair_id) WHERE d.accepted ORDER BY p.pair_id, d.source, d.model""")
    chosen = pick((key, content, diff, line + 1) for *key, content, diff, line in cur.fetchall())
    if chosen is None:
        click.echo("\nNo verified fix qualifies as an example to show (each one finishes a line the user was "
                   "still typing, or is not whole lines); `otlake sql \"SELECT diff FROM diffs WHERE accepted\"` "
                   "lists them.")
        return
    path, content, code, message, line, diff = wh.con.execute(
        """SELECT p.path, p.content, p.code, p.message, p.start_line, d.diff FROM diffs d JOIN pairs p USING (pair_id)
           WHERE p.pair_id = ? AND d.source = ? AND d.model = ?""", chosen).fetchall()[0]
    try:
        prompt = Prompt(path, content, code, message, line + 1)
    except SchemaError:
        return
    click.echo("\nA verified fix, as a training example (prompt, then response; code far from the fix "
               "shows as ...):")
    text = excerpt(prompt, diff) + "\n" + render_response(diff)
    click.echo("\n".join("  " + x for x in text.split("\n")))
