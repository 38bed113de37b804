"""The meta-LSP as the session simulator's linter: what users of pyright-extended saw while typing."""

from __future__ import annotations

from events.simulator.diagnostics import LintState

from .config import DEFAULT_CONFIG, LspConfig
from .pool import LspPool
from .snapshot import Snapshot

BATCH = 256  # states per pool call (and per ruff process)


class MetaLspLinter:
    """Checks each state's file beside the repl's other files with warm pyright servers and ruff.

    A state the servers cannot check (crash or hang, retried) logs no
    diagnostics, like an editor whose language server died.
    """

    def __init__(self, workers: int = 1, config: LspConfig = DEFAULT_CONFIG, timeout_s: float = 30.0) -> None:
        self.workers = workers
        self.config = config
        self.timeout_s = timeout_s
        self.failed = 0

    def __call__(self, states: list[LintState]) -> list[list[dict]]:
        out: list[list[dict]] = []
        with LspPool(size=self.workers, config=self.config, timeout_s=self.timeout_s) as pool:
            for start in range(0, len(states), BATCH):
                chunk = states[start : start + BATCH]
                snapshots = [Snapshot(f"s{start + i}", dict(s.files), (s.path,)) for i, s in enumerate(chunk)]
                results = {r.snapshot_id: r for r in pool.check(snapshots)}
                for snapshot, state in zip(snapshots, chunk):
                    result = results.get(snapshot.id)
                    if result is None or not result.ok:
                        self.failed += 1
                        out.append([])
                        continue
                    out.append([d.to_event_fields() for d in result.diagnostics.get(state.path, ())])
        return out
