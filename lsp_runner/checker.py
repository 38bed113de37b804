"""The Checker contract (DESIGN.md, "Stages, stores and engines"): snapshots in, one CheckResult each out.

Implementations: the local pool of warm pyright servers plus ruff (`LspPool`), and the AWS Lambda runner
(lambdas/). A stage gets its checker from its Context and never builds one. tests/checker_contract.py is
the one test case every implementation passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .result import CheckResult
from .snapshot import Snapshot


class Checker(Protocol):
    def check(self, snapshots: Sequence[Snapshot]) -> list[CheckResult]:
        """One result per snapshot, in order; a snapshot that cannot be checked comes back failed or with its
        files skipped (the reason given), never raised."""
        ...
