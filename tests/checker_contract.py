"""The Checker contract (lsp_runner/checker.py) as one test case: every checker subclasses it unchanged.

A subclass gives a module-scoped `checker` fixture. The snapshots are small real repls: a pyright error,
a ruff error, a clean file, several files of which one is asked for, a file past the size limit, bytes that
are not UTF-8, a path that escapes the tree.
"""

from __future__ import annotations

from lsp_runner import Snapshot

ATTRIBUTE = "import turtle\n\nscreen = turtle.screen\nscreen.setup(550, 400)\n"
STATEMENT = "x = 1;\nprint(x)\n"
CLEAN = "def add(a: int, b: int) -> int:\n    return a + b\n"


def codes(result, path="main.py") -> list[tuple[str, int]]:
    return [(d.code, d.start_line) for d in result.diagnostics.get(path, [])]


class CheckerContract:
    def test_one_result_per_snapshot_in_order_with_the_rules_users_saw(self, checker):
        results = checker.check([Snapshot("a", {"main.py": ATTRIBUTE}), Snapshot("b", {"main.py": STATEMENT}),
                                 Snapshot("c", {"main.py": CLEAN})])
        assert [r.snapshot_id for r in results] == ["a", "b", "c"]
        assert all(r.ok for r in results), [r.reason for r in results]
        assert ("pyright[reportAttributeAccessIssue]", 2) in codes(results[0])
        assert codes(results[1]) == [("ruff[E703]", 0)]
        assert codes(results[2]) == []

    def test_only_the_paths_asked_for_are_checked(self, checker):
        (result,) = checker.check([Snapshot("s", {"main.py": CLEAN, "lib/other.py": STATEMENT}, ("main.py",))])
        assert result.ok and set(result.diagnostics) <= {"main.py"} and codes(result) == []
        (whole,) = checker.check([Snapshot("w", {"main.py": CLEAN, "lib/other.py": STATEMENT})])
        assert codes(whole, "lib/other.py") == [("ruff[E703]", 0)]

    def test_files_that_cannot_be_checked_are_skipped_with_the_reason(self, checker):
        big = "x = 1\n" * 200_000
        (result,) = checker.check([Snapshot("big", {"main.py": big, "bad.py": b"\xff\xfe = 1\n"})])
        assert result.skipped["main.py"].startswith("too_large")
        assert result.skipped["bad.py"].startswith("not_utf8")
        assert codes(result) == []

    def test_a_bad_snapshot_fails_alone_and_the_batch_goes_on(self, checker):
        results = checker.check([Snapshot("escape", {"../outside.py": CLEAN}), Snapshot("fine", {"main.py": STATEMENT})])
        assert [r.snapshot_id for r in results] == ["escape", "fine"]
        assert not results[0].diagnostics and (not results[0].ok or results[0].skipped)
        assert results[1].ok and codes(results[1]) == [("ruff[E703]", 0)]

    def test_an_empty_batch_is_an_empty_list(self, checker):
        assert checker.check([]) == []
