"""The README's CLI reference, generated from the click commands themselves (`make readme` rewrites it).

`cli_reference()` walks `otlake.cli.main` through every group and returns Markdown: per command its usage,
its one-line summary and a table of its options (what click declares: names, metavar, default, environment
variable, range, help). The text depends on nothing but the declarations: no terminal width, no environment
variable's value, and an absolute path in a help text or a default (e.g. one resolved from this checkout's
location) is written relative to the repository, as `../shared/...`. Making it imports the CLI modules
only, which import their heavy dependencies (litellm, torch) inside the commands.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
# click >= 8.3 marks "no default" with a sentinel of its own, older clicks with None
_UNSET = getattr(click.core, "UNSET", None)


def iter_commands(group: click.Command, name: str = "otlake",
                  parent: click.Context | None = None) -> Iterator[tuple[str, click.Command, click.Context]]:
    """(full name, command, its context) for the command and every visible command below it, depth first."""
    ctx = click.Context(group, info_name=name, parent=parent, **group.context_settings)
    yield ctx.command_path, group, ctx
    if isinstance(group, click.Group):
        for sub in group.list_commands(ctx):
            command = group.get_command(ctx, sub)
            if command is not None and not command.hidden:
                yield from iter_commands(command, sub, ctx)


def cli_reference(group: click.Command | None = None, name: str = "otlake") -> str:
    """The Markdown of every command below `group` (default: otlake's `main`), ending with a newline."""
    if group is None:
        from .cli import main as group
    blocks = []
    for path, command, ctx in iter_commands(group, name):
        blocks.append(_command_block(path, command, ctx, top=ctx.parent is None))
    return "\n\n".join(blocks) + "\n"


def _command_block(path: str, command: click.Command, ctx: click.Context, top: bool) -> str:
    lines = [f"### `{path}`", ""]
    summary = command.get_short_help_str(limit=10_000)
    if summary:
        lines += [_text(summary), ""]
    usage = " ".join([path, *command.collect_usage_pieces(ctx)])
    lines.append(_code(usage))
    if isinstance(command, click.Group):
        subs = [s for s in command.list_commands(ctx) if not getattr(command.get_command(ctx, s), "hidden", True)]
        lines[-1] += ", COMMAND one of " + ", ".join(_code(s) for s in subs) + "."
    if top:
        help_option = command.get_help_option(ctx)
        if help_option is not None:
            lines[-1] += " Every command takes " + " / ".join(_code(o) for o in help_option.opts) + "."
    rows = [_option_row(p, ctx) for p in command.params
            if isinstance(p, click.Option) and not p.hidden]
    if rows:
        lines += ["", "| option | default | what |", "| --- | --- | --- |", *rows]
    return "\n".join(lines)


def _option_row(option: click.Option, ctx: click.Context) -> str:
    names = ", ".join(option.opts)
    if option.secondary_opts:
        names += " / " + ", ".join(option.secondary_opts)
    if not option.is_flag and not option.count:
        names += " " + _metavar(option)
    default = _default(option, ctx)
    envvars = [option.envvar] if isinstance(option.envvar, str) else list(option.envvar or ())
    cells = [_code(names), ", ".join([*([_code(default)] if default else []),
                                      *(_code(f"${v}") for v in envvars)])]
    if option.required:
        cells[1] = "required"
    what = _text(option.help or "")
    if isinstance(option.type, (click.IntRange, click.FloatRange)):
        what = f"{what} [{_range(option.type)}]".strip()
    cells.append(what)
    return "| " + " | ".join(c.replace("|", r"\|") for c in cells) + " |"


def _metavar(param: click.Parameter) -> str:
    """As click's --help writes it, less the `RANGE` of a number range (the range itself is in the row)."""
    if param.metavar is not None:
        metavar = param.metavar
    elif isinstance(param.type, click.Choice):
        metavar = "[" + "|".join(str(getattr(c, "name", c)) for c in param.type.choices) + "]"
    else:
        metavar = param.type.name.upper().removesuffix(" RANGE")
    return metavar + ("..." if param.nargs != 1 else "")


def _range(kind) -> str:
    low = f"{kind.min}{'<' if kind.min_open else '<='}" if kind.min is not None else ""
    high = f"{'<' if kind.max_open else '<='}{kind.max}" if kind.max is not None else ""
    if low and not high:  # x>=1 as click writes it, not 1<=x
        return f"x{'>' if kind.min_open else '>='}{kind.min}"
    return f"{low}x{high}"


def _default(option: click.Option, ctx: click.Context) -> str:
    """The declared default as text; '' where there is none to show (None, unset, off, show_default=False)."""
    if isinstance(option.show_default, str):
        return _portable(option.show_default)
    if option.show_default is False:
        return ""
    value = option.get_default(ctx, call=False)
    if callable(value):
        return "(dynamic)"
    if option.is_flag and not option.count:
        if not value or value is _UNSET:
            return ""
        return option.opts[0] if option.secondary_opts else "on"
    if value is None or value is _UNSET or value == ():
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(_portable(str(getattr(v, "name", v))) for v in value)
    if isinstance(value, Enum):
        return value.name
    return _portable(str(value))


def _portable(text: str) -> str:
    """An absolute path in this checkout or beside it, relative to the checkout (as README's commands use it)."""
    for folder, short in ((ROOT, "."), (ROOT.parent, ".."), (Path.home(), "~")):
        if len(folder.parts) > 1:  # never "/" itself
            text = re.sub(re.escape(str(folder)) + r"(?![\w.-])", short, text)
    return text


def _text(text: str) -> str:
    """One line of Markdown: whitespace collapsed, HTML and emphasis escaped outside `code spans`."""
    text = _portable(" ".join(text.replace("\b", " ").split()))
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(p if p.startswith("`") else re.sub(r"([<*\\])", r"\\\1", p) for p in parts)


def _code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


if __name__ == "__main__":  # `python -m otlake.cli_reference`: print it
    sys.stdout.write(cli_reference())
