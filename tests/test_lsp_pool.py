"""The warm pool against real pyright language servers and a real ruff."""

from __future__ import annotations

import pytest

from lsp_runner import Diagnostic, LspConfig, LspError, LspPool, Snapshot, matches

from .lsp_fixtures import REPL, assert_gone, expected_main, keys


@pytest.fixture(scope="module")
def pool():
    with LspPool(size=1, timeout_s=30) as p:
        root = p.root
        yield p
    assert root is not None and not root.exists() and p.server_pids() == []


def test_merged_diagnostics_of_a_repl(pool):
    (result,) = pool.check([Snapshot("r1", REPL)])
    assert result.ok and result.reason is None and result.attempts == 1
    assert sorted(result.diagnostics) == ["helpers.py", "main.py", "pkg/__init__.py", "pkg/util.py"]
    assert keys(result.diagnostics["main.py"]) == expected_main()
    by_code = {d.code: d for d in result.diagnostics["main.py"]}
    turtle = by_code["pyright[reportAttributeAccessIssue]"]
    assert (turtle.end_line, turtle.end_character, turtle.severity) == (4, 22, 1)
    assert turtle.message == '"screen" is not a known attribute of module "turtle"'
    assert by_code["ruff[F401]"].has_code_action and by_code["ruff[E703]"].has_code_action
    assert not by_code["ruff[F821]"].has_code_action and by_code["ruff[F821]"].severity == 2
    # pyright's own unused-import hint ("os" is not accessed) is dropped: ruff's F401 says it
    assert not [d for d in result.all_diagnostics() if d.source == "pyright" and "not accessed" in d.message]


def test_imports_between_files_resolve_inside_each_snapshot(pool):
    # the same module name in two snapshots of one batch: each sees only its own
    one = {"main.py": "from helpers import greet\n\ngreet()\n", "helpers.py": "def greet(name): ...\n"}
    two = {"main.py": "from helpers import greet\n\ngreet()\n", "helpers.py": "def greet(): ...\n"}
    alone = {"main.py": "from helpers import greet\n"}
    r1, r2, r3 = pool.check([Snapshot("one", one), Snapshot("two", two), Snapshot("alone", alone)])
    assert keys(r1.diagnostics["main.py"]) == {("main.py", "pyright[reportCallIssue]", 2, 0)}
    assert r2.diagnostics["main.py"] == []
    assert ("main.py", "pyright[reportMissingImports]", 0, 5) in keys(r3.diagnostics["main.py"])
    # the util module in a subfolder imports from the repl's root
    (r4,) = pool.check([Snapshot("r1", REPL)])
    assert keys(r4.diagnostics["pkg/util.py"]) == {("pkg/util.py", "pyright[reportCallIssue]", 2, 0)}


def test_only_the_requested_paths_are_checked(pool):
    (result,) = pool.check([Snapshot("r1", REPL, paths=("pkg/util.py",))])
    assert list(result.diagnostics) == ["pkg/util.py"]
    assert result.diagnostics["pkg/util.py"][0].message == 'Argument missing for parameter "name"'


def test_a_logged_diagnostic_matches_its_reproduction(pool):
    logged = {"path": "main.py", "range": {"start": {"line": 4, "character": 9}, "end": {"line": 4, "character": 22}},
              "severity": 1, "code": "pyright[reportAttributeAccessIssue]",
              "message": "'screen' is not a known attribute of module 'turtle'", "has_code_action": False}
    (result,) = pool.check([Snapshot("r1", REPL)])
    assert [d.code for d in result.diagnostics["main.py"] if matches(logged, d)] == [logged["code"]]


def test_results_keep_the_order_and_ids_of_the_input(pool):
    snaps = [Snapshot(f"id-{i}", {"m.py": f"x: int = {'1' if i % 2 else repr('a')}\n"}) for i in range(6)]
    seen = []
    results = pool.check(snaps, progress=lambda r: seen.append(r.snapshot_id))
    assert [r.snapshot_id for r in results] == [s.id for s in snaps] and sorted(seen) == sorted(s.id for s in snaps)
    assert [len(r.diagnostics["m.py"]) for r in results] == [1, 0, 1, 0, 1, 0]
    assert pool.stats.failed == 0 and pool.stats.snapshots >= 6


def test_a_closed_pool_refuses_work():
    with LspPool() as p:
        pass
    with pytest.raises(LspError, match="outside"):
        p.check([Snapshot("late", {"m.py": ""})])


def test_empty_snapshot_and_no_python_files(pool):
    r1, r2 = pool.check([Snapshot("empty", {}), Snapshot("docs", {"README.md": "# hi\n"})])
    assert (r1.ok, r1.diagnostics, r2.ok, r2.diagnostics) == (True, {}, True, {})
    assert pool.check([]) == []


def test_config_reaches_both_tools():
    config = LspConfig(ruff_select=("F",), rule_overrides={"reportAttributeAccessIssue": "none"})
    with LspPool(config=config) as p:
        (result,) = p.check([Snapshot("r1", REPL)])
        pids = p.server_pids()
    codes = {d.code for d in result.diagnostics["main.py"]}
    assert codes == {"ruff[F401]", "ruff[F821]", "pyright[reportCallIssue]", "pyright[reportUndefinedVariable]"}
    assert_gone(pids)


def test_servers_are_recycled_after_n_snapshots_and_on_memory():
    snaps = [Snapshot(str(i), {"m.py": "x: int = 'a'\n"}) for i in range(3)]
    with LspPool(recycle_after=2) as p:
        first = p.check(snaps[:2])
        pids_after_two = p.server_pids()
        last = p.check(snaps[2:])
        stats = p.stats
    assert pids_after_two == []  # retired after its 2nd snapshot; the next check started a fresh one
    assert (stats.recycles, stats.servers_started, stats.restarts) == (1, 2, 0)
    assert all(len(r.diagnostics["m.py"]) == 1 for r in first + last)
    with LspPool(max_rss_mb=1) as p:  # every server is over 1 MiB: replaced after its snapshot
        (result,) = p.check(snaps[:1])
        assert (p.stats.recycles, p.server_pids()) == (1, []) and p.stats.peak_rss_mb > 50
    assert result.diagnostics["m.py"][0].code == "pyright[reportAssignmentType]"


def test_two_servers_share_the_work():
    snaps = [Snapshot(str(i), {"m.py": f"v{i}: str = {i}\n"}) for i in range(6)]
    with LspPool(size=2) as p:
        results = p.check(snaps)
        pids = p.server_pids()
        root = p.root
    assert len(pids) == 2 and root is not None and not root.exists()
    assert [r.diagnostics["m.py"][0].start_character for r in results] == [10] * 6
    assert all(isinstance(d, Diagnostic) for r in results for d in r.all_diagnostics())
    assert_gone(pids)
