"""`otlake sql` in-process on a real warehouse: every DuckDB type in every format, and clean errors."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest
from click.testing import CliRunner

from otlake.cli import main
from otlake.stages import ingest_events
from warehouse.store import Warehouse

from .conftest import Log

# (column, SQL expression, DuckDB's text of it (table and CSV), its JSON value)
TYPES = [
    ("interval", "INTERVAL '1 month 2 days 03:04:05.5'", "1 month 2 days 03:04:05.5", "1 month 2 days 03:04:05.5"),
    ("negative_interval", "-INTERVAL '1 second'", "-00:00:01", "-00:00:01"),
    ("uuid", "'550e8400-e29b-41d4-a716-446655440000'::UUID", "550e8400-e29b-41d4-a716-446655440000",
     "550e8400-e29b-41d4-a716-446655440000"),
    ("blob", r"'\x00\xFFab\x5C'::BLOB", r"\x00\xFFab\x5C", r"\x00\xFFab\x5C"),
    ("list", "[1, NULL, 3]", "[1, NULL, 3]", [1, None, 3]),
    ("struct", "{'a': [1.5, 'nan'::DOUBLE], 'b': {'c': NULL}}", "{'a': [1.5, nan], 'b': {'c': NULL}}",
     {"a": [1.5, "NaN"], "b": {"c": None}}),
    ("map", "MAP {'k': 1, 'j': 2}", "{k=1, j=2}", {"k": 1, "j": 2}),
    ("map_int_keys", "MAP {1: 'x'}", "{1=x}", {"1": "x"}),
    ("decimal", "123456789012345678901234567.123456789::DECIMAL(38,9)", "123456789012345678901234567.123456789",
     Decimal("123456789012345678901234567.123456789")),
    ("decimal_literal", "1.50", "1.50", Decimal("1.5")),
    ("date", "DATE '2024-03-01'", "2024-03-01", "2024-03-01"),
    ("date_infinity", "'infinity'::DATE", "infinity", "infinity"),
    ("time", "TIME '12:34:56.789'", "12:34:56.789", "12:34:56.789"),
    ("timetz", "'12:34:56+02'::TIMETZ", "12:34:56+02", "12:34:56+02"),
    ("timestamptz", "TIMESTAMPTZ '2024-03-01 12:00:00.5+00'", "2024-03-01 12:00:00.5+00", "2024-03-01 12:00:00.5+00"),
    ("timestamp_ns", "'2024-03-01 12:00:00.123456789'::TIMESTAMP_NS", "2024-03-01 12:00:00.123456789",
     "2024-03-01 12:00:00.123456789"),
    ("timestamp_infinity", "'-infinity'::TIMESTAMPTZ", "-infinity", "-infinity"),
    ("nan", "'nan'::DOUBLE", "nan", "NaN"),
    ("infinity", "'inf'::DOUBLE", "inf", "Infinity"),
    ("minus_infinity", "'-inf'::FLOAT", "-inf", "-Infinity"),
    ("double", "0.1::DOUBLE", "0.1", Decimal("0.1")),
    ("hugeint", "170141183460469231731687303715884105727::HUGEINT", "170141183460469231731687303715884105727",
     170141183460469231731687303715884105727),
    ("uhugeint", "340282366920938463463374607431768211455::UHUGEINT", "340282366920938463463374607431768211455",
     340282366920938463463374607431768211455),
    ("bignum", "'-123456789012345678901234567890123456789012'::BIGNUM", "-123456789012345678901234567890123456789012",
     -123456789012345678901234567890123456789012),
    ("bit", "'0101'::BIT", "0101", "0101"),
    ("enum", "'happy'::ENUM('sad', 'happy')", "happy", "happy"),
    ("union", "union_value(num := 2)::UNION(num INT, s VARCHAR)", "2", {"num": 2}),
    ("array", "[1, 2, 3]::INT[3]", "[1, 2, 3]", [1, 2, 3]),
    ("bool", "true", "true", True),
    ("text", "'a' || chr(10) || 'b' || chr(9) || '\"c\", é'", 'a\nb\t"c", é', 'a\nb\t"c", é'),
    ("text_with_nan", "'NaN or Infinity'", "NaN or Infinity", "NaN or Infinity"),
    ("json", """'{"x": [1, 2.5]}'::JSON""", '{"x": [1, 2.5]}', {"x": [1, Decimal("2.5")]}),
    ("null", "NULL", None, None),
]
# the first row has every value; the second the NULL of every type
QUERY = (f"SELECT 0 AS k, {', '.join(f'{e} AS {c}' for c, e, _, _ in TYPES)} "
         f"UNION ALL SELECT 1, {', '.join('NULL' for _ in TYPES)} ORDER BY k")


@pytest.fixture
def sql(tmp_path, monkeypatch):
    monkeypatch.setenv("OTLAKE_HOME", str(tmp_path / "home"))
    log = Log("r1")
    log.type("main.py", "hi")
    with Warehouse() as wh:
        ingest_events(wh, log.events)

    def invoke(*args, ok=True, input=None):
        # catch_exceptions=False: a traceback fails the test
        result = CliRunner().invoke(main, ["sql", *args], catch_exceptions=False, input=input)
        assert (result.exit_code == 0) == ok, result.output
        return result

    return invoke


def test_every_type_as_json(sql):
    text = sql(QUERY, "--format", "json").output
    rows = json.loads(text, parse_float=Decimal)  # exact digits; json.loads refuses nothing valid
    assert rows[0] == {"k": 0, **{c: value for c, _, _, value in TYPES}}
    assert rows[1] == {"k": 1, **{c: None for c, _, _, _ in TYPES}}
    # strict JSON: no bare NaN or Infinity a strict parser would refuse
    json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON output"))


def test_every_type_as_csv(sql):
    rows = list(csv.reader(io.StringIO(sql(QUERY, "--format", "csv").output)))
    assert rows[0] == ["k", *(c for c, _, _, _ in TYPES)]
    assert rows[1] == ["0", *("" if text is None else text for _, _, text, _ in TYPES)]
    assert rows[2] == ["1", *("" for _ in TYPES)]
    assert len(rows) == 3


def test_every_type_as_a_table(sql):
    lines = sql(QUERY).output.splitlines()
    cells = [[c.strip() for c in line[2:-2].split(" | ")] for line in lines if line.startswith("| ")]
    assert cells[0] == ["k", *(c for c, _, _, _ in TYPES)]
    shown = [None if t is None else t.replace("\n", "\\n").replace("\t", "\\t") for _, _, t, _ in TYPES]
    assert cells[1] == ["0", *("NULL" if t is None else t for t in shown)]
    assert cells[2] == ["1", *("NULL" for _ in TYPES)]
    assert lines[-1] == "2 rows"


@pytest.mark.parametrize("query", ["", "   \n", "-- only a comment", "/* a comment */ ;"])
def test_an_empty_query_is_an_error(sql, query):
    result = sql("--", query, ok=False)  # `--` ends the options: the query may start with --
    assert result.exit_code == 1 and "Error: empty query: give a SQL statement" in result.output


def test_dash_reads_the_query_from_stdin(sql):
    assert json.loads(sql("-", "--format", "json", input="SELECT 42 AS x;\n").output) == [{"x": 42}]
    assert "empty query" in sql("-", input="  ", ok=False).output


@pytest.mark.parametrize(("statement", "kind"), [
    ("INSERT INTO repls (repl_id) VALUES ('x')", "INSERT"),
    ("CREATE TABLE notes (x INT)", "CREATE"),
    ("UPDATE repls SET title = 't'", "UPDATE"),
    ("DELETE FROM events", "DELETE"),
    ("DROP TABLE events", "DROP"),
    ("ALTER TABLE repls ADD COLUMN y INT", "ALTER"),
])
def test_a_write_without_write_says_to_use_it(sql, statement, kind):
    result = sql(statement, ok=False)
    assert result.exit_code == 1
    assert f"Error: {kind} writes to the warehouse, which is open read-only: run it with `otlake sql --write`" \
        in result.output
    assert json.loads(sql("SELECT count(*) AS n FROM events", "--format", "json").output) == [{"n": 3}]


def test_writes_with_write_and_statements_with_nothing_to_show(sql):
    assert sql("CREATE TABLE notes (x INT)", "--write").output == "ok\n"
    inserted = sql("INSERT INTO notes VALUES (1), (2)", "--write", "--format", "csv").output
    assert inserted.splitlines() == ["Count", "2"]
    assert sql("SET threads = 1").output == "ok\n"
    # several statements: each runs, the last one's rows are printed
    assert json.loads(sql("SELECT 1 AS a; SELECT sum(x) AS total FROM notes", "--format", "json").output) == [
        {"total": 3}]
    assert sql("SELECT * FROM notes WHERE x > 5", "--format", "json").output == "[]\n"


@pytest.mark.parametrize(("query", "message"), [
    ("SELEC 1", 'Error: Parser Error: syntax error at or near "SELEC"'),
    ("SELECT * FROM nope", "Error: Catalog Error: Table with name nope does not exist!"),
    ("SELECT nope FROM events", 'Error: Binder Error: Referenced column "nope" not found'),
    ("SELECT 'a'::INT", "Error: Conversion Error: Could not convert string 'a' to INT32"),
    ("SELECT 1; SELEC 2", 'Error: Parser Error: syntax error at or near "SELEC"'),
])
def test_sql_errors_are_duckdbs_message(sql, query, message):
    result = sql(query, ok=False)
    assert result.exit_code == 1 and result.output.startswith(message), result.output


def test_an_unknown_table_says_how_to_list_tables(sql):
    assert '(list the tables with otlake sql "SHOW TABLES")' in sql("SELECT * FROM nope", ok=False).output


def test_a_query_that_is_not_utf8_is_a_clean_error(sql):
    result = sql("SELECT '\udcff' AS x", ok=False)  # what click makes of a byte 0xff in argv
    assert result.exit_code == 1 and "the query is not UTF-8 text" in result.output
    result = sql("-", input=b"SELECT '\xff' AS x", ok=False)
    assert result.exit_code == 1 and "not UTF-8" in result.output


def test_json_keeps_every_digit_beside_a_nan_and_names_repeated_columns_apart(sql):
    text = sql("SELECT {'d': 12345678901234568.5::DECIMAL(38, 20), 'n': 'nan'::DOUBLE} AS v, "
               "{'s': 'NaN in a string', 'f': 'inf'::DOUBLE} AS w, 1 AS a, 2 AS a", "--format", "json").output
    (row,) = json.loads(text, parse_float=Decimal)
    assert row["v"] == {"d": Decimal("12345678901234568.50000000000000000000"), "n": "NaN"}
    assert row["w"] == {"s": "NaN in a string", "f": "Infinity"}
    assert (row["a"], row["a_1"]) == (1, 2)
