"""`otlake dataset build|list|show` on real warehouses: pairs and accepted diffs planted in the tables."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml
from click.testing import CliRunner

from otlake.dataset_cli import DEBUGBENCH, dataset
from synth.hygiene.dedup import MinHasher, exact_jaccard, token_hashes
from synth.linediff import apply, parse, render
from synth.schema import parse_prompt, parse_response
from warehouse.dataset_schema import create_dataset_tables
from warehouse.store import Warehouse

from .killing import kill_at_progress

UNDEFINED = "pyright[reportUndefinedVariable]"
T0 = 1_709_294_400_000_000  # 2024-03-01T12:00:00Z
WORDS = ("total", "count", "items", "value", "price", "score", "index", "result", "data", "order", "level", "speed")
AWS_ID = "AKIAIOSFODNN7EXAMPLE"
MARKER = "PRIVATE_MARKER_42"


def program(seed: int) -> str:
    """A small distinct program whose last line calls print (the fix)."""
    rng = random.Random(seed)
    out = ["import math", ""]
    for i in range(6):
        a, b = rng.sample(WORDS, 2)
        out += [f"def {a}_{i}_{seed}({b}, k={rng.randrange(1000)}):",
                f"    return math.floor({b} * k / {rng.randrange(1, 1000)})", ""]
    return "\n".join(out) + f"\nprint({a}_5_{seed}(3))\n"


class Planter:
    """Inserts repls, pairs and diffs as the pairs and synth stages would; `add` returns the pair id."""

    def __init__(self, con) -> None:
        self.con, self.n = con, 0
        create_dataset_tables(con)
        con.execute("INSERT INTO runs VALUES ('pairs-1', 'pairs', 'done', now(), now(), '{}', '{}', '{}'), "
                    "('synth-1', 'synth', 'done', now(), now(), '{}', '{}', '{}')")

    def add(self, fixed: str, repl: str = "r0", private: bool | None | str = False, source: str = "user",
            model: str = "user", rule: str = UNDEFINED, path: str = "main.py", accepted: bool = True,
            pair_id: str | None = None, us: int | None = None, code: str | None = None) -> str:
        """`code` defaults to `fixed` with its last print( misspelt; the error is on that line."""
        self.n += 1
        lines = fixed.split("\n")
        at = max(i for i, line in enumerate(lines) if "print(" in line)
        if code is None:
            code = "\n".join(lines[:at] + [lines[at].replace("print(", "prnt(", 1)] + lines[at + 1:])
        pair_id = pair_id or hashlib.sha256(f"{repl}:{self.n}".encode()).hexdigest()[:32]
        if private != "no repl event":
            self.con.execute("INSERT OR IGNORE INTO repls VALUES (?, 'python3', ?, 'ada', 't', 1, now())",
                             [repl, private])
        self.con.execute(
            """INSERT OR IGNORE INTO pairs VALUES (?, ?, ?, ?, make_timestamp(?::BIGINT)::TIMESTAMPTZ, ?, 1,
                      '"prnt" is not defined', ?, 0, ?, 4, ?, ?, '"prnt" is not defined', 'python3', 'ada', 't',
                      'pairs-1')""",
            [pair_id, repl, self.n, path, T0 + self.n * 1_000_000 if us is None else us, rule, at, at,
             code.split("\n")[at], code])
        self.con.execute(
            """INSERT INTO diffs (pair_id, source, model, diff, fixed, accepted, verification, run_id)
               VALUES (?, ?, ?, ?, ?, ?, '[]', 'synth-1')""", [pair_id, source, model, render(code, fixed), fixed,
                                                               accepted])
        return pair_id


def near_copy(code: str) -> str:
    """The program with one number changed: a near-duplicate (Jaccard ~0.9)."""
    return code.replace("k=", "k=7", 1)


@pytest.fixture
def lake(tmp_path):
    """A warehouse of 10 repls x 4 programs, plus one of each thing the build must drop or change."""
    home = tmp_path / "wh"
    with Warehouse(home) as wh:
        p = Planter(wh.con)
        for i in range(40):
            p.add(program(i), repl=f"r{i % 10}")
        p.add(program(100).replace("import math", f"import math\n{MARKER} = 1"), repl="secret", private=True)
        p.add(program(101), repl="ghost", private="no repl event")
        p.add(program(102), repl="r1", path="api/user_pb2.py")
        p.add(program(0), repl="r5")                                      # exact duplicate of r0's first
        p.add(near_copy(program(1)), repl="r7")                           # near duplicate of r1's first
        p.add(f'KEY = "{AWS_ID}"\nOWNER = "jane.doe@corp.io"\n' + program(103), repl="r2")
        both = p.add(program(104), repl="r3")
        p.add(program(104), repl="r3", source="lm", model="deepseek", pair_id=both)
        p.add(program(105), repl="r4", accepted=False)                     # rejected: never selected
        bench = json.loads((DEBUGBENCH / "python3_missing_colons.json").read_text())[0]["oracle_code"]
        p.add(bench.strip("\n") + "\n\nprint(Solution())\n", repl="r6")  # a DebugBench solution, typed in
    return home


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args, ok=True):
        result = runner.invoke(dataset, [str(a) for a in args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return invoke


def lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_build_writes_checked_examples_counts_every_drop_and_registers_the_dataset(lake, tmp_path, cli):
    out = tmp_path / "v1"
    result = cli("build", "v1", "--out", out, "--home", lake, "--eval-share", "0.25")
    assert "selected 49 = train 34 + eval 8 + dropped 7 (contaminated:" in result.output
    assert "anonymized 1 example (aws_access_key 1, email 1)" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "eval.jsonl", "train.jsonl"]
    train, eval_ = lines(out / "train.jsonl"), lines(out / "eval.jsonl")
    assert (len(train), len(eval_)) == (34, 8)
    for row in train + eval_:
        assert list(row) == ["prompt", "response"]
        prompt, diff = parse_prompt(row["prompt"]), parse_response(row["response"])
        fixed = apply(prompt.code, diff)
        assert prompt.line_text.startswith("prnt(") and fixed.split("\n")[prompt.line - 1].startswith("print(")
    everything = b"".join(f.read_bytes() for f in out.iterdir())
    assert MARKER.encode() not in everything and AWS_ID.encode() not in everything
    assert b"jane.doe@corp.io" not in everything and b"AKIA" in everything
    card = (out / "README.md").read_text()
    for row in ("| private repls | 49 | 47 | privacy_unknown 1, private_repl 1 |",
                "| one diff per pair | 47 | 46 | other_diff_of_same_pair 1 |",
                "| filters | 46 | 45 | generated:protobuf 1 |",
                "| decontaminate | 45 | 44 | contaminated:near_duplicate 1 |",
                "| exact dedup | 44 | 43 | exact_duplicate 1 |",
                "| near dedup | 43 | 42 | near_duplicate 1 |",
                "| aws_access_key | 1 |", "| user | 34 | 8 |", "| pairs-1 | pairs | 42 |",
                "| synth-1 | synth | 42 |", "| debugbench | "):
        assert row in card, row
    with Warehouse(lake, read_only=True) as wh:
        (train_n, eval_n, digests, counts, run_id), = wh.con.execute(
            "SELECT train_examples, eval_examples, [train_sha256, eval_sha256, card_sha256], counts, run_id "
            "FROM datasets WHERE dataset_id = 'v1'").fetchall()
        assert (train_n, eval_n) == (34, 8)
        assert digests == [hashlib.sha256((out / f).read_bytes()).hexdigest()
                           for f in ("train.jsonl", "eval.jsonl", "README.md")]
        assert json.loads(counts)["balanced"] is True
        assert wh.con.execute("SELECT status, reconciliation->>'selected' FROM runs WHERE run_id = ?",
                              [run_id]).fetchall() == [("done", "49")]
        examples = wh.con.execute("SELECT split, count(*), count(DISTINCT source) FROM dataset_examples "
                                  "GROUP BY split ORDER BY split").fetchall()
        assert examples == [("eval", 8, 1), ("train", 34, 1)]
        repls = wh.con.execute("""SELECT count(DISTINCT e.split) FROM dataset_examples e JOIN pairs p
                                  USING (pair_id) GROUP BY p.repl_id ORDER BY 1 DESC LIMIT 1""").fetchall()
        assert repls == [(1,)]  # no repl is in both splits
        first = wh.con.execute("SELECT split, line, pair_id FROM dataset_examples WHERE line = 1 "
                               "ORDER BY split").fetchall()
        for split, _, pair_id in first:
            code = wh.con.execute("SELECT content FROM pairs WHERE pair_id = ?", [pair_id]).fetchall()[0][0]
            assert parse_prompt(lines(out / f"{split}.jsonl")[0]["prompt"]).code == code


def test_a_private_repl_planted_in_the_tables_never_reaches_a_dataset(tmp_path, cli):
    home = tmp_path / "wh"
    with Warehouse(home) as wh:
        p = Planter(wh.con)
        public = p.add(program(1), repl="open")
        p.add(program(2).replace("import math", f"import math\n{MARKER} = 2"), repl="closed", private=True)
        p.add(program(3).replace("import math", f"import math\n{MARKER} = 3"), repl="unknown",
              private="no repl event")
    out = tmp_path / "out"
    result = cli("build", "d", "--out", out, "--home", home, "--no-debugbench")
    assert "selected 3 = train 1 + eval 0 + dropped 2 (privacy_unknown 1, private_repl 1)" in result.output
    assert MARKER.encode() not in b"".join(f.read_bytes() for f in out.iterdir())
    with Warehouse(home, read_only=True) as wh:
        assert wh.con.execute("SELECT pair_id FROM dataset_examples").fetchall() == [(public,)]


def test_the_same_inputs_give_the_same_bytes_and_another_seed_another_order(lake, tmp_path, cli):
    args = ("--home", lake, "--no-debugbench", "--eval-share", "0.25")
    cli("build", "v", "--out", tmp_path / "a", *args)
    cli("build", "v", "--out", tmp_path / "b", "--overwrite", *args)
    for name in ("train.jsonl", "eval.jsonl", "README.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    cli("build", "v", "--out", tmp_path / "c", "--overwrite", "--seed", "1", *args)
    assert (tmp_path / "a" / "train.jsonl").read_bytes() != (tmp_path / "c" / "train.jsonl").read_bytes()
    assert "dataset-" not in (tmp_path / "a" / "README.md").read_text()  # no run id: it changes every build


def test_a_process_pool_gives_the_same_files(lake, tmp_path):
    from otlake.stages import DatasetOptions, build_dataset

    with Warehouse(lake) as wh:
        build_dataset(wh, "inline", tmp_path / "inline", DatasetOptions(seed=3))
        report = build_dataset(wh, "inline", tmp_path / "pool", DatasetOptions(seed=3, workers=2, batch=5,
                                                                              overwrite=True))
    assert report.balanced() and report.train + report.eval == 43
    names = sorted(f.name for f in (tmp_path / "inline").iterdir())
    assert names == sorted(f.name for f in (tmp_path / "pool").iterdir())
    for name in names:
        assert (tmp_path / "inline" / name).read_bytes() == (tmp_path / "pool" / name).read_bytes(), name


def test_eval_shares_no_near_duplicate_with_train(tmp_path, cli):
    home = tmp_path / "wh"
    with Warehouse(home) as wh:
        p = Planter(wh.con)
        for i in range(30):                     # every program has a near copy in another repl
            p.add(program(i), repl=f"a{i % 6}")
            p.add(near_copy(program(i)), repl=f"b{i % 5}")
    out = tmp_path / "out"
    result = cli("build", "d", "--out", out, "--home", home, "--no-debugbench", "--eval-share", "0.3")
    assert "near_duplicate 30" in result.output
    hasher = MinHasher()

    def shingles(row):
        prompt = parse_prompt(row["prompt"])
        ops = "\n".join(op.sign + op.text for op in parse(parse_response(row["response"])).ops)
        return hasher.shingles(token_hashes(f"{prompt.code}\n{prompt.rule} {prompt.message}\n{ops}"))

    train = [shingles(r) for r in lines(out / "train.jsonl")]
    eval_ = [shingles(r) for r in lines(out / "eval.jsonl")]
    assert len(eval_) >= 5
    assert max(exact_jaccard(a, b) for a in train for b in eval_) < 0.85


@pytest.mark.parametrize("extra, kept, reason", [
    (("--rules", "ruff[F821]"), 2, None),
    (("--exclude-rules", "ruff[F821]"), 3, None),
    (("--sources", "lm"), 1, None),
    (("--max", "3"), 3, "over_max 2"),
    (("--since", "2024-03-01T12:00:02Z", "--until", "2024-03-01T12:00:04Z"), 2, None),
])
def test_selection_options(tmp_path, cli, extra, kept, reason):
    home = tmp_path / "wh"
    with Warehouse(home) as wh:
        p = Planter(wh.con)
        for i in range(3):
            p.add(program(i), repl=f"r{i}")
        p.add(program(10), repl="r8", rule="ruff[F821]")
        p.add(program(11), repl="r9", rule="ruff[F821]", source="lm", model="m")
    result = cli("build", "d", "--out", tmp_path / "out", "--home", home, "--no-debugbench", *extra)
    assert f"train {kept} + eval 0" in result.output
    if reason:
        assert reason in result.output


def test_bad_input_is_refused_and_leaves_nothing_behind(lake, tmp_path, cli):
    cli("build", "v1", "--out", tmp_path / "v1", "--home", lake, "--no-debugbench")
    before = sorted(p.name for p in tmp_path.iterdir())
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cases = [
        (("v1", "--out", tmp_path / "again"), "dataset 'v1' already exists"),
        (("v2", "--out", tmp_path / "v1"), "is not empty: pass --overwrite"),
        (("v2", "--out", tmp_path / "empty", "--since", "2030-01-01"), "empty selection: no accepted diff"),
        (("v2", "--out", blocker / "sub"), "cannot write there"),
        (("v2", "--out", tmp_path / "x", "--rules", "ruff[E999]"),
         f"unknown rule ruff[E999]: the warehouse's pairs and diagnostics have these rules: {UNDEFINED}"),
        (("v2", "--out", tmp_path / "x", "--exclude-rules", "nonsense"), "unknown rule nonsense"),
        (("v2", "--out", tmp_path / "x", "--sources", "user,robot"), "unknown source robot"),
        (("bad name!", "--out", tmp_path / "x"), "dataset name 'bad name!'"),
        (("v2", "--out", tmp_path / "x", "--decontaminate-against", blocker), "not valid JSON"),
    ]
    for args, message in cases:
        result = cli("build", *args, "--home", lake, "--no-debugbench", ok=False)
        assert result.exit_code == 1 and message in result.output, (args, result.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before + ["a-file"])
    with Warehouse(lake, read_only=True) as wh:
        assert wh.con.execute("SELECT dataset_id FROM datasets").fetchall() == [("v1",)]
        assert wh.con.execute("SELECT count(*) FROM runs WHERE stage = 'dataset'").fetchall() == [(1,)]


def test_overwrite_refuses_a_folder_with_other_files(lake, tmp_path, cli):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    result = cli("build", "v", "--out", mine, "--overwrite", "--home", lake, "--no-debugbench", ok=False)
    assert "holds other files (thesis.tex)" in result.output and (mine / "thesis.tex").exists()


def test_a_build_that_drops_everything_fails_and_says_why(tmp_path, cli):
    home = tmp_path / "wh"
    with Warehouse(home) as wh:
        Planter(wh.con).add(program(1), repl="r", path="x_pb2.py")
    result = cli("build", "d", "--out", tmp_path / "out", "--home", home, "--no-debugbench", ok=False)
    assert "every selected example was dropped (selected 1 = train 0 + eval 0 + dropped 1 " \
           "(generated:protobuf 1))" in result.output
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["wh"]
    with Warehouse(home, read_only=True) as wh:
        assert wh.con.execute("SELECT status FROM runs WHERE stage = 'dataset'").fetchall() == [("failed",)]
        assert wh.con.execute("SELECT count(*) FROM datasets").fetchall() == [(0,)]


def test_list_and_show(lake, tmp_path, cli):
    assert "no datasets yet" in cli("list", "--home", lake).output
    cli("build", "v1", "--out", tmp_path / "v1", "--home", lake, "--no-debugbench", "--max", "10")
    listed = json.loads(cli("list", "--home", lake, "--format", "json").output)
    assert [(d["name"], d["train"] + d["eval"], d["out_dir"]) for d in listed] == [("v1", 10, str(tmp_path / "v1"))]
    shown = cli("show", "v1", "--home", lake).output
    assert "v1: train 9, eval 1" in shown and "over_max" in shown and "README.md  sha256" in shown
    info = json.loads(cli("show", "v1", "--home", lake, "--format", "json").output)
    assert info["params"]["max_examples"] == 10 and info["counts"]["train"] == 9
    missing = cli("show", "v9", "--home", lake, ok=False)
    assert missing.exit_code == 1 and "no dataset 'v9' in the warehouse (datasets: v1)" in missing.output


def test_the_card_header_is_a_hugging_face_dataset_config_of_the_splits_written(lake, tmp_path, cli):
    cli("build", "v1", "--out", tmp_path / "v1", "--home", lake, "--no-debugbench", "--eval-share", "0.25")
    header = (tmp_path / "v1" / "README.md").read_text().split("---\n")[1]
    assert yaml.safe_load(header) == {"configs": [{"config_name": "default", "data_files": [
        {"split": "train", "path": "train.jsonl"}, {"split": "eval", "path": "eval.jsonl"}]}]}
    # 5% of these 43 examples is 2, and every repl has 4 or more: eval is empty, so it is neither written nor named
    cli("build", "v2", "--out", tmp_path / "v2", "--home", lake, "--no-debugbench")
    header = (tmp_path / "v2" / "README.md").read_text().split("---\n")[1]
    assert yaml.safe_load(header) == {"configs": [{"config_name": "default", "data_files": [
        {"split": "train", "path": "train.jsonl"}]}]}


def test_help_has_examples(cli):
    for args in ((), ("build",), ("list",), ("show",)):
        text = cli(*args, "--help").output
        assert "Example" in text and "otlake dataset" in text, args


def test_a_killed_build_leaves_no_dataset_and_a_rerun_builds_it(tmp_path):
    """SIGKILL at the first committed partition: no rows, no folder; the rerun equals an uninterrupted build."""
    for name in ("killed", "clean"):
        with Warehouse(tmp_path / name) as wh:
            p = Planter(wh.con)
            for i in range(1500):  # enough per-example work that the first partition is far from the end
                p.add(program(i), repl=f"r{i % 60}")
    env = {**os.environ, "OTLAKE_TRACE": "1", "OTLAKE_HOME": str(tmp_path / "killed")}
    cmd = [sys.executable, "-m", "otlake", "dataset", "build", "big", "--out", str(tmp_path / "out-killed"),
           "--no-debugbench", "--workers", "1"]
    kill_at_progress(cmd, env, 1)
    with Warehouse(tmp_path / "killed", read_only=True) as wh:
        assert wh.con.execute("SELECT count(*) FROM datasets").fetchall() == [(0,)]
        assert wh.con.execute("SELECT count(*) FROM dataset_examples").fetchall() == [(0,)]
        assert wh.con.execute("SELECT status FROM runs WHERE stage = 'dataset'").fetchall() == [("running",)]
    assert not (tmp_path / "out-killed").exists()
    left = list(tmp_path.glob(".out-killed.tmp-*"))  # the killed build's staging folder, named by its pid
    assert len(left) == 1 and left[0].is_dir()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert not list(tmp_path.glob(".out-killed.tmp-*"))  # the rerun removed it (its process is gone)
    clean = subprocess.run([*cmd[:7], str(tmp_path / "out-clean"), *cmd[8:]], capture_output=True, text=True,
                           env={**env, "OTLAKE_HOME": str(tmp_path / "clean")}, check=False)
    assert clean.returncode == 0, clean.stderr
    for f in ("train.jsonl", "eval.jsonl"):
        assert (tmp_path / "out-killed" / f).read_bytes() == (tmp_path / "out-clean" / f).read_bytes()
    rows = "SELECT dataset_id, pair_id, source, model, split, line FROM dataset_examples ORDER BY ALL"
    with Warehouse(tmp_path / "killed", read_only=True) as a, Warehouse(tmp_path / "clean", read_only=True) as b:
        assert a.con.execute(rows).fetchall() == b.con.execute(rows).fetchall()
        assert len(a.con.execute(rows).fetchall()) > 1000
        assert a.con.execute("SELECT status FROM runs WHERE stage = 'dataset' ORDER BY started_at").fetchall() == [
            ("interrupted",), ("done",)]


def test_a_new_build_removes_only_the_staging_folders_of_dead_builds_on_this_host(tmp_path):
    import socket

    from train.export import staging_folder

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    host = socket.gethostname().replace("-", "_")
    dead = tmp_path / f".out.tmp-{host}-{int(gone.stdout)}-0a1b2c3d"
    live = tmp_path / f".out.tmp-{host}-{os.getpid()}-0a1b2c3d"
    elsewhere = tmp_path / f".out.tmp-otherhost-{int(gone.stdout)}-0a1b2c3d"
    unnamed = tmp_path / ".out.tmp-0a1b2c3d"  # the name builds gave before they said their process
    for folder in (dead, live, elsewhere, unnamed):
        folder.mkdir()
    staging = staging_folder(tmp_path / "out", overwrite=False)
    assert staging.is_dir() and staging.name.startswith(f".out.tmp-{host}-{os.getpid()}-")
    assert not dead.exists() and live.exists() and elsewhere.exists() and unnamed.exists()
