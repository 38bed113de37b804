"""Snapshot trees: file names refused, files skipped with a reason, temporary folders always removed."""

from __future__ import annotations

import pytest

from lsp_runner import BadSnapshotPath, LspConfig, Snapshot, materialized, safe_relpath
from lsp_runner.snapshot import write_tree


@pytest.mark.parametrize("name", ["../x.py", "a/../../x.py", "/etc/x.py", "a\x00b.py", "", "a\\b.py", ".."])
def test_names_that_could_leave_the_tree_are_refused(name):
    with pytest.raises(BadSnapshotPath, match="file name"):
        safe_relpath(name)


def test_names_are_normalized():
    assert safe_relpath("./pkg/./m.py") == "pkg/m.py"
    assert safe_relpath("a..b/c.py") == "a..b/c.py"


def test_write_tree_skips_bad_files_with_a_reason_and_writes_the_rest(tmp_path):
    config = LspConfig(max_file_bytes=100)
    snap = Snapshot("s", {
        "main.py": "x = 1\n",
        "../escape.py": "x",
        "big.py": "#" * 101,
        "latin1.py": "café = 1\n".encode("latin-1"),
        "logo.png": b"\x89PNG\r\n\x1a\n\x00",
        "notes.txt": "hello",
    })
    tree = write_tree(snap, tmp_path / "t", config)
    assert tree.texts == {"main.py": "x = 1\n"}
    assert sorted((p, r.split(":")[0]) for p, r in tree.skipped.items()) == [
        ("../escape.py", "bad_path"), ("big.py", "too_large"), ("latin1.py", "not_utf8")]
    # skipped Python files and other files are still on disk, so imports of them resolve
    assert (tmp_path / "t" / "big.py").exists() and (tmp_path / "t" / "logo.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "escape.py").exists()


def test_paths_limit_what_is_checked(tmp_path):
    snap = Snapshot("s", {"a.py": "1\n", "b.py": "2\n"}, paths=("b.py", "gone.py"))
    tree = write_tree(snap, tmp_path / "t", LspConfig())
    assert list(tree.texts) == ["b.py"]
    assert tree.skipped["gone.py"].startswith("not_in_snapshot")
    assert (tmp_path / "t" / "a.py").exists()


def test_a_file_and_a_folder_of_the_same_name_and_content_of_another_type(tmp_path):
    snap = Snapshot("s", {"a": "x", "a/b.py": "y = 1\n", "n.py": 5, "ok.py": bytearray(b"z = 1\n")})
    tree = write_tree(snap, tmp_path / "t", LspConfig())
    assert tree.skipped["a/b.py"].startswith("bad_path") and "cannot be written" in tree.skipped["a/b.py"]
    assert tree.skipped["n.py"] == "bad_content: int, not str or bytes"
    assert tree.texts == {"ok.py": "z = 1\n"} and tree.error is None


def test_materialized_trees_are_removed_even_after_an_error():
    with materialized(Snapshot("s", {"main.py": "x = 1\n"}), LspConfig()) as tree:
        kept = tree.root
        assert (kept / "main.py").read_text() == "x = 1\n"
    assert not kept.parent.exists()
    with pytest.raises(RuntimeError), materialized(Snapshot("s", {"m.py": ""}), LspConfig()) as tree:
        failed = tree.root
        raise RuntimeError("boom")
    assert not failed.parent.exists()


def test_a_killed_runs_temporary_root_is_removed_by_the_next_one(tmp_path, monkeypatch):
    """A SIGKILLed run cannot clean up; the next temporary root removes folders whose owner is gone."""
    import os
    import subprocess
    import sys

    from lsp_runner.snapshot import OWNER, temporary_root

    monkeypatch.setenv("OTLAKE_LSP_TMPDIR", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid now names no process (pids are not reused this fast)
    stale = tmp_path / "otlake-lsp-pool-stale"
    stale.mkdir()
    (stale / OWNER).write_text(str(dead.pid))
    alive = tmp_path / "otlake-lsp-pool-alive"
    alive.mkdir()
    (alive / OWNER).write_text(str(os.getpid()))
    foreign = tmp_path / "otlake-lsp-not-ours"
    foreign.mkdir()  # no owner file: left alone
    with temporary_root() as root:
        assert root.parent == tmp_path.resolve() and (root / OWNER).read_text() == str(os.getpid())
        assert sorted(p.name for p in tmp_path.iterdir() if p != root) == ["otlake-lsp-not-ours",
                                                                          "otlake-lsp-pool-alive"]
    assert not root.exists()
