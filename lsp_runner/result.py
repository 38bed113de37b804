"""What checking a snapshot gives back, and the counters of a run."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from .diagnostic import Diagnostic

OK, FAILED = "ok", "failed"


@dataclass
class CheckResult:
    """The merged diagnostics of one snapshot, per checked path; or why it failed."""

    snapshot_id: str
    status: str  # 'ok' or 'failed'
    diagnostics: dict[str, list[Diagnostic]] = field(default_factory=dict)
    reason: str | None = None  # why it failed
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason it was not checked
    attempts: int = 0  # pyright attempts (1 unless a server crashed or hung)
    seconds: float = 0.0  # wall time pyright took for it, retries included
    pyright_seconds: float | None = None  # pyright's own reported time (CLI batch mode only)

    @property
    def ok(self) -> bool:
        """True when the snapshot was checked."""
        return self.status == OK

    def all_diagnostics(self) -> list[Diagnostic]:
        """Every diagnostic of the snapshot, in editor order."""
        return sorted((d for ds in self.diagnostics.values() for d in ds), key=Diagnostic.sort_key)

    def to_dict(self) -> dict:
        """Plain data (JSON-ready)."""
        return {
            "snapshot_id": self.snapshot_id, "status": self.status, "reason": self.reason,
            "diagnostics": [d.to_dict() for d in self.all_diagnostics()],
            "skipped": dict(self.skipped), "attempts": self.attempts,
            "seconds": round(self.seconds, 6), "pyright_seconds": self.pyright_seconds,
        }


@dataclass
class RunStats:
    """Counters of a pool's life; every failure and every skipped file is counted by reason."""

    snapshots: int = 0
    failed: int = 0
    files_checked: int = 0
    restarts: int = 0  # servers replaced after a crash, a hang or a protocol error
    recycles: int = 0  # servers replaced on schedule (snapshot count or memory)
    timeouts: int = 0
    crashes: int = 0
    protocol_errors: int = 0
    servers_started: int = 0
    peak_rss_mb: float = 0.0
    pyright_seconds: float = 0.0  # wall time on servers, summed over servers
    ruff_seconds: float = 0.0
    ruff_runs: int = 0  # ruff processes started (one per check call; one per snapshot when a batch fails)
    skipped: Counter = field(default_factory=Counter)  # reason -> files
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **amounts: float) -> None:
        """Adds to counters, safely from several worker threads."""
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def saw_rss(self, rss_mb: float) -> None:
        """Keeps the largest server memory seen."""
        with self._lock:
            self.peak_rss_mb = max(self.peak_rss_mb, rss_mb)

    def as_dict(self) -> dict:
        """Plain data (JSON-ready)."""
        out = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        out["skipped"] = dict(self.skipped)
        out["pyright_seconds"] = round(self.pyright_seconds, 3)
        out["ruff_seconds"] = round(self.ruff_seconds, 3)
        out["peak_rss_mb"] = round(self.peak_rss_mb, 1)
        return out
