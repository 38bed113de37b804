"""The normalized Diagnostic, matching, ruff and pyright conversion, and the config (no processes)."""

from __future__ import annotations

import pytest

from lsp_runner import DEFAULT_CONFIG, Diagnostic, LspConfig, LspError, matches, normalize_message
from lsp_runner.merge import from_lsp, keep_pyright, pyright_code
from lsp_runner.ruff import to_diagnostic

LOGGED_EVENT = {  # an lsp_diagnostic event's fields, as DESIGN.md spells them
    "path": "main.py",
    "range": {"start": {"line": 2, "character": 9}, "end": {"line": 2, "character": 15}},
    "severity": 1,
    "code": "pyright[reportAttributeAccessIssue]",
    "message": "'screen' is not a known attribute of module 'turtle'",
    "has_code_action": False,
}


def reproduced(**changes) -> Diagnostic:
    fields = {"path": "main.py", "code": "pyright[reportAttributeAccessIssue]", "start_line": 2,
              "start_character": 16, "end_line": 2, "end_character": 22, "severity": 1,
              "message": '"screen" is not a known attribute of module "turtle"',
              "has_code_action": False, "source": "pyright"}
    return Diagnostic(**{**fields, **changes})


def test_matches_on_path_code_start_line_and_normalized_message():
    assert matches(LOGGED_EVENT, reproduced())  # other quotes, other start character
    assert not matches(LOGGED_EVENT, reproduced(start_line=3))
    assert not matches(LOGGED_EVENT, reproduced(path="other.py"))
    assert not matches(LOGGED_EVENT, reproduced(code="pyright[reportCallIssue]"))
    assert not matches(LOGGED_EVENT, reproduced(message='"screen" is not defined'))


def test_matches_ignores_numbers_and_accepts_warehouse_rows():
    row = {"path": "a.py", "start_line": 4, "start_character": 0, "end_line": 4, "end_character": 3,
           "severity": 1, "code": "pyright[reportCallIssue]", "message": "Expected 2 positional arguments",
           "has_code_action": False}
    again = Diagnostic.from_mapping(row)
    assert matches(row, again.__class__(**{**again.to_dict(), "message": "Expected 13 positional arguments"}))
    assert not matches(row, {**row, "message": "Expected positional arguments"})


def test_normalize_message():
    assert normalize_message("Expected 3 args,\n\xa0\xa0got `x` and \u201cy\u201d 1.5") == \
        'Expected 0 args, got "x" and "y" 0'


def test_to_dict_uses_the_warehouse_column_names_and_round_trips():
    d = reproduced(has_code_action=True)
    assert list(d.to_dict()) == ["path", "code", "start_line", "start_character", "end_line",
                                 "end_character", "severity", "message", "has_code_action", "source"]
    assert Diagnostic.from_mapping(d.to_dict()) == d
    assert Diagnostic.from_mapping(d.to_event_fields()) == d
    assert d.severity_name == "error"


def test_ruff_rows_become_zero_based_with_pyright_extended_severities():
    row = {"code": "E703", "location": {"row": 7, "column": 22}, "end_location": {"row": 7, "column": 23},
           "message": "Statement ends with an unnecessary semicolon", "fix": {"edits": []}}
    d = to_diagnostic("main.py", row)
    assert (d.code, d.start_line, d.start_character, d.end_line, d.end_character) == ("ruff[E703]", 6, 21, 6, 22)
    assert (d.severity, d.has_code_action, d.source) == (1, True, "ruff")
    f821 = to_diagnostic("main.py", {**row, "code": "F821", "fix": None})
    assert (f821.severity, f821.has_code_action) == (2, False)
    syntax = to_diagnostic("main.py", {**row, "code": "invalid-syntax", "location": {"row": 1, "column": 1}})
    assert (syntax.code, syntax.severity, syntax.start_line, syntax.start_character) == ("ruff[E999]", 1, 0, 0)


def test_pyright_unused_code_is_left_to_ruff():
    item = {"range": {"start": {"line": 0, "character": 7}, "end": {"line": 0, "character": 9}},
            "message": '"os" is not accessed', "severity": 4, "tags": [1]}
    assert not keep_pyright(item, DEFAULT_CONFIG)  # rule-less faded hint
    assert not keep_pyright({**item, "code": "reportUnusedImport", "severity": 2, "tags": []}, DEFAULT_CONFIG)
    kept = {**item, "code": "reportUnusedExpression", "severity": 2, "tags": []}
    assert keep_pyright(kept, DEFAULT_CONFIG)
    assert keep_pyright(kept, LspConfig(drop_pyright_rules=())) is True
    assert not keep_pyright(kept, LspConfig(drop_pyright_rules=("reportUnusedExpression",)))


def test_pyright_codes_and_rule_less_diagnostics():
    syntax = {"range": {"start": {"line": 3, "character": 1}, "end": {"line": 3, "character": 2}},
              "message": "Expected expression", "severity": 1}
    d = from_lsp("a.py", syntax)
    assert (d.code, d.source, d.start_line, d.has_code_action) == ("pyright[error]", "pyright", 3, False)
    assert pyright_code(None, 2) == "pyright[warning]"
    assert from_lsp("a.py", {**syntax, "code": "reportMissingTypeStubs"}).has_code_action


def test_config_defaults_and_validation():
    assert DEFAULT_CONFIG.pyrightconfig() == {"typeCheckingMode": "basic", "pythonVersion": "3.11",
                                              "pythonPlatform": "Linux"}
    args = LspConfig(ruff_select=("E9", "F"), ruff_ignore=("F401",)).ruff_args()
    assert args[args.index("--select") + 1] == "E9,F" and args[args.index("--ignore") + 1] == "F401"
    assert "--isolated" in args and "--force-exclude" in args
    custom = LspConfig(rule_overrides={"reportMissingImports": "warning"})
    assert custom.pyrightconfig()["reportMissingImports"] == "warning"
    with pytest.raises(LspError, match="type_checking_mode"):
        LspConfig(type_checking_mode="pedantic")
    with pytest.raises(LspError, match="rule override"):
        LspConfig(rule_overrides={"reportMissingImports": "loud"})
