"""Every Checker passes the one contract (tests/checker_contract.py): the local pyright + ruff pool."""

from __future__ import annotations

import pytest

from lsp_runner import LspPool

from .checker_contract import CheckerContract


class TestLocalPool(CheckerContract):
    @pytest.fixture(scope="class")
    @classmethod
    def checker(cls):
        with LspPool(size=1) as pool:
            yield pool
