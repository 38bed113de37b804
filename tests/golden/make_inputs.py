"""Writes the golden test's input logs (run once; the logs are committed, so the test does not depend on the simulator).

`python -m tests.golden.make_inputs`: the demo's simulator (6 repls, seed 1, what users saw from the meta-LSP)
and DebugBench repls with several bugs (4 repls, seed 5), each a gzipped JSONL file beside this one.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson

from events.simulator import simulate
from events.simulator.debugbench import debugbench_sessions
from lsp_runner.linter import MetaLspLinter
from otlake.dataset_cli import DEBUGBENCH

HERE = Path(__file__).resolve().parent


def write(events: list[dict], name: str) -> None:
    with gzip.GzipFile(HERE / name, "wb", mtime=0) as f:
        for event in events:
            f.write(orjson.dumps(event) + b"\n")


def broken(events: list[dict]) -> list[bytes]:
    """The first repl of `events` under a new id, broken the ways real logs break: a line that is not JSON,
    a CRC that does not match, a version gap, a path that escapes the repl, an unknown kind, a missing seq."""
    first = events[0]["repl_id"]
    mine = [dict(e, repl_id="repl-golden-broken") for e in events if e["repl_id"] == first]
    ots = [n for n, e in enumerate(mine) if e["kind"] == "ot"]
    mine[ots[3]] = dict(mine[ots[3]], crc32=(mine[ots[3]].get("crc32") or 0) ^ 1)
    mine[ots[8]] = dict(mine[ots[8]], version=mine[ots[8]]["version"] + 5)
    mine[ots[12]] = dict(mine[ots[12]], path="../../etc/passwd")
    mine[ots[15]] = dict(mine[ots[15]], kind="telepathy")
    del mine[ots[18]]["seq"]
    lines = [orjson.dumps(e) for e in mine]
    lines.insert(ots[5], b'{"repl_id": "repl-golden-broken", "seq": 99999, "kind": "ot", "ops": [{"ins')
    return lines


def main() -> None:
    linter = MetaLspLinter()
    write(simulate(6, 1, linter=linter), "demo-sessions.jsonl.gz")
    multi = debugbench_sessions(DEBUGBENCH, 4, 5, linter=MetaLspLinter())
    write(multi, "debugbench-sessions.jsonl.gz")
    with gzip.GzipFile(HERE / "bad-sessions.jsonl.gz", "wb", mtime=0) as f:
        f.write(b"\n".join(broken(multi)) + b"\n")


if __name__ == "__main__":
    main()
