"""One privacy rule (events/privacy.py), the same in Python and in SQL, and no other spelling of it."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from events.privacy import is_public, public_sql

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("value, public", [(False, True), (True, False), (None, False)])
def test_python_and_sql_agree_and_unknown_is_private(value, public):
    assert is_public(value) is public
    with duckdb.connect() as con:
        got = con.execute(f"SELECT {public_sql('x')} FROM (SELECT ?::BOOLEAN AS x)", [value]).fetchall()
    assert got == [(public,)]


def test_no_module_decides_privacy_by_itself():
    # a condition on is_private (=, IS, NOT coalesce(...), `is False`) anywhere but the rule's own module;
    # `is_private IS NULL` only splits the non-public by reason (dataset build's counts)
    condition = re.compile(r"is_private\b\s*(==|=(?!\w)|is\b|IS\b(?! NULL)|!=|<>)|coalesce\(\s*\w*\.?is_private"
                           r"|is_private\"\)\s*is")
    found = []
    for package in ("otlake", "synth", "eval", "warehouse", "train"):
        for path in (REPO / package).rglob("*.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if condition.search(line) and "ON CONFLICT" not in line and "excluded." not in line:
                    found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)
