"""README's Usage section runs as written: each `otlake` line of its bash block, in order, in an empty folder.

Three things differ from a user's run, and the test prints them: `--repls` and
`--long-session` are smaller (the ids and instants the README uses do not
depend on them), and the LM line's server is tests/lm_server.py's scripted
one, answering with the users' own verified fixes. The Python block then runs
in the same folder.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from synth.linediff import parse
from synth.showcase import types_on, whole_tokens
from tests.lm_server import ScriptedLM, diff_reply, verdict_reply

README = Path(__file__).resolve().parents[1] / "README.md"
# 6 repls: with fewer, the held-out set (`eval make-replit`) takes every pair the training set could have
SMALLER = [(re.compile(r"(otlake simulate --repls )\d+"), r"\g<1>6"),
           (re.compile(r"(otlake demo --repls )\d+"), r"\g<1>1"),
           (re.compile(r"(--long-session )\d+"), r"\g<1>2000")]
LM_BASE = re.compile(r"OTLAKE_LM_API_BASE=\S+")
EXIT_CODES = {"otlake lsp check": (0, 1)}  # a linter: 1 means it found diagnostics


def usage_blocks(text: str) -> tuple[list[str], str]:
    """(the commands of the Usage section's bash block, one string each, comments kept; its Python block)."""
    section = text.split("\n## Usage\n", 1)[1].split("\n## ", 1)[0]
    bash = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)
    python = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    commands, buffer = [], ""
    for line in bash.splitlines():
        if not buffer and (not line.strip() or line.lstrip().startswith("#")):
            continue
        buffer += line + "\n"
        if line.endswith("\\"):
            continue
        try:
            shlex.split(buffer, comments=True)
        except ValueError:  # a quote still open: the command goes on on the next line
            continue
        commands.append(buffer.strip())
        buffer = ""
    assert not buffer, f"README Usage: a command is never closed: {buffer!r}"
    return commands, python


def test_usage_block_is_read_whole():
    commands, python = usage_blocks(README.read_text())
    assert all(shlex.split(c, comments=True)[0].startswith(("otlake", "OTLAKE_")) for c in commands), commands
    assert sum("\n" in c for c in commands) == 2  # the multi-line SQL and the continued dataset build
    assert "Warehouse(" in python


@pytest.mark.timeout(900)  # about twenty commands, each a new process; minutes on a loaded machine
def test_every_usage_line_runs_as_written(tmp_path):
    commands, python = usage_blocks(README.read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTLAKE_", "OPENAI_"))}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               PYRIGHT_PYTHON_IGNORE_WARNINGS="1")
    changed, outputs, took = [], {}, []
    for command in commands:
        run = command
        for pattern, replacement in SMALLER:
            run = pattern.sub(replacement, run)
        server = None
        if LM_BASE.search(run):
            server = ScriptedLM(script=_lm_script(tmp_path / "otlake-data" / "otlake.duckdb"))
            server.__enter__()
            run = LM_BASE.sub(f"OTLAKE_LM_API_BASE={server.api_base}", run)
        if run != command:
            changed.append((command.split("\n")[0], run.split("\n")[0]))
        started = time.perf_counter()
        try:
            done = subprocess.run(["bash", "-c", run], cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=280, check=False)
        finally:
            if server is not None:
                server.__exit__(None, None, None)
        allowed = next((codes for prefix, codes in EXIT_CODES.items() if run.startswith(prefix)), (0,))
        assert done.returncode in allowed, f"README line `{command}` exited {done.returncode}:\n" \
                                           f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        outputs[command] = done.stdout + done.stderr
        took.append((time.perf_counter() - started, command.split("\n")[0][:90]))
        if server is not None:
            outputs["lm requests"] = server.request_count
    print("README Usage lines run with a change (every other line ran exactly as written):")
    for line, run in changed:
        print(f"  {line}\n    ran as: {run}")
    print("lines not run: none")
    print("seconds per line:\n" + "\n".join(f"  {s:6.1f}  {line}" for s, line in took))
    def output(prefix: str) -> str:
        return next(out for c, out in outputs.items() if c.startswith(prefix))

    simulated = output("otlake simulate --repls")
    assert "then, e.g. (a diagnostic was logged in repl-000000-8ad902" in simulated
    assert "checking " in simulated and "file states with pyright + ruff" in simulated
    assert "wrote " in output("otlake replay repl-000000-8ad902") and output("otlake replay").strip()
    assert outputs["lm requests"] > 0
    _check_demo_example(next(out for c, out in outputs.items() if "otlake demo" in c))
    with duckdb.connect(str(tmp_path / "otlake-data" / "otlake.duckdb"), read_only=True) as con:
        lm = con.execute("""SELECT count(*), count(*) FILTER (accepted), count(*) FILTER (
                                verification::VARCHAR LIKE '%"judge"%') FROM diffs
                            WHERE source = 'lm' AND model = 'openai/deepseek-coder'""").fetchall()[0]
        assert lm[0] > 0 and lm[1] > 0 and lm[2] > 0, lm  # answered, verified and judged over real HTTP
        assert con.execute("SELECT count(*) FROM datasets WHERE dataset_id = 'fixes-v1'").fetchall() == [(1,)]
    done = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, f"README's Python block failed:\n{done.stderr[-3000:]}"
    assert "duplicates" in done.stdout  # sessions.jsonl again: nothing new


def _lm_script(warehouse: Path) -> list:
    """Answers for the LM line: each pair's verified user fix (a right diff, found by its error line), judged good."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        fixes = con.execute("""SELECT p.start_line + 1, p.error_line, d.diff FROM diffs d JOIN pairs p USING (pair_id)
                               WHERE d.source = 'user' AND d.accepted ORDER BY p.pair_id""").fetchall()
    if not fixes:
        pytest.fail("the README's `otlake synth` accepted no user fix, so the LM line has nothing to check")
    return [("## fixed_code ##", verdict_reply(True, "the diff fixes the error and changes nothing else"))] + [
        (f"[[ ## error_line ## ]]\n{n} {text}", diff_reply(diff)) for n, text, diff in fixes]


def _check_demo_example(output: str) -> None:
    """The demo's example is a repair of whole lines, never the completion of a line being typed."""
    if "No verified fix qualifies" in output:
        return
    shown = output.split("\n  <diff>\n", 1)[1].split("\n  </diff>", 1)[0]
    ops = parse("\n".join(line[2:] for line in shown.split("\n"))).ops
    removed, added = [op.text for op in ops if op.sign == "-"], [op.text for op in ops if op.sign == "+"]
    assert ops and all(whole_tokens(t) for t in removed + added), shown
    assert not any(types_on(r, a) for r in removed for a in added), shown
