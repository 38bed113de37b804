"""`otlake lsp check` in-process on real folders, check_paths, and the pyright-CLI comparison mode."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from lsp_runner import LspPool, Snapshot, check_paths, check_with_cli
from otlake.lsp_cli import lsp

from .lsp_fixtures import REPL, expected_main, keys


@pytest.fixture
def repl(tmp_path):
    root = tmp_path / "repl"
    for path, text in REPL.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def invoke(*args):
    return CliRunner().invoke(lsp, list(args), catch_exceptions=False)


# what editors' problem matchers and CI annotators parse: path:line:col: severity code message
LINE = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<severity>error|warning|information|hint) "
                  r"(?P<code>(?:pyright|ruff)\[\w+\]) (?P<message>.*)$")


def test_check_a_folder_as_text(repl):
    result = invoke("check", str(repl))
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert f'{repl}/main.py:5:17: error pyright[reportAttributeAccessIssue] ' \
           '"screen" is not a known attribute of module "turtle"' in lines
    assert f"{repl}/main.py:1:8: warning ruff[F401] `os` imported but unused (fix)" in lines
    assert f'{repl}/pkg/util.py:3:1: error pyright[reportCallIssue] Argument missing for parameter "name"' in lines
    assert "8 diagnostics (5 errors) in 4 files; 0 skipped, 0 failed" in result.stderr


def test_text_lines_are_1_based_and_parse_like_a_linters(repl, monkeypatch):
    """Every diagnostic line parses; line and column are the JSON output's 0-based start + 1."""
    monkeypatch.chdir(repl)
    text = invoke("check", "main.py").stdout.splitlines()
    parsed = [m.groupdict() for m in map(LINE.match, text) if m]
    assert len(parsed) == len(expected_main()) and all(not line.startswith(" ") for line in text)
    got = {(p["path"], p["code"], int(p["line"]) - 1, int(p["col"]) - 1) for p in parsed}
    assert got == expected_main()
    rows = json.loads(invoke("check", "main.py", "--format", "json").stdout)
    assert [(p["path"], p["code"], int(p["line"]), int(p["col"]), p["severity"]) for p in parsed] == [
        (r["path"], r["code"], r["start_line"] + 1, r["start_character"] + 1,
         ["error", "warning", "information", "hint"][r["severity"] - 1]) for r in rows]
    # the source itself: `turtle.screen` starts at line 5, column 17 counted from 1
    attr = next(p for p in parsed if p["code"] == "pyright[reportAttributeAccessIssue]")
    source_line = REPL["main.py"].splitlines()[int(attr["line"]) - 1]
    assert source_line[int(attr["col"]) - 1:].startswith("screen")


def test_check_a_file_as_json_resolves_its_imports(repl, monkeypatch):
    monkeypatch.chdir(repl)
    result = invoke("check", "main.py", "--format", "json")
    rows = json.loads(result.stdout)
    assert {(r["path"], r["code"], r["start_line"], r["start_character"]) for r in rows} == expected_main()
    assert rows[0] == {"path": "main.py", "code": "ruff[I001]", "start_line": 0, "start_character": 0,
                       "end_line": 2, "end_character": 25, "severity": 2,
                       "message": "Import block is un-sorted or un-formatted", "has_code_action": True,
                       "source": "ruff"}


def test_clean_code_exits_0_and_an_unreadable_file_exits_2(tmp_path):
    (tmp_path / "ok.py").write_text("print('hi')\n")
    clean = invoke("check", str(tmp_path / "ok.py"), "--select", "E,F")
    assert (clean.exit_code, clean.stdout) == (0, "")
    (tmp_path / "latin.py").write_bytes("café = 1\n".encode("latin-1"))
    bad = invoke("check", str(tmp_path))
    assert bad.exit_code == 2 and f"skipped {tmp_path}/latin.py: not_utf8" in bad.stderr


def test_help_has_an_example():
    for args in (["--help"], ["check", "--help"]):
        text = invoke(*args).output
        assert "Example" in text and "otlake lsp check" in text


def test_check_paths_names_files_as_given(repl, monkeypatch):
    monkeypatch.chdir(repl.parent)
    assert keys(check_paths(["repl/pkg/util.py", repl / "pkg"])) == {
        # a file is checked within the working folder: its import of repl/helpers.py resolves
        ("repl/pkg/util.py", "pyright[reportCallIssue]", 2, 0),
        # a folder is a repl of its own: helpers.py is outside it
        (f"{repl}/pkg/util.py", "pyright[reportMissingImports]", 0, 5),
    }


def test_the_pyright_cli_mode_agrees_with_the_pool():
    snaps = [Snapshot("r1", REPL), Snapshot("bad", {"m.py": "x: int = 'a'\n", "../x.py": ""})]
    cli_results = check_with_cli(snaps)
    with LspPool() as pool:
        pool_results = pool.check(snaps)
    for by_cli, by_pool in zip(cli_results, pool_results):
        assert by_cli.ok and by_cli.all_diagnostics() == by_pool.all_diagnostics()
        assert by_cli.skipped == by_pool.skipped
        assert 0 < by_cli.pyright_seconds < by_cli.seconds
    assert keys(cli_results[0].diagnostics["main.py"]) == expected_main()
