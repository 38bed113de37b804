"""A built dataset folder loads with Hugging Face `datasets` as the card says, and an empty split gets no file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import datasets
import duckdb
import yaml

from warehouse.store import Warehouse

from .test_dataset import cli, lake, lines  # noqa: F401  (fixtures)


def load(folder: Path, tmp_path: Path) -> dict[str, list[dict]]:
    """{split: rows} as `datasets.load_dataset(folder)` gives them."""
    loaded = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "hf-cache"))
    return {split: list(loaded[split]) for split in loaded}


def run_card_instructions(folder: Path, tmp_path: Path) -> dict:
    """Run the card's Python block and its LLM Foundry loader as written (the folder filled in), in a new process."""
    card = (folder / "README.md").read_text()
    python = re.search(r"```python\n(.*?)```", card, re.DOTALL).group(1).replace("<this folder>", str(folder))
    foundry = re.search(r"```yaml\n(.*?)```", card, re.DOTALL)
    loader = yaml.safe_load(foundry.group(1).replace("<this folder>", str(folder)))["train_loader"]["dataset"] \
        if foundry else None
    script = f"""{python}
import json
from datasets import load_dataset as _load
out = {{"splits": {{s: dataset[s].num_rows for s in dataset}}}}
loader = {loader!r}
if loader:
    rows = _load(loader["hf_name"], **loader["hf_kwargs"], split=loader["split"])
    out["foundry"] = [rows.num_rows, sorted(rows.column_names)]
print(json.dumps(out))
"""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_folder_with_both_splits_loads_as_written(lake, tmp_path, cli):  # noqa: F811
    out = tmp_path / "both"
    result = cli("build", "both", "--out", out, "--home", lake, "--no-debugbench", "--eval-share", "0.25")
    assert "train.jsonl (35), eval.jsonl (8), README.md" in result.output and "not written" not in result.output
    assert load(out, tmp_path) == {"train": lines(out / "train.jsonl"), "eval": lines(out / "eval.jsonl")}
    card = (out / "README.md").read_text()
    assert "the same with `split: eval` and `eval.jsonl` for `eval_loader`" in card
    assert run_card_instructions(out, tmp_path) == {"splits": {"train": 35, "eval": 8},
                                                    "foundry": [35, ["prompt", "response"]]}


def test_an_empty_eval_split_is_not_written_and_the_folder_still_loads(lake, tmp_path, cli):  # noqa: F811
    out = tmp_path / "small"
    result = cli("build", "small", "--out", out, "--home", lake, "--no-debugbench")  # 5% of 43: no repl fits
    assert "train.jsonl (43), README.md in" in result.output
    assert ("eval.jsonl not written: eval is empty: no repl has few enough examples to fit in 5% of 43"
            in result.output)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "train.jsonl"]
    assert load(out, tmp_path) == {"train": lines(out / "train.jsonl")}
    card = (out / "README.md").read_text()
    assert "| eval.jsonl | 0 | not written: the split is empty (see Notes) |" in card
    assert "- eval.jsonl was not written: eval is empty: no repl has few enough examples" in card
    assert "`split: eval`" not in card and "(no eval.jsonl was written: see Notes)" in card
    assert run_card_instructions(out, tmp_path) == {"splits": {"train": 43}, "foundry": [43, ["prompt", "response"]]}
    shown = cli("show", "small", "--home", lake).output
    assert "eval.jsonl  not written: eval is empty" in shown
    with Warehouse(lake, read_only=True) as wh:
        row = wh.con.execute("SELECT train_sha256 IS NULL, eval_sha256, counts->>'$.not_written.eval' "
                             "FROM datasets").fetchall()
    assert row[0][:2] == (False, None) and row[0][2].startswith("eval is empty")


def test_empty_split_fail_builds_nothing_and_says_what_to_do(lake, tmp_path, cli):  # noqa: F811
    out = tmp_path / "strict"
    result = cli("build", "strict", "--out", out, "--home", lake, "--no-debugbench", "--empty-split", "fail",
                 ok=False)
    assert result.exit_code == 1
    assert "eval is empty: no repl has few enough examples to fit in 5% of 43" in result.output
    assert "nothing was written" in result.output and "--empty-split skip" in result.output
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["wh"]  # no staging folder left
    with Warehouse(lake, read_only=True) as wh:
        assert wh.con.execute("SELECT count(*) FROM datasets").fetchall() == [(0,)]
        assert wh.con.execute("SELECT status FROM runs WHERE stage = 'dataset'").fetchall() == [("failed",)]


def test_an_eval_split_not_asked_for_never_fails_the_build(lake, tmp_path, cli):  # noqa: F811
    out = tmp_path / "all-train"
    result = cli("build", "all", "--out", out, "--home", lake, "--no-debugbench", "--eval-share", "0",
                 "--empty-split", "fail")
    assert "eval.jsonl not written: --eval-share 0 asks for no eval split" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "train.jsonl"]


def test_a_warehouse_from_before_accepts_a_dataset_without_eval(lake, tmp_path, cli):  # noqa: F811
    con = duckdb.connect(str(lake / "otlake.duckdb"))
    con.execute("DROP TABLE datasets")  # as the schema had it: every digest required
    con.execute("""CREATE TABLE datasets (dataset_id VARCHAR PRIMARY KEY, created_at TIMESTAMPTZ NOT NULL,
                   params JSON NOT NULL, counts JSON NOT NULL, out_dir VARCHAR NOT NULL,
                   train_examples INTEGER NOT NULL, eval_examples INTEGER NOT NULL, train_sha256 VARCHAR NOT NULL,
                   eval_sha256 VARCHAR NOT NULL, card_sha256 VARCHAR NOT NULL, run_id VARCHAR NOT NULL)""")
    con.close()
    cli("build", "old", "--out", tmp_path / "old", "--home", lake, "--no-debugbench")
    with Warehouse(lake, read_only=True) as wh:
        assert wh.con.execute("SELECT dataset_id, eval_sha256 FROM datasets").fetchall() == [("old", None)]
