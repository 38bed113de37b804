"""The example the demo and the dataset card show is a repair of whole lines, never a line still being typed."""

from __future__ import annotations

import re

import orjson
import pytest
from click.testing import CliRunner

from otlake.dataset_cli import dataset
from synth.linediff import render
from synth.schema import Prompt, parse_prompt, parse_response
from synth.showcase import excerpt, pick, rank, types_on, whole_tokens
from warehouse.store import Warehouse

from .test_dataset import Planter, program

TYPO = "import ctypes\n\nBYTE = ctypes.c_byte\nBOOLEAN = BYE\nBOOL = ctypes.c_long\n"


@pytest.mark.parametrize("line, whole", [
    ("BOOLEAN = BYE", True), ("    return x  # done", True), ("", True), ("def f(x):", True),
    ("print(so", False), ('print("ç', False), ('    """Return the (int) modific', False),
    ("x = [1, 2", False)])
def test_whole_tokens(line, whole):
    assert whole_tokens(line) is whole


def test_types_on():
    assert types_on("imp", "import codecs") and types_on("    nums = ", "    nums = [3, 1, 2]")
    assert not types_on("BOOLEAN = BYE", "BOOLEAN = BYTE") and not types_on("x = 1", "x = 1")
    assert not types_on("", "import sys")  # an empty line is not a start of typing


@pytest.mark.parametrize("code, diff, line, expected", [
    (TYPO, "-4 BOOLEAN = BYE\n+4 BOOLEAN = BYTE", 4, (0, 0, 2, 34)),          # a typo fixed where it is
    (TYPO, "-4 BOOLEAN = BYE\n+4 BOOLEAN = BYTE", 5, (0, 1, 2, 34)),          # ... where the error is not
    (TYPO, "+2 import sys", 4, (1, 1, 1, 13)),                                 # adds a whole line
    ("import os\nim", "-2 im\n+2 import sys", 2, None),                         # finishes the line being typed
    ("x = 1\nprint(so", "-2 print(so\n+2 print(x)", 2, None),                  # an unclosed bracket
    ("import os\nclass Full(Exception):", "-2 class Full(Exception):\n+2 import heapq", 2, None),  # typed at the end
    ("import os\nclass Full(Exception):\n", "-2 class Full(Exception):\n+2 import heapq", 2, (0, 0, 2, 41)),
    (TYPO, "", 4, None), (TYPO, "-4 BOOLEAN = BYE\n+x BOOLEAN", 4, None),       # nothing to show; malformed
])
def test_rank(code, diff, line, expected):
    assert rank(code, diff, line) == expected


def test_pick_prefers_a_repair_over_a_shorter_line_being_typed_and_keeps_the_first_of_equals():
    typing = ("typing", "import os\nim", "-2 im\n+2 import os", 2)
    typo = ("typo", TYPO, "-4 BOOLEAN = BYE\n+4 BOOLEAN = BYTE", 4)
    addition = ("addition", TYPO, "+2 import sys", 4)
    assert pick([typing, addition, typo]) == "typo"
    assert pick([typing, addition]) == "addition"
    assert pick([("a", *typo[1:]), ("b", *typo[1:])]) == "a"
    assert pick([typing]) is None and pick([]) is None


def test_excerpt_keeps_the_lines_near_the_fix_and_the_error():
    code = "\n".join(f"line_{n} = {n}" for n in range(1, 31)) + "\n"
    prompt = Prompt("main.py", code, "ruff[F821]", "Undefined name `x`", 12)
    text = excerpt(prompt, "-20 line_20 = 20\n+20 line_20 = x", context=1)
    body = text.split("\n")[2:text.split("\n").index("</code>")]
    assert body == ["...", "11 line_11 = 11", "12 line_12 = 12", "13 line_13 = 13", "...",
                    "19 line_19 = 19", "20 line_20 = 20", "21 line_21 = 21", "..."]
    assert text.endswith("<error_line>\n12 line_12 = 12\n</error_line>")
    # an added line shows beside the original line it follows: after two lines added above, +25 follows 22
    added = excerpt(prompt, "+1 import a\n+2 import b\n+25 x = 1", context=0).split("\n")
    assert "22 line_22 = 22" in added and "21 line_21 = 21" not in added and "23 line_23 = 23" not in added


def test_the_card_shows_a_real_repair_not_the_shortest_diff(tmp_path):
    home = tmp_path / "wh"
    fixed = program(200)
    typing = fixed[: fixed.rindex("print(") + 2]  # the user had typed `pr` at the end of the file
    with Warehouse(home) as wh:
        p = Planter(wh.con)
        for i in range(6):
            p.add(program(i), repl=f"r{i}")
        p.add(fixed, repl="r9", code=typing)
        shortest = wh.con.execute("SELECT diff FROM diffs ORDER BY length(diff) LIMIT 1").fetchall()[0][0]
    assert shortest == render(typing, fixed) and shortest.split("\n")[0].endswith(" pr")  # what length would show
    result = CliRunner().invoke(dataset, ["build", "v1", "--out", str(tmp_path / "v1"), "--home", str(home),
                                          "--no-debugbench"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    card = (tmp_path / "v1" / "README.md").read_text()
    section = card.split("## An example\n", 1)[1].split("\n## ", 1)[0]
    where = section.split(",", 1)[0].strip()
    block = section.split("```text\n", 1)[1].split("\n```", 1)[0]
    split, number = where.split(" of ")[1], int(where.split()[1])
    record = orjson.loads((tmp_path / "v1" / split).read_bytes().splitlines()[number - 1])
    diff = parse_response(record["response"])
    assert not re.search(r"^-\d+ pr$", block, re.MULTILINE)
    assert re.fullmatch(r"-(\d+) prnt\((.*)\)\n\+\1 print\(\2\)", diff), diff
    assert block.endswith(record["response"])  # the response as written, the prompt as an excerpt of it
    prompt = parse_prompt(record["prompt"])
    assert block.split("\n<diff>")[0] == excerpt(prompt, diff)
