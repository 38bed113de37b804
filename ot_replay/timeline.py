"""One repl's timeline: its files at many instants, and a lineage at many versions, in one pass.

"The files of repl R at instant T" has one implementation, this one (DESIGN.md): a `Timeline` is built
from the repl's derived rows as Arrow (path_events, ot_ops, file_breaks: what ingest's fold wrote, a
stage's partition) and folds them forward once for any number of instants; each lineage's text is
replayed by ot_replay.lineage (compiled, with the Python reference behind it). Stages (pairs, synth, verify,
eval) and the SQL time travel's callers in Python read those rows through a Store and build one here;
the raw event log is replayed by `ot_replay.replay.EventReplay` (verify checks the two agree).
"""

from __future__ import annotations

import bisect
import functools
from collections import defaultdict

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from . import lineage

TABLES = ("path_events", "ot_ops", "file_breaks")  # the rows a Timeline is built from


def timestamps_us(column) -> list[int]:
    """Microseconds since the epoch of a timestamp column."""
    return pc.cast(column, pa.timestamp("us", "UTC")).cast(pa.int64()).to_pylist()


class Timeline:
    """The repl's path bindings, op stream and breaks, read once."""

    @classmethod
    def from_tables(cls, repl_id: str, path_events: pa.Table, ot_ops: pa.Table, file_breaks: pa.Table) -> Timeline:
        """The timeline from one repl's rows of path_events, ot_ops and file_breaks as Arrow (any order)."""
        def rows(table: pa.Table, columns: list[str]) -> list[tuple]:
            data = [(timestamps_us(table.column(c)) if c == "ts" else table.column(c).to_pylist()) for c in columns]
            return list(zip(*data, strict=True))

        paths = sorted(rows(path_events, ["seq", "ts", "path", "file_id"]), key=lambda r: (r[0], r[2]))
        ops = sorted(rows(ot_ops, ["seq", "ts", "file_id", "version", "ops"]), key=lambda r: r[0])
        return cls(repl_id, paths, ops, rows(file_breaks, ["file_id", "seq", "ts"]))

    @classmethod
    def from_partition(cls, repl_id: str, tables) -> Timeline:
        """The timeline from a stage's partition that reads TABLES."""
        return cls.from_tables(repl_id, *(tables[t] for t in TABLES))

    def __init__(self, repl_id: str, paths: list[tuple], ops: list[tuple], breaks: list[tuple]) -> None:
        """paths (seq, µs, path, file_id) by (seq, path); ops (seq, µs, file_id, version, ops) by seq; breaks
        (file_id, seq, µs)."""
        self.repl_id = repl_id
        self.paths = paths
        self.ops = ops
        self.breaks = {f: (s, us) for f, s, us in breaks}
        self._by_file: dict[int, list[tuple[int, int, int, str]]] = defaultdict(list)  # version, seq, us, ops
        for seq, us, file_id, version, packet in self.ops:
            self._by_file[file_id].append((version, seq, us, packet))

    @functools.cached_property
    def _steps(self) -> list[tuple]:
        # path events, packets and breaks merged by seq; effective times never decrease along seq
        steps = [(seq, 0, us, ("path", path, file_id)) for seq, us, path, file_id in self.paths]
        steps += [(seq, 1, us, ("ot", file_id, ops)) for seq, us, file_id, _, ops in self.ops]
        steps += [(seq, 2, us, ("break", file_id)) for file_id, (seq, us) in self.breaks.items()]
        steps.sort(key=lambda s: (s[0], s[1]))
        return steps

    @functools.cached_property
    def _step_seqs(self) -> list[int]:
        return [s[0] for s in self._steps]

    def steps_before(self, seq: int) -> int:
        """How many state-changing steps come before event `seq`: the state a diagnostic logged there saw."""
        return bisect.bisect_left(self._step_seqs, seq)

    def states_at(self, instants: list[int]) -> dict[int, dict[str, str | None]]:
        """{instant: {path: content}} after every event at or before each instant; None where unknown."""
        times = [s[2] for s in self._steps]
        counts = {t: bisect.bisect_right(times, t) for t in set(instants)}
        states = self.states_after(list(counts.values()))
        return {t: states[k] for t, k in counts.items()}

    def states_after(self, counts: list[int]) -> dict[int, dict[str, str | None]]:
        """{k: {path: content}} after the first k steps, for each k; None where unknown.

        One walk over the steps finds, for each k, every bound path's lineage and how many of its packets
        came before; then each lineage is replayed once to all the counts asked of it (ot_replay.lineage).
        """
        bound: dict[str, int] = {}
        applied: dict[int, int] = defaultdict(int)
        broken: set[int] = set()
        marks: dict[int, dict[str, tuple[int, int] | None]] = {}
        pending = sorted(set(counts))

        def mark() -> dict[str, tuple[int, int] | None]:  # each bound path: (lineage, packets applied)
            return {p: None if f in broken else (f, applied[f]) for p, f in sorted(bound.items())}

        k = 0
        for done, (_, _, _, step) in enumerate(self._steps):
            while k < len(pending) and pending[k] <= done:
                marks[pending[k]] = mark()
                k += 1
            if k == len(pending):
                break
            if step[0] == "path":
                _, path, file_id = step
                if file_id is None:
                    bound.pop(path, None)
                else:
                    bound[path] = file_id
            elif step[0] == "ot":
                applied[step[1]] += 1
            else:
                broken.add(step[1])
        for n in pending[k:]:
            marks[n] = mark()
        need: dict[int, set[int]] = defaultdict(set)
        for mark in marks.values():
            for at in mark.values():
                if at is not None:
                    need[at[0]].add(at[1])
        text: dict[tuple[int, int], str] = {}
        for file_id, ns in need.items():
            wanted = sorted(ns)
            packets = [p[3] for p in self._by_file.get(file_id, [])[: wanted[-1]]]
            text.update(zip(((file_id, n) for n in wanted), lineage.texts("", packets, wanted), strict=True))
        return {k: {p: None if at is None else text[at] for p, at in mark.items()} for k, mark in marks.items()}

    def lineage_before(self, path: str, seq: int) -> tuple[int, int] | None:
        """(file_id, version) of the file at path just before event `seq`; None if none, or its content is unknown."""
        file_id = None
        for at, _, p, f in self.paths:
            if at >= seq:
                break
            if p == path:
                file_id = f
        if file_id is None or (file_id in self.breaks and self.breaks[file_id][0] < seq):
            return None
        ops = self._by_file.get(file_id, [])
        n = bisect.bisect_left(ops, seq, key=lambda op: op[1])  # packets of a lineage are in seq order
        return file_id, ops[n - 1][0] if n else 0

    def versions(self, file_id: int) -> list[tuple[int, int]]:
        """(version, effective µs) of every packet of the lineage, in order (none past a break)."""
        return [(v, us) for v, _, us, _ in self._by_file.get(file_id, [])]

    def packet_ops(self, file_id: int, version: int) -> list:
        """The compact op list of one packet of the lineage (empty if there is none)."""
        packets = self._by_file.get(file_id, [])
        n = bisect.bisect_left(packets, version, key=lambda p: p[0])  # versions increase along a lineage
        return orjson.loads(packets[n][3]) if n < len(packets) and packets[n][0] == version else []

    def contents(self, file_id: int, versions: list[int]) -> dict[int, str]:
        """The lineage's text at each version, in one pass over its packets."""
        packets = self._by_file.get(file_id, [])
        at = {v: bisect.bisect_right(packets, v, key=lambda p: p[0]) for v in set(versions)}  # packets applied
        wanted = sorted(set(at.values()))
        texts = dict(zip(wanted, lineage.texts("", [p[3] for p in packets[: wanted[-1] if wanted else 0]], wanted),
                         strict=True))
        return {v: texts[n] for v, n in at.items()}
