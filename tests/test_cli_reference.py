"""README's CLI reference is generated from the click commands (otlake/cli_reference.py) and kept current.

The section between README's cog markers must equal what the commands declare now: a changed option, help
text or command fails here until `make readme` rewrites it.
"""

from __future__ import annotations

import difflib
import io
import os
import re
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import click
import pytest

from otlake.cli import main
from otlake.cli_reference import cli_reference

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START, END = "]]] -->\n", "<!-- [[[end]]] -->"
FIX = "README.md's CLI reference is out of date: run `make readme` (cog -r README.md) and commit README.md"


def readme_section() -> str:
    text = README.read_text()
    assert text.count("<!-- [[[cog") == 1 and text.count(END) == 1, "README.md: one cog block, for the CLI reference"
    block = text.split("<!-- [[[cog", 1)[1].split(END, 1)[0]
    assert "from otlake.cli_reference import cli_reference" in block.split(START, 1)[0]
    return block.split(START, 1)[1]


def command_block(section: str, path: str) -> str:
    """The part of the section about one command: from its heading to the next one."""
    head = f"### `{path}`\n"
    assert head in section, f"{FIX}: no section for `{path}`"
    return section.split(head, 1)[1].split("\n### ", 1)[0]


def option_row(section: str, path: str, option: str) -> list[str]:
    """The cells of an option's row: [option with metavar, default, what]."""
    rows = [r for r in command_block(section, path).splitlines() if r.startswith(f"| `{option}")]
    assert len(rows) == 1, (path, option, rows)
    return [c.strip() for c in re.split(r"(?<!\\)\|", rows[0])[1:-1]]


def walk(command: click.Command, path: str, parent: click.Context | None = None):
    """Every command reachable from `command`, with its context: click's own API, not the generator's."""
    ctx = click.Context(command, info_name=path.rsplit(" ", 1)[-1], parent=parent)
    yield path, command
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            yield from walk(command.get_command(ctx, name), f"{path} {name}", ctx)


def test_readme_section_is_current():
    section, generated = readme_section(), cli_reference()
    if section != generated:
        diff = "".join(difflib.unified_diff(section.splitlines(True), generated.splitlines(True),
                                            "README.md", "generated", n=1))
        pytest.fail(f"{FIX}.\n{diff[:4000]}")


def test_cog_finds_nothing_to_change():
    """`make readme` (cog) writes exactly the section the test above expects."""
    cogapp = pytest.importorskip("cogapp")
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = cogapp.Cog().main(["cog", "--check", "--verbosity=0", str(README)])
    assert status == 0, f"{FIX}.\n{out.getvalue()}{err.getvalue()}"


def test_every_command_and_option_is_in_the_readme():
    section = readme_section()
    commands = list(walk(main, "otlake"))
    assert len(commands) > 30 and {"otlake eval run", "otlake dataset build", "otlake lm serve",
                                   "otlake train config", "otlake lsp check"} <= {p for p, _ in commands}
    headings = re.findall(r"^### `(.+)`$", section, re.MULTILINE)
    assert headings == [p for p, c in commands if not c.hidden]  # each once, in click's order
    for path, command in commands:
        block = command_block(section, path)
        summary = command.get_short_help_str(limit=10_000)
        assert summary.split()[0] in block, (path, summary)
        for option in command.params:
            if isinstance(option, click.Option) and not option.hidden:
                cells = option_row(section, path, option.opts[0])
                if option.required:
                    assert cells[1] == "required", (path, option.name, cells)
                elif option.show_default and not option.is_flag and isinstance(option.default, (int, float, str)):
                    assert cells[1].startswith(f"`{option.default}`"), (path, option.name, cells)
                if option.help:
                    assert cells[2].startswith(option.help.split()[0]), (path, option.name, cells)


def test_real_values():
    section = readme_section()
    assert option_row(section, "otlake pairs", "--batch-snapshots") == [
        "`--batch-snapshots INTEGER`", "`64`", option_row(section, "otlake pairs", "--batch-snapshots")[2]]
    assert option_row(section, "otlake pairs", "--batch-snapshots")[2].endswith("[x>=1]")
    assert option_row(section, "otlake pairs", "--workers")[1] == "`1`"
    assert option_row(section, "otlake pairs", "--stylistic")[1] == "`ruff[E501],ruff[I001]`"
    assert option_row(section, "otlake ingest", "--chunk-records")[1] == "`200000`"
    assert option_row(section, "otlake ingest", "--checkpoint-every")[1] == ""  # no declared default
    assert option_row(section, "otlake lm serve", "--port")[1] == "`8765`, `$OTLAKE_LM_PORT`"
    assert option_row(section, "otlake eval run", "--model")[1] == "required"
    assert option_row(section, "otlake eval run", "--bench")[0] == r"`--bench [debugbench\|replit\|jsonl]`"
    assert option_row(section, "otlake eval report", "--baselines")[:2] == [
        "`--baselines / --no-baselines`", "`--baselines`"]
    assert option_row(section, "otlake dataset build", "--dedup-threshold")[1:] == [
        "`0.85`", "MinHash Jaccard similarity from which two examples are near-duplicates. [0<x<=1]"]
    assert "`otlake ingest [OPTIONS] FILES...`" in command_block(section, "otlake ingest")
    assert "Every command takes `-h` / `--help`." in command_block(section, "otlake")


def test_same_text_anywhere_without_heavy_imports(tmp_path):
    """Another folder, other environment values, a narrow terminal, another home: the same text; and making it
    imports neither litellm nor torch (the CLI modules import those inside the commands)."""
    env = {**os.environ, "COLUMNS": "20", "HOME": str(tmp_path), "OTLAKE_HOME": str(tmp_path / "lake"),
           "OTLAKE_LM_PORT": "9999", "OTLAKE_DEBUGBENCH": str(tmp_path), "PYTHONPATH": str(ROOT)}
    code = ("import sys; from otlake.cli_reference import cli_reference; text = cli_reference(); "
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'litellm', 'torch', 'dspy', 'transformers'}); "
            "assert not heavy, heavy; sys.stdout.write(text)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == cli_reference()
    assert str(ROOT) not in done.stdout and str(ROOT.parent) + "/" not in done.stdout
    assert "../shared/datasets/debugbench" in done.stdout  # dataset_cli's absolute default, as README writes it
