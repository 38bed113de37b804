"""What every otlake command shares: the --home option, instants, progress, clean errors."""

from __future__ import annotations

import os
import re
import sys
from datetime import UTC, datetime

import click

from events.errors import BadEvent, OtlakeError

HOME_HELP = "Warehouse folder (default: $OTLAKE_HOME, else ./otlake-data)."


def home_option(f):
    return click.option("--home", type=click.Path(file_okay=False), default=None, help=HOME_HELP)(f)


# what `otlake sql` prints for a TIMESTAMPTZ (DuckDB's text): a space for the T, an offset of hours only
_DUCKDB_TS = re.compile(r"(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}(?:\.\d+)?)([+-]\d{2})(?::?(\d{2}))?")


def parse_instant(value: str | None, option: str = "--at") -> int:
    """RFC 3339 text, a date, or a timestamp as `otlake sql` prints it -> µs since the epoch; None means now."""
    from events.validate import parse_ts

    if value is None:
        now = datetime.now(UTC)
        return int(now.timestamp() * 1_000_000)
    value = value.strip()
    if "T" not in value and len(value) == 10:
        value += "T00:00:00Z"
    duckdb_text = _DUCKDB_TS.fullmatch(value)
    if duckdb_text:
        day, clock, hours, minutes = duckdb_text.groups()
        value = f"{day}T{clock}{hours}:{minutes or '00'}"
    try:
        return parse_ts(value)
    except BadEvent as e:
        example = "" if "e.g." in e.detail else " (e.g. 2024-03-01T12:00:00Z)"
        raise click.BadParameter(f"{e.detail}{example}", param_hint=option) from None


class Progress:
    """A progress bar on stderr (quiet when stderr is not a terminal)."""

    def __init__(self, total: int | None, label: str) -> None:
        self.bar = click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True) if total else None

    def __enter__(self):
        if self.bar:
            self.bar.__enter__()
        return self

    def __call__(self, n: int) -> None:
        trace = os.environ.get("OTLAKE_TRACE")
        if trace:
            print(f"progress +{n}", file=sys.stderr, flush=True)
            if trace == "step":  # wait for a line on stdin: a test kills the process exactly here
                sys.stdin.readline()
        if self.bar:
            self.bar.update(n)

    def __exit__(self, *exc) -> None:
        if self.bar:
            self.bar.__exit__(*exc)


class PartitionProgress(Progress):
    """A progress bar fed by otlake.pipeline.run_stage: (partitions done, partitions in all)."""

    def __init__(self, label: str) -> None:
        super().__init__(None, label)
        self.label, self.done = label, 0

    def __call__(self, done: int, total: int) -> None:
        if done < self.done and self.bar is not None:  # the next run (e.g. synth's next source): a new bar
            self.bar.__exit__(None, None, None)
            self.bar, self.done = None, 0
        if self.bar is None and total:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr, show_pos=True)
            self.bar.__enter__()
        super().__call__(done - self.done)
        self.done = done


class ErrorsAsClickGroup(click.Group):
    """Turns otlake's own errors into a clean message and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OtlakeError as e:
            raise click.ClickException(str(e)) from None
