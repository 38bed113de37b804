"""What `otlake simulate` tells the user: its progress on stderr, and real ids and instants to try afterwards."""

from __future__ import annotations

import sys
import time

import click

from events.privacy import is_public


class SimulateProgress:
    """Prints each step of a simulation on stderr as it starts and ends (the checking step is the long one)."""

    def __init__(self, checker: str) -> None:
        self.checker = checker
        self.started = time.perf_counter()
        self.step_started = self.started
        self.bar = None

    def __call__(self, step: str, done: int, total: int) -> None:
        if step == "typing":
            if self.bar is None:
                self.bar = click.progressbar(length=total, label="typing repls", file=sys.stderr, show_pos=True)
                self.bar.__enter__()
            self.bar.update(1)
            if done == total:
                self.bar.__exit__(None, None, None)
                self.bar = None
                self._say(f"typed {total} repl{'s' if total != 1 else ''} in {self._lap():.1f} s")
        elif done == 0:
            self._lap()
            self._say(f"checking {total:,} file states with {self.checker}: the diagnostics the users saw ...")
        else:
            self._say(f"checked {total:,} file states in {self._lap():.1f} s")

    def close(self) -> None:
        """End the bar of an interrupted simulation."""
        if self.bar is not None:
            self.bar.__exit__(None, None, None)

    def _lap(self) -> float:
        now = time.perf_counter()
        took, self.step_started = now - self.step_started, now
        return took

    @staticmethod
    def _say(message: str) -> None:
        click.echo(message, err=True)


def suggestions(events: list[dict], out: str) -> list[str]:
    """Commands that work on this log once ingested: a public repl, replayed where a diagnostic was logged."""
    public = {e["repl_id"] for e in events if e["kind"] == "repl" and is_public(e.get("is_private"))}
    logged = [e for e in events if e["kind"] == "lsp_diagnostic" and e["repl_id"] in public]
    if not logged:
        return []
    first = min(logged, key=lambda e: (e["repl_id"], e["seq"]))  # the lowest repl id: the same for any --repls
    repl, at, path = first["repl_id"], first["ts"], first["path"]
    return [f"then, e.g. (a diagnostic was logged in {repl} at {at}):",
            f"  otlake ingest {out}",
            f"  otlake replay {repl} --at {at} --path {path}",
            f'  otlake sql "SELECT path, length(content) FROM files_at(\'{repl}\', TIMESTAMPTZ \'{at}\')"']
