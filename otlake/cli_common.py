"""What every otlake command shares: the --home option, instants, progress, clean errors."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime

import click

from events.errors import BadEvent, OtlakeError

HOME_HELP = "Warehouse folder (default: $OTLAKE_HOME, else ./otlake-data)."


def home_option(f):
    return click.option("--home", type=click.Path(file_okay=False), default=None, help=HOME_HELP)(f)


def parse_instant(value: str | None, option: str = "--at") -> int:
    """RFC 3339 text -> µs since the epoch; None means now."""
    from events.validate import parse_ts

    if value is None:
        now = datetime.now(UTC)
        return int(now.timestamp() * 1_000_000)
    if "T" not in value and len(value) == 10:
        value += "T00:00:00Z"
    try:
        return parse_ts(value)
    except BadEvent as e:
        raise click.BadParameter(f"{e.detail} (e.g. 2024-03-01T12:00:00Z)", param_hint=option) from None


class Progress:
    """A progress bar on stderr (quiet when stderr is not a terminal)."""

    def __init__(self, total: int | None, label: str) -> None:
        self.bar = click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True) if total else None

    def __enter__(self):
        if self.bar:
            self.bar.__enter__()
        return self

    def __call__(self, n: int) -> None:
        if os.environ.get("OTLAKE_TRACE"):
            print(f"progress +{n}", file=sys.stderr, flush=True)
        if self.bar:
            self.bar.update(n)

    def __exit__(self, *exc) -> None:
        if self.bar:
            self.bar.__exit__(*exc)


class ErrorsAsClickGroup(click.Group):
    """Turns otlake's own errors into a clean message and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OtlakeError as e:
            raise click.ClickException(str(e)) from None
