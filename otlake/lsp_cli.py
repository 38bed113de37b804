"""`otlake lsp ...`: pyright + ruff as Replit's pyright-extended shows them, from the command line."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace

import click

from events.errors import OtlakeError


def _codes(value: str) -> tuple[str, ...]:
    return tuple(code.strip() for code in value.split(",") if code.strip())


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@click.group()
def lsp() -> None:
    """Language-server diagnostics: pyright and ruff, merged like pyright-extended.

    \b
    Example:
      otlake lsp check main.py
      otlake lsp check my_repl/ --format json
    """


@lsp.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--select", default=None,
              help="Ruff rules, comma-separated (default: pyright-extended's E,W,F,I,RUF,B,C4,ARG,SIM).")
@click.option("--ignore", default=None, help="Ruff rules to leave out, comma-separated.")
@click.option("--type-checking-mode", type=click.Choice(["off", "basic", "standard", "strict"]),
              default="basic", show_default=True, help="pyright's rule set.")
@click.option("--python-version", default="3.11", show_default=True, help="Python version pyright assumes.")
@click.option("--python-path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="A Python whose installed packages pyright may see (default: none, the stdlib only).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
              help="Seconds pyright may stay silent before it is restarted.")
def check(paths: tuple[str, ...], fmt: str, select: str | None, ignore: str | None,
          type_checking_mode: str, python_version: str, python_path: str | None, timeout_s: float) -> None:
    """Print the merged pyright + ruff diagnostics of files or folders.

    A folder is checked as one repl; a file is checked with its folder's
    Python files beside it, so its imports resolve. Text lines read as
    linters print them, PATH:LINE:COL: SEVERITY CODE MESSAGE, with 1-based
    line and column (the LSP position + 1), so editors and CI can parse
    them; --format json gives the 0-based LSP range instead (start_line,
    start_character, end_line, end_character). Codes are pyright[rule] and
    ruff[CODE]; "(fix)" ends a diagnostic with a ruff code action. Exit code:
    0 nothing found, 1 diagnostics found, 2 a file could not be checked.

    \b
    Example:
      otlake lsp check main.py utils.py
      otlake lsp check my_repl/ --select E,F --format json
    """
    from lsp_runner import LspConfig, check_paths_report

    config = LspConfig(type_checking_mode=type_checking_mode, python_version=python_version,
                       python_path=python_path and os.path.abspath(python_path))
    if select is not None:
        config = replace(config, ruff_select=_codes(select))
    if ignore is not None:
        config = replace(config, ruff_ignore=_codes(ignore))
    try:
        report = check_paths_report(paths, config, timeout_s=timeout_s)
    except OtlakeError as e:
        raise click.ClickException(str(e)) from None
    if fmt == "json":
        click.echo(json.dumps([d.to_dict() for d in report.diagnostics], ensure_ascii=False, indent=1))
    else:
        for d in report.diagnostics:
            fix = " (fix)" if d.has_code_action else ""
            first, *rest = d.message.splitlines() or [""]
            click.echo(f"{d.path}:{d.start_line + 1}:{d.start_character + 1}: {d.severity_name} {d.code} "
                       f"{first}{fix}")
            for line in rest:
                click.echo(f"    {line.strip()}")
    for path, reason in report.skipped.items():
        click.echo(f"skipped {path}: {reason}", err=True)
    for root, reason in report.failed.items():
        click.echo(f"failed {root}: {reason}", err=True)
    errors = sum(d.severity == 1 for d in report.diagnostics)
    click.echo(f"{_count(len(report.diagnostics), 'diagnostic')} ({_count(errors, 'error')}) in "
               f"{_count(report.files_checked, 'file')}; {len(report.skipped)} skipped, "
               f"{len(report.failed)} failed", err=True)
    if report.skipped or report.failed:
        sys.exit(2)
    if report.diagnostics:
        sys.exit(1)
