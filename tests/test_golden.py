"""The golden test: the pipeline's every table, row by row, pinned before the pipeline is reshaped.

Three committed logs (tests/golden/*.jsonl.gz: the demo's simulator, 6 repls; DebugBench repls with
several bugs; and a copy of one repl broken the ways real logs break; `python -m tests.golden.make_inputs`
wrote them) go through every stage in one warehouse:
ingest, verify, pairs (at a fixed instant), synth from the users' own fixes, synth from a scripted LM over
real HTTP (each pair answered with its user fix where there is one, else a wrong diff; judged), a frozen
Replit-style held-out set, a dataset build, and eval runs (oracle and noop on DebugBench items and on the
held-out set). Then every table is dumped: rows sorted by key, run ids replaced by the stage and its order,
the temporary folder, the repository and the DebugBench folder by `<tmp>`, `<repo>` and `<debugbench>`
and the scripted LM's port by `<port>`, and columns that hold wall-clock instants or durations left out; each row is
hashed. The expectation (tests/golden/expected.json) holds each table's columns, row count and digest, and
each row's hash by key, so a failure names the rows that changed. Where a row changes on purpose, rerun with
OTLAKE_GOLDEN_UPDATE=1 and commit the new expectation with a message that says why.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from eval.models import resolve_model
from eval.run import RunOptions
from lsp_runner.pool import LspPool
from otlake.dataset_cli import DEBUGBENCH
from otlake.stages import (
    DatasetOptions,
    PairsOptions,
    SynthOptions,
    build_dataset,
    build_pairs,
    ingest_files,
    make_replit,
    run_eval,
    run_synth,
    verify,
)
from synth.lm import LmSettings
from tests.lm_server import ScriptedLM, diff_reply, verdict_reply
from warehouse.schema import KEYS
from warehouse.store import Warehouse

REPO = Path(__file__).resolve().parents[1]
HERE = REPO / "tests" / "golden"
EXPECTED = HERE / "expected.json"
INPUTS = [HERE / "demo-sessions.jsonl.gz", HERE / "debugbench-sessions.jsonl.gz", HERE / "bad-sessions.jsonl.gz"]
NOW_US = 1_893_456_000_000_000  # 2030-01-01: every simulated session has ended long before
# columns whose values are wall-clock instants or durations of this run, never data
VOLATILE = re.compile(r"^(.*_at|timings|seconds|card_sha256)$")  # the dataset card names the runs' ids
PORT = re.compile(r"127\.0\.0\.1:\d+")
# keys of the tables that declare no primary key and KEYS does not list
MORE_KEYS = {"runs": ("stage", "run_order"), "diffs": ("pair_id", "source", "model"), "quarantine": ("source", "key"),
             "file_paths": ("repl_id", "file_id", "from_seq")}


def _lm_script(wh: Warehouse) -> list:
    fixes = wh.con.execute("""SELECT p.start_line + 1, p.error_line, d.diff FROM diffs d JOIN pairs p USING (pair_id)
                              WHERE d.source = 'user' AND d.accepted ORDER BY p.pair_id""").fetchall()
    return [("## fixed_code ##", verdict_reply(True, "the diff fixes the error and changes nothing else"))] + [
        (f"[[ ## error_line ## ]]\n{n} {text}", diff_reply(diff)) for n, text, diff in fixes]


def run_pipeline(home: Path) -> None:
    """Every stage, in the order a user runs them, into the warehouse at `home`."""
    with Warehouse(home) as wh:
        ingest_files(wh, INPUTS)
        verify(wh)
        build_pairs(wh, PairsOptions(now_us=NOW_US))
        run_synth(wh, SynthOptions(sources=("user",)))
        with ScriptedLM(script=_lm_script(wh), default=diff_reply("-1 x\n+1 y")) as server:
            settings = LmSettings("openai/golden-coder", api_base=server.api_base, api_key="k", backoff_s=0.01,
                                  timeout_s=10.0, num_retries=1, cache=False, concurrency=1)
            run_synth(wh, SynthOptions(sources=("lm",), lm=settings, judge=True))
        held_out = make_replit(wh, "golden-held-out", home / "held-out.jsonl", per_rule=1, seed=0)
        build_dataset(wh, "golden-v1", home / "datasets" / "golden-v1", DatasetOptions(seed=0, eval_share=0.2))
        with LspPool(size=1) as pool:
            for model in ("oracle", "noop"):
                run_eval(wh, "debugbench", [], resolve_model(model), RunOptions(limit=12, workers=1), 0, pool.check)
                run_eval(wh, "replit", [str(held_out.path)], resolve_model(model), RunOptions(workers=1), 0,
                         pool.check)


def _plain(value):
    """A JSON-able value; instants as RFC 3339 text."""
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).isoformat()
    if isinstance(value, bytes | bytearray):
        return hashlib.sha256(value).hexdigest()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def dump(home: Path) -> dict:
    """Every table of the warehouse, normalized and hashed row by row (see the module's docstring)."""
    with Warehouse(home) as wh:
        con = wh.con
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1").fetchall()]
        ids = {}  # run ids (random) -> the stage and its order among that stage's runs
        for stage, run_id in con.execute("SELECT stage, run_id FROM runs ORDER BY started_at, run_id").fetchall():
            ids[run_id] = f"{stage}#{sum(v.startswith(stage + '#') for v in ids.values())}"
        if "eval_runs" in tables:  # runs stored before eval runs had a runs row
            for model, bench, run_id in con.execute(
                    "SELECT model, bench, run_id FROM eval_runs ORDER BY started_at, run_id").fetchall():
                ids.setdefault(run_id, f"eval:{model}:{bench}")
        primary = {t: tuple(cols) for t, cols in con.execute(
            "SELECT table_name, constraint_column_names FROM duckdb_constraints() "
            "WHERE constraint_type = 'PRIMARY KEY'").fetchall()}
        pattern = re.compile("|".join(re.escape(k) for k in sorted(ids, key=len, reverse=True))) if ids else None
        # folders that differ between checkouts (CI clones elsewhere) and runs
        folders = [(str(DEBUGBENCH.resolve()), "<debugbench>"), (str(DEBUGBENCH), "<debugbench>"),
                   (str(home.parent), "<tmp>"), (str(REPO), "<repo>")]

        def norm(value):
            if isinstance(value, str):
                for folder, name in folders:
                    value = value.replace(folder, name)
                value = PORT.sub("127.0.0.1:<port>", value)
                return pattern.sub(lambda m: ids[m.group(0)], value) if pattern else value
            if isinstance(value, dict):
                return {norm(k): norm(v) for k, v in value.items()}
            if isinstance(value, list):
                return [norm(v) for v in value]
            return value

        out = {}
        for table in tables:
            cur = con.execute(f'SELECT * FROM "{table}"')
            columns = [d[0] for d in cur.description]
            kept = [c for c in columns if not VOLATILE.match(c)]
            rows = []
            for row in cur.fetchall():
                record = {c: norm(_plain(v)) for c, v in zip(columns, row) if c in kept}
                for c in kept:  # JSON columns arrive as text: compare them parsed, without their volatile keys
                    if isinstance(record[c], str) and record[c][:1] in "{[":
                        try:
                            record[c] = _drop_volatile(json.loads(record[c]))
                        except ValueError:
                            pass
                rows.append(record)
            if table == "runs":
                for record in rows:
                    record["stage"], record["run_order"] = record["run_id"].split("#")
            key = tuple(KEYS.get(table, ())) or MORE_KEYS.get(table) or primary.get(table) or tuple(kept)
            hashed = {}
            for record in rows:
                k = json.dumps([record.get(c) for c in key], default=str)
                h = hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]
                hashed[k] = h if k not in hashed else hashlib.sha256((hashed[k] + h).encode()).hexdigest()[:16]
            ordered = dict(sorted(hashed.items()))
            out[table] = {"columns": kept, "key": list(key), "rows": len(rows),
                          "digest": hashlib.sha256(json.dumps(ordered).encode()).hexdigest(), "row_hashes": ordered}
        return out


def _drop_volatile(value):
    if isinstance(value, dict):
        return {k: _drop_volatile(v) for k, v in value.items() if not VOLATILE.match(k) and not k.endswith("_s")}
    if isinstance(value, list):
        return [_drop_volatile(v) for v in value]
    return value


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("golden") / "wh"
    run_pipeline(home)
    return dump(home)


@pytest.mark.timeout(900)
def test_every_table_the_pipeline_makes_matches_the_golden_expectation(tables):
    if os.environ.get("OTLAKE_GOLDEN_UPDATE") == "1":
        EXPECTED.write_text(json.dumps(tables, indent=1, sort_keys=True) + "\n")
    expected = json.loads(EXPECTED.read_text())
    assert sorted(tables) == sorted(expected), "the warehouse's tables changed"
    problems = []
    for name, want in expected.items():
        got = tables[name]
        if got["columns"] != want["columns"]:
            problems.append(f"{name}: columns {want['columns']} -> {got['columns']}")
        if got["digest"] != want["digest"]:
            gone = sorted(set(want["row_hashes"]) - set(got["row_hashes"]))
            new = sorted(set(got["row_hashes"]) - set(want["row_hashes"]))
            changed = sorted(k for k in set(got["row_hashes"]) & set(want["row_hashes"])
                             if got["row_hashes"][k] != want["row_hashes"][k])
            problems.append(f"{name}: {want['rows']} -> {got['rows']} rows; keys {want['key']}: "
                            f"gone {gone[:5]}, new {new[:5]}, changed {changed[:5]}")
    assert not problems, "\n".join(problems)


def test_the_golden_run_touches_every_stage(tables):
    """The expectation is not vacuous: each stage wrote rows of its own."""
    rows = {name: t["rows"] for name, t in tables.items()}
    assert 1973 + 1181 < rows["events"] < 1973 + 1181 + 60
    assert min(rows[t] for t in ("ot_ops", "diagnostics", "pairs", "diffs", "quarantine", "datasets",
                                 "dataset_examples", "eval_runs", "eval_items", "eval_sets")) > 0, rows
    stages = {k.split('"')[1] for k in tables["runs"]["row_hashes"]}
    assert stages == {"ingest", "verify", "pairs", "synth", "dataset", "eval", "make-replit"}, stages
    sources = {json.loads(k)[1] for k in tables["diffs"]["row_hashes"]}
    assert sources == {"user", "lm"}, sources
