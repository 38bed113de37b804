"""`otlake eval` in process on real warehouses, real language servers, the sandbox and a scripted LM over HTTP."""

from __future__ import annotations

import json

import duckdb
import pytest
from click.testing import CliRunner

from eval.items import load_debugbench
from eval.run import select
from otlake.cli import main
from otlake.dataset_cli import DEBUGBENCH
from synth.linediff import render

from .lm_server import Reply, ScriptedLM, diff_reply, malformed_reply

LIMIT = 6


def invoke(*args, env=None):
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result


def run_json(tmp_path, name, *extra, env=None) -> dict:
    out = tmp_path / name
    result = invoke("eval", "run", "--home", str(tmp_path / "home"), "--out", str(out), "--format", "json",
                    *extra, env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture(scope="module")
def chosen():
    items, _ = load_debugbench([DEBUGBENCH])
    return select(items, LIMIT, seed=0)


def test_oracle_is_the_ceiling_and_noop_the_floor_on_debugbench(tmp_path):
    oracle = run_json(tmp_path, "oracle", "--model", "oracle", "--limit", str(LIMIT))
    noop = run_json(tmp_path, "noop", "--model", "noop", "--limit", str(LIMIT))
    assert oracle["bench"] == "debugbench" and oracle["model"] == "oracle"
    n = oracle["items"]
    assert 3 <= n <= LIMIT and noop["items"] == n  # items without a new diagnostic are skipped, with the reason
    assert sum(oracle["skipped"].values()) == LIMIT - n
    m, z = oracle["metrics"], noop["metrics"]
    assert m["applies"] == m["target_gone"] == m["ast_exact"] == m["ast_or_string"] == 1.0
    assert m["functional_items"] >= 1 and m["functional"] == 1.0
    assert z["applies"] == 1.0 and z["target_gone"] == z["ast_exact"] == z["ast_or_string"] == 0.0
    assert m["changes"] == 1.0 and z["changes"] == 0.0  # noop's diff applies and changes nothing
    assert m["target_as_reference"] == 1.0 and z["target_as_reference"] == 0.0
    assert m["deletes_only"] == z["deletes_only"] == 0.0  # none of these references only deletes; noop removes nothing
    assert oracle["not_scored"] == noop["not_scored"] == {"target_gone": 0, "functional": 0}
    assert z["functional"] < 1.0
    assert set(oracle["by_category"]) <= {"syntax", "reference"}
    con = duckdb.connect(str(tmp_path / "home" / "otlake.duckdb"), read_only=True)
    try:
        rows = con.execute("""SELECT r.model, count(*) FILTER (WHERE i.status = 'scored'),
                                     count(*) FILTER (WHERE i.target_gone), any_value(r.prompt_hash)
                              FROM eval_runs r JOIN eval_items i USING (run_id) GROUP BY 1 ORDER BY 1""").fetchall()
    finally:
        con.close()
    assert [(r[0], r[1], r[2]) for r in rows] == [("noop", n, 0), ("oracle", n, n)]
    assert rows[0][3] == rows[1][3] and len(rows[0][3]) == 64  # same prompt schema, same hash
    listed = invoke("eval", "list", "--home", str(tmp_path / "home"), "--format", "csv")
    assert listed.exit_code == 0 and listed.output.count("debugbench") == 2

    report = invoke("eval", "report", str(tmp_path / "oracle"), str(tmp_path / "noop"), "--out",
                    str(tmp_path / "report"), "--home", str(tmp_path / "home"))
    assert report.exit_code == 0, report.output
    text = (tmp_path / "report" / "report.md").read_text()
    assert oracle["run_id"] in text and noop["run_id"] in text and "| 100.0% |" in text
    head = next(line for line in text.splitlines() if line.startswith("| run | model |"))
    assert head.startswith("| run | model | bench | items | target_as_reference | deletes_only | extracted |")
    assert f"| {oracle['run_id']} | 0 | 0 |" in text  # the Not scored table
    for png in ("metrics.png", "by_category.png"):
        assert (tmp_path / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a report of the noop run alone gets the oracle run on the same items beside it, from the warehouse
    alone = invoke("eval", "report", str(tmp_path / "noop"), "--out", str(tmp_path / "alone"),
                   "--home", str(tmp_path / "home"))
    assert alone.exit_code == 0 and "(2 runs)" in alone.output
    assert oracle["run_id"] in (tmp_path / "alone" / "report.md").read_text()


def test_a_scripted_lm_is_scored_per_sample_with_pass_at_k(tmp_path, chosen):
    # the scripted server answers by a line unique to each item's code: right, malformed, or right once in 3
    oracle = run_json(tmp_path, "oracle", "--model", "oracle", "--limit", str(LIMIT))
    with open(tmp_path / "oracle" / "items.jsonl") as f:
        scored = [json.loads(line) for line in f if '"scored"' in line]
    by_id = {i.id: i for i in chosen}
    targets = [by_id[r["item_id"]] for r in scored][:3]
    keys = [_unique_line(t.code, [c.code for c in chosen]) for t in targets]
    right = [diff_reply(render(t.code, t.reference)) for t in targets]
    script = [(keys[0], right[0]), (keys[1], malformed_reply()),
              (keys[2], [right[2], malformed_reply(), malformed_reply()])]
    with ScriptedLM(script=script, default=malformed_reply()) as server:
        env = {"OTLAKE_LM_API_BASE": server.api_base, "OTLAKE_LM_API_KEY": "k"}
        got = run_json(tmp_path, "scripted", "--model", "openai/scripted", "--limit", str(LIMIT), "--samples", "3",
                       "--concurrency", "2", env=env)
        bodies = list(server.requests)
    n = got["items"]
    assert n == oracle["items"] and len(bodies) >= 3 * n  # every sample asked (a malformed answer is asked again)
    assert {b.get("temperature") for b in bodies} == {0.1} and {b.get("top_k") for b in bodies} == {50}
    rows = {}
    with open(tmp_path / "scripted" / "items.jsonl") as f:
        for line in f:
            r = json.loads(line)
            if r["status"] == "scored":
                rows.setdefault(r["item_id"], []).append(r["applies"])
    assert rows[targets[0].id] == [True, True, True]
    assert rows[targets[1].id] == [False, False, False]
    assert rows[targets[2].id] == [True, False, False]
    m = got["metrics"]
    assert m["applies"] == pytest.approx(round((1 + 0 + 1 / 3) / n, 4))
    assert m["applies@3"] == pytest.approx(round(2 / n, 4))  # the unbiased estimator: one pass in 3 is pass@3 = 1


def _unique_line(code: str, codes: list[str]) -> str:
    for line in code.splitlines():
        if len(line.strip()) > 12 and sum(line in other for other in codes) == 1:
            return line.strip()
    raise AssertionError("no unique line")


def test_a_jsonl_bench_runs_its_own_tests_in_the_sandbox(tmp_path):
    records = [
        {"id": "adds", "buggy_code": "def add(a, b):\n    return a + c\n",
         "fixed_code": "def add(a, b):\n    return a + b\n", "tests": "assert add(2, 3) == 5\n"},
        {"id": "loops", "buggy_code": "def f(n):\n    return n +\n", "fixed_code": "def f(n):\n    return n + 1\n",
         "tests": "def check(candidate):\n    assert candidate(1) == 2\n", "entry_point": "f"},
    ]
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    oracle = run_json(tmp_path, "o", "--bench", "jsonl", "--data", str(data), "--model", "oracle")
    assert oracle["items"] == 2 and oracle["metrics"]["functional"] == 1.0 and oracle["metrics"]["target_gone"] == 1.0
    # a fix that makes the diagnostic go away but computes the wrong thing fails the tests
    wrong = {"adds": "-2     return a + c\n+2     return a - b", "loops": "-2     return n +\n+2     return n + 2"}
    script = [(r["buggy_code"].splitlines()[1].strip(), diff_reply(wrong[r["id"]])) for r in records]
    with ScriptedLM(script=script) as server:
        env = {"OTLAKE_LM_API_BASE": server.api_base, "OTLAKE_LM_API_KEY": "k"}
        got = run_json(tmp_path, "w", "--bench", "jsonl", "--data", str(data), "--model", "openai/x", env=env)
    m = got["metrics"]
    assert m["applies"] == 1.0 and m["target_gone"] == 1.0 and m["functional"] == 0.0 and m["ast_exact"] == 0.0


def test_a_chat_model_is_asked_the_bare_training_prompt_and_scored(tmp_path):
    records = [{"id": "adds", "buggy_code": "def add(a, b):\n    return a + c\n",
                "fixed_code": "def add(a, b):\n    return a + b\n", "tests": "assert add(2, 3) == 5\n"}]
    data = tmp_path / "mine.jsonl"
    data.write_text(json.dumps(records[0]) + "\n")
    reply = Reply(text="<diff>\n-2     return a + c\n+2     return a + b\n</diff>")
    with ScriptedLM(script=[("return a + c", reply)]) as server:
        env = {"OTLAKE_LM_API_BASE": server.api_base, "OTLAKE_LM_API_KEY": "k"}
        got = run_json(tmp_path, "c", "--bench", "jsonl", "--data", str(data), "--model", "chat:openai/x",
                       "--temperature", "0", env=env)
        asked = server.user_messages()
        body = server.requests[0]
    assert got["model"] == "chat:openai/x" and got["metrics"]["functional"] == 1.0
    # the prompt is the sentinel schema as a training example has it: no DSPy instructions or field markers
    assert len(asked) == 1 and asked[0].startswith("<code>\n#main.py\n1 def add(a, b):\n2     return a + c\n")
    assert asked[0].endswith("</code>\n<lsp_error>\npyright[reportUndefinedVariable] \"c\" is not defined\n"
                             "</lsp_error>\n<error_line>\n2     return a + c\n</error_line>")
    assert "[[ ##" not in asked[0]
    assert [m["role"] for m in body["messages"]] == ["user"] and body["temperature"] == 0 and body["model"] == "x"


def test_bad_input_is_one_clear_line_not_a_traceback(tmp_path):
    home = str(tmp_path / "home")
    missing = invoke("eval", "run", "--bench", "jsonl", "--data", str(tmp_path / "nope.jsonl"), "--model", "oracle",
                     "--out", str(tmp_path / "o"), "--home", home)
    assert missing.exit_code == 1 and "nope.jsonl: no such file" in missing.output
    assert "Traceback" not in missing.output
    model = invoke("eval", "run", "--model", "gpt", "--out", str(tmp_path / "o"), "--home", home, "--limit", "1")
    assert model.exit_code == 1 and "model 'gpt'" in model.output and "Traceback" not in model.output
    absent = invoke("eval", "list", "--home", str(tmp_path / "fresh"))
    assert absent.exit_code == 1 and "no warehouse at" in absent.output
    empty = invoke("eval", "list", "--home", home)  # the failed runs above made the warehouse, and no run
    assert empty.exit_code == 0 and "no eval runs yet" in empty.output
    big = tmp_path / "big.jsonl"  # past the language servers' file size limit: skipped, saying so
    big.write_text(json.dumps({"id": "big", "buggy_code": "x = 1\n" * 100_000 + "print(y)\n",
                               "fixed_code": "x = 1\n" * 100_000 + "print(1)\n"}) + "\n")
    huge = run_json(tmp_path, "big", "--bench", "jsonl", "--data", str(big), "--model", "oracle", "--home", home)
    assert huge["items"] == 0 and huge["skipped"] == {"not_checked": 1}
    report = invoke("eval", "report", str(tmp_path), "--out", str(tmp_path / "r"), "--home", home)
    assert report.exit_code == 1 and "not an eval run folder" in report.output


def test_inject_plants_bugs_that_the_oracle_then_repairs(tmp_path, chosen):
    solutions = tmp_path / "solutions.jsonl"
    picked = [i.record for i in chosen[:3]]
    solutions.write_text("".join(json.dumps({"slug": r["slug"], "code": r["oracle_code"],
                                             "examples": r["examples"], "description": r["description"]}) + "\n"
                                 for r in picked) + '{"slug": "no-code"}\n')
    out = tmp_path / "fresh"
    result = invoke("eval", "inject", "--from", str(solutions), "--subtypes", "missing_colons,undefined_objects",
                    "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "no code" in result.output
    files = sorted(p.name for p in out.iterdir())
    assert files == ["python3_missing_colons.json", "python3_undefined_objects.json"]
    planted = json.loads((out / "python3_missing_colons.json").read_text())
    assert len(planted) == 3 and all(r["buggy_code"] != r["oracle_code"] for r in planted)
    again = tmp_path / "again"
    assert invoke("eval", "inject", "--from", str(solutions), "--subtypes", "missing_colons",
                  "--out", str(again)).exit_code == 0
    assert (again / "python3_missing_colons.json").read_bytes() == (out / "python3_missing_colons.json").read_bytes()
    got = run_json(tmp_path, "judge", "--bench", "debugbench", "--data", str(out), "--model", "oracle")
    assert got["items"] == 6 and got["metrics"]["target_gone"] == 1.0
    assert set(got["by_subtype"]) == {"missing_colons", "undefined_objects"}


def test_make_replit_freezes_held_out_pairs_that_later_datasets_leave_out(tmp_path):
    from warehouse.store import Warehouse

    from .test_dataset import UNDEFINED, Planter, program

    home = tmp_path / "wh"
    with Warehouse(home) as wh:
        planter = Planter(wh.con)
        for i in range(24):
            planter.add(program(i), repl=f"r{i % 6}")
        for i in range(24, 28):
            planter.add(program(i), repl=f"r{i % 6}", rule="ruff[F821]")
        planter.add(program(40), repl="secret", private=True)
    base = ["--home", str(home)]
    first = invoke("dataset", "build", "train-a", "--out", str(tmp_path / "train-a"), "--max", "10",
                   "--no-debugbench", *base)
    assert first.exit_code == 0, first.output
    made = invoke("eval", "make-replit", "heldout", "--per-rule", "3", *base)
    assert made.exit_code == 0, made.output
    path = home / "eval-sets" / "heldout.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    con = duckdb.connect(str(home / "otlake.duckdb"))
    try:
        in_train = {r[0] for r in con.execute("SELECT pair_id FROM dataset_examples").fetchall()}
        registered = con.execute("SELECT name, items, counts FROM eval_sets").fetchall()
    finally:
        con.close()
    per_rule = {}
    for r in records:
        per_rule.setdefault(r["rule"], []).append(r["repl_id"])
    assert set(per_rule) == {UNDEFINED, "ruff[F821]"}
    assert all(len(repls) <= 3 and len(set(repls)) == len(repls) for repls in per_rule.values())
    assert not {r["id"] for r in records} & in_train and "secret" not in {r["repl_id"] for r in records}
    assert registered[0][:2] == ("heldout", len(records))
    assert json.loads(registered[0][2])["dropped"]["in_a_dataset"] == 10
    assert invoke("eval", "make-replit", "heldout", *base).exit_code == 1  # frozen: not replaced by accident

    judged = run_json(tmp_path, "judge", "--bench", "replit", "--data", "heldout", "--model", "oracle", *base)
    assert judged["items"] == len(records) and judged["metrics"]["target_gone"] == 1.0
    assert set(judged["by_category"]) == {"pyright", "ruff"}

    later = invoke("dataset", "build", "train-b", "--out", str(tmp_path / "train-b"), "--no-debugbench", *base)
    assert later.exit_code == 0, later.output
    con = duckdb.connect(str(home / "otlake.duckdb"), read_only=True)
    try:
        in_b = {r[0] for r in con.execute("SELECT pair_id FROM dataset_examples WHERE dataset_id = 'train-b'")
                .fetchall()}
        params = json.loads(con.execute("SELECT params FROM datasets WHERE dataset_id = 'train-b'").fetchall()[0][0])
    finally:
        con.close()
    assert in_b and not in_b & {r["id"] for r in records}
    assert str(path.absolute()) in {s["path"] for s in params["eval_sets"]}


def test_the_readme_eval_section_runs_with_a_scripted_server_for_the_local_model(tmp_path):
    """README's "Evaluating repair models" bash block, as one script: `--model local` is the scripted server
    (its default answer: no diff), --limit 50/20 is 6, ../shared is the shared folder beside the repository."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("\n## Evaluating repair models\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)
    script = block.replace("--model local", "--model openai/scripted")
    script = re.sub(r"--limit \d+", "--limit 6", script).replace("../shared/", f"{DEBUGBENCH.parents[1]}/")
    assert script.count("openai/scripted") == 4 and "--limit 6" in script
    with ScriptedLM(default=malformed_reply()) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTLAKE_", "OPENAI_"))}
        env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
                   PYRIGHT_PYTHON_IGNORE_WARNINGS="1", OTLAKE_LM_API_BASE=server.api_base)
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600, check=False)
        asked = server.request_count
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert asked > 0
    assert (tmp_path / "eval-report" / "report.md").exists()
    assert sorted(p.name for p in (tmp_path / "fresh-bugs").iterdir()) == ["python3_unclosed_string.json",
                                                                         "python3_undefined_objects.json"]
    assert "target_gone" in done.stdout  # the SQL at the end printed its table


def test_an_lm_injector_plants_only_what_applies_changes_one_line_and_is_flagged(tmp_path, chosen):
    picked = [i.record for i in chosen[:3]]
    solutions = tmp_path / "solutions.json"
    solutions.write_text(json.dumps([{"slug": r["slug"], "oracle_code": r["oracle_code"]} for r in picked]))
    replies = []
    for n, record in enumerate(picked):
        lines = record["oracle_code"].split("\n")
        at = next(i for i, line in enumerate(lines) if line.rstrip().endswith(":") and "def " in line)
        key = _unique_line(record["oracle_code"], [r["oracle_code"] for r in picked])
        if n == 0:  # a right one: the colon of a def dropped
            replies.append((key, diff_reply(f"-{at + 1} {lines[at]}\n+{at + 1} {lines[at].rstrip()[:-1]}")))
        elif n == 1:  # two lines changed: not a planted bug of one line
            replies.append((key, diff_reply(f"-{at + 1} {lines[at]}\n-{at + 2} {lines[at + 1]}")))
        else:  # text that does not match the code
            replies.append((key, diff_reply(f"-{at + 1} not the line\n+{at + 1} x")))
    with ScriptedLM(script=replies, default=malformed_reply()) as server:
        env = {"OTLAKE_LM_API_BASE": server.api_base, "OTLAKE_LM_API_KEY": "k"}
        result = invoke("eval", "inject", "--from", str(solutions), "--subtypes", "missing_colons", "--injector",
                        "both", "--lm", "openai/scripted", "--out", str(tmp_path / "out"), "--home",
                        str(tmp_path / "home"), env=env)
    assert result.exit_code == 0, result.output
    assert "lm_not_one_line 1" in result.output and "lm_bad_diff 1" in result.output
    records = json.loads((tmp_path / "out" / "python3_missing_colons.json").read_text())
    by = {(r["slug"], r["injector"]) for r in records}
    assert (picked[0]["slug"], "lm") in by and {s for s, i in by if i == "lm"} == {picked[0]["slug"]}
    assert {s for s, i in by if i == "rules"} == {r["slug"] for r in picked}


def test_a_warehouse_from_before_the_changes_metric_gains_its_column(tmp_path):
    from warehouse.eval_schema import EVAL_TABLES

    home = tmp_path / "home"
    home.mkdir()
    con = duckdb.connect(str(home / "otlake.duckdb"))
    new_columns = ("changes", "target_as_reference", "deletes_only")
    ddl = "\n".join(line for line in EVAL_TABLES["eval_items"].splitlines()
                    if not line.strip().startswith(new_columns))
    try:  # eval_items as runs stored it before `changes` and the target metrics existed, with one old row
        con.execute(ddl)
        assert not set(new_columns) & {r[0] for r in con.execute("DESCRIBE eval_items").fetchall()}
        con.execute("INSERT INTO eval_items (run_id, item_id, sample, status) VALUES ('old', 'a', 0, 'scored')")
    finally:
        con.close()
    got = run_json(tmp_path, "noop", "--model", "noop", "--limit", "2")
    assert got["metrics"]["changes"] == 0.0 and got["metrics"]["deletes_only"] == 0.0
    con = duckdb.connect(str(home / "otlake.duckdb"), read_only=True)
    try:
        rows = con.execute("""SELECT run_id = 'old', changes, target_as_reference, deletes_only FROM eval_items
                              ORDER BY 1 DESC, item_id""").fetchall()
    finally:
        con.close()
    assert rows[0] == (True, None, None, None) and len(rows) == 1 + got["items"]
    assert all(r[1:] == (False, False, False) for r in rows[1:])


def test_a_failed_language_server_leaves_target_gone_not_scored_and_counted_apart(tmp_path):
    from eval.models import resolve_model
    from eval.run import RunOptions
    from lsp_runner.result import CheckResult
    from otlake.eval_cli import write_run
    from otlake.stages import run_eval
    from warehouse.store import Warehouse

    records = [{"id": "crash", "buggy_code": "x = 1\nprint(y)\n", "fixed_code": "x = 1\nprint(x)\n"},
               {"id": "bloat", "buggy_code": "z = 1\nprint(w)\n", "fixed_code": "z = 1\nprint(z)\n"},
               {"id": "fine", "buggy_code": "v = 1\nprint(u)\n", "fixed_code": "v = 1\nprint(v)\n"}]
    data = tmp_path / "mine.jsonl"
    target = {"rule": "ruff[F821]", "line": 2}  # given: the buggy files are never checked
    data.write_text("".join(json.dumps({**r, **target, "message": "Undefined name"}) + "\n" for r in records))

    def verdict(snapshot):  # a meta-LSP that crashes on one fixed file, skips one as too large, checks one
        text = snapshot.files["main.py"]
        if "print(x)" in text:
            return CheckResult(snapshot.id, "failed", reason="pyright crashed 3 times")
        if "print(z)" in text:
            return CheckResult(snapshot.id, "ok", skipped={"main.py": "too_large: 600,000 bytes"})
        return CheckResult(snapshot.id, "ok", diagnostics={"main.py": []})

    def check(snapshots):
        return [verdict(s) for s in snapshots]

    home, out = tmp_path / "home", tmp_path / "run"
    with Warehouse(home) as wh:
        report = run_eval(wh, "jsonl", [str(data)], resolve_model("oracle"), RunOptions(), 0, check, out=out)
    write_run(report, out)
    got = report.as_json()
    rows = {r["item_id"]: r for r in report.result.rows}
    details = {k: (r["target_gone"], r["target_detail"]) for k, r in rows.items()}
    assert details == {"crash": (None, "lsp_failed: pyright crashed 3 times"),
                       "bloat": (None, "lsp_failed: too_large: 600,000 bytes"),  # skipped: not checked either
                       "fine": (True, "")}
    assert got["not_scored"] == {"target_gone": 2, "functional": 0}
    m = got["metrics"]
    assert (m["target_gone"], m["target_gone_items"]) == (1.0, 1)  # the two are left out, not failed
    assert (m["applies"], m["applies_items"]) == (1.0, 3)
    assert m["target_as_reference"] == m["ast_exact"] == 1.0 and m["deletes_only"] == 0.0
    con = duckdb.connect(str(home / "otlake.duckdb"), read_only=True)
    try:
        stored = con.execute("SELECT item_id, target_gone, target_as_reference, deletes_only FROM eval_items "
                             "ORDER BY 1").fetchall()
        counts = json.loads(con.execute("SELECT counts FROM eval_runs").fetchall()[0][0])
    finally:
        con.close()
    assert stored == [("bloat", None, True, False), ("crash", None, True, False), ("fine", True, True, False)]
    assert counts["not_scored"] == {"target_gone": 2, "functional": 0}
    made = invoke("eval", "report", str(out), "--out", str(tmp_path / "report"), "--home", str(home),
                  "--no-baselines")
    assert made.exit_code == 0, made.output
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Not scored" in text and f"| {report.run_id} | 2 | 0 |" in text


def test_a_killed_eval_run_stores_nothing_says_interrupted_and_batches_do_not_change_rows(tmp_path):
    """SIGKILL after the first of three batches: no eval rows; the next run marks it interrupted; the rows a
    run stores are the same whatever the batch size."""
    import os
    import sys

    from .killing import kill_at_progress

    data = tmp_path / "mine.jsonl"  # six items with their target given: only the fixes are checked
    data.write_text("".join(json.dumps({"id": f"item-{n}", "buggy_code": f"v{n} = 1\nprint(u{n})\n",
                                        "fixed_code": f"v{n} = 1\nprint(v{n})\n", "rule": "ruff[F821]", "line": 2,
                                        "message": f"Undefined name `u{n}`"}) + "\n" for n in range(6))
                    + "not json\n")  # and a record that cannot be read: skipped, counted
    home = tmp_path / "home"
    args = ["eval", "run", "--bench", "jsonl", "--data", str(data), "--model", "oracle", "--home", str(home)]
    kill_at_progress([sys.executable, "-m", "otlake", *args, "--batch", "2", "--out", str(tmp_path / "killed")],
                     {**os.environ, "OTLAKE_TRACE": "1"}, 1)
    con = duckdb.connect(str(home / "otlake.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM eval_items").fetchall() == [(0,)]
        assert con.execute("SELECT count(*) FROM eval_runs").fetchall() == [(0,)]
        assert con.execute("SELECT status FROM runs WHERE stage = 'eval'").fetchall() == [("running",)]
    finally:
        con.close()
    small = run_json(tmp_path, "small", *args[2:-2], "--batch", "2")
    whole = run_json(tmp_path, "whole", *args[2:-2])
    assert small["items"] == whole["items"] == 6 and small["skipped"] == {"bad_record": 1}
    assert small["metrics"] == whole["metrics"] and small["metrics"]["target_gone"] == 1.0
    listed = invoke("eval", "list", "--format", "json", "--home", str(home))
    runs = sorted((r["status"], r["items"]) for r in json.loads(listed.output))
    assert runs == [("done", 6), ("done", 6), ("interrupted", None)], runs
    con = duckdb.connect(str(home / "otlake.duckdb"), read_only=True)
    try:
        rows = con.execute("""SELECT run_id, item_id, sample, status, skip_reason, diff, applies, target_gone, answer
                              FROM eval_items ORDER BY run_id, item_id""").fetchall()
        runs = con.execute("SELECT run_id, items_sha256, items, skipped, metrics FROM eval_runs").fetchall()
        recon = [json.loads(r[0]) for r in con.execute(
            "SELECT reconciliation FROM runs WHERE stage = 'eval' AND status = 'done' ORDER BY started_at").fetchall()]
    finally:
        con.close()
    by_run: dict = {}
    for run_id, *row in rows:
        by_run.setdefault(run_id, []).append(tuple(row))
    assert len(by_run) == 2 and len({tuple(v) for v in by_run.values()}) == 1  # row for row the same
    assert len(next(iter(by_run.values()))) == 7
    assert len({r[1:] for r in runs}) == 1  # the same items digest, counts and metrics
    assert [(r["in"], r["out"], r["dropped"], r["partitions"]) for r in recon] == [
        (7, 6, {"bad_record": 1}, 3), (7, 6, {"bad_record": 1}, 1)]


def test_a_killed_make_replit_leaves_no_set_and_the_rerun_freezes_the_clean_runs_file(tmp_path):
    """SIGKILL after the first repl is replayed: no file, no eval_sets row, the run `running`; the rerun marks
    it interrupted and writes the same file, byte for byte, as a clean run on a copy of the warehouse."""
    import os
    import shutil
    import sys

    from warehouse.store import Warehouse

    from .killing import kill_at_progress
    from .test_dataset import Planter, program

    home = tmp_path / "wh"
    with Warehouse(home) as wh:
        planter = Planter(wh.con)
        for i in range(12):
            planter.add(program(i), repl=f"r{i % 6}")
    clean = tmp_path / "clean"
    shutil.copytree(home, clean)
    args = ["eval", "make-replit", "heldout", "--per-rule", "6"]
    kill_at_progress([sys.executable, "-m", "otlake", *args, "--home", str(home)],
                     {**os.environ, "OTLAKE_TRACE": "1"}, 1)
    path = home / "eval-sets" / "heldout.jsonl"
    assert not path.exists() and not list(path.parent.glob("*.partial"))
    con = duckdb.connect(str(home / "otlake.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM eval_sets").fetchall() == [(0,)]
        assert con.execute("SELECT status FROM runs WHERE stage = 'make-replit'").fetchall() == [("running",)]
    finally:
        con.close()
    rerun = invoke("eval", "make-replit", "heldout", "--per-rule", "6", "--home", str(home))
    assert rerun.exit_code == 0, rerun.output
    once = invoke("eval", "make-replit", "heldout", "--per-rule", "6", "--home", str(clean))
    assert once.exit_code == 0, once.output
    assert path.read_bytes() == (clean / "eval-sets" / "heldout.jsonl").read_bytes()
    assert len(path.read_text().splitlines()) == 6
    con = duckdb.connect(str(home / "otlake.duckdb"), read_only=True)
    try:
        statuses = sorted(r[0] for r in con.execute("SELECT status FROM runs WHERE stage = 'make-replit'").fetchall())
        assert con.execute("SELECT name, items FROM eval_sets").fetchall() == [("heldout", 6)]
    finally:
        con.close()
    assert statuses == ["done", "interrupted"]
