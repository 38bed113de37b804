"""Batched time travel over the warehouse: which lineage is at a path at an instant,
and a lineage's content at a version (nearest checkpoint + at most K packets).

Every method takes many keys at once and runs a fixed number of SQL queries,
so `file_at` over 1000 rows costs a few queries, not 1000.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyarrow as pa

from events.errors import OtlakeError
from ot_replay import lineage

_US = "epoch_us(ts)"


class UnknownRepl(OtlakeError, LookupError):
    """A repl id the warehouse has no events of."""

    def __init__(self, repl_ids: list[str], hint: str) -> None:
        self.repl_ids = repl_ids
        names = ", ".join(repr(r) for r in repl_ids)
        super().__init__(f"no repl {names} in the warehouse{hint}")


def require_repls(cur, repl_ids: list[str]) -> None:
    """Raise UnknownRepl naming every id of repl_ids that has no stored event (one query when all are known)."""
    missing = [r for (r,) in cur.execute(
        """SELECT w.repl_id FROM unnest(CAST(? AS VARCHAR[])) w (repl_id) ANTI JOIN repls USING (repl_id)
           ORDER BY 1""", [list(dict.fromkeys(repl_ids))]).fetchall()]
    if missing:
        raise UnknownRepl(missing, _unknown_repl_hint(cur, missing))


def _unknown_repl_hint(cur, missing: list[str]) -> str:
    """What to do: the nearest known ids, whether its records are in quarantine, how to list repls."""
    parts = []
    if len(missing) == 1:
        near = [r for (r,) in cur.execute(
            """SELECT repl_id FROM repls WHERE jaro_winkler_similarity(repl_id, ?) >= 0.85
               ORDER BY jaro_winkler_similarity(repl_id, ?) DESC, repl_id LIMIT 3""", [missing[0]] * 2).fetchall()]
        if near:
            parts.append(f"did you mean {', '.join(near)}?")
    quarantined = cur.execute("SELECT count(*) FROM quarantine WHERE list_contains(?, repl_id)",
                              [missing]).fetchall()[0][0]
    if quarantined:
        ids = ", ".join("'" + r.replace("'", "''") + "'" for r in missing)
        records = "1 record was" if quarantined == 1 else f"{quarantined} records were"
        parts.append(f"{records} quarantined and none stored, see otlake sql "
                     f'"SELECT error_kind, message FROM quarantine WHERE repl_id IN ({ids})"')
    parts.append('list the repls with otlake sql "SELECT repl_id, title FROM repls ORDER BY 1"')
    return ": " + "; ".join(parts)


class TimeTravel:
    """Reads through one DuckDB cursor (its own, so it can run inside a UDF)."""

    def __init__(self, cursor) -> None:
        self.cur = cursor

    def _query(self, sql: str, **tables: pa.Table) -> pa.Table:
        for name, table in tables.items():
            self.cur.register(name, table)
        try:
            return self.cur.sql(sql).to_arrow_table()
        finally:
            for name in tables:
                self.cur.unregister(name)

    def lineages_at(self, repl_ids: list[str], paths: list[str], instants: list[int]) -> list[tuple[int, int] | None]:
        """(file_id, version) at each (repl, path, instant in µs); None where no file, or its content is unknown."""
        n = len(repl_ids)
        keys = pa.table({"repl_id": pa.array(repl_ids, pa.string()), "path": pa.array(paths, pa.string())})
        found = self._query(
            f"""SELECT pe.repl_id, pe.path, {_US.replace('ts', 'pe.ts')} AS us, pe.file_id
                FROM path_events pe SEMI JOIN (SELECT DISTINCT repl_id, path FROM k) k
                  ON pe.repl_id = k.repl_id AND pe.path = k.path
                ORDER BY pe.repl_id, pe.path, pe.seq""",
            k=keys,
        ).to_pydict()
        by_path: dict[tuple[str, str], tuple[np.ndarray, list]] = {}
        spans = defaultdict(list)
        for i, key in enumerate(zip(found["repl_id"], found["path"])):
            spans[key].append(i)
        us_all = np.asarray(found["us"], dtype=np.int64)
        for key, idx in spans.items():
            by_path[key] = (us_all[idx[0] : idx[-1] + 1], found["file_id"][idx[0] : idx[-1] + 1])
        out: list[tuple[int, int] | None] = [None] * n
        wanted: dict[tuple[str, int], list[int]] = defaultdict(list)
        for i in range(n):
            hit = by_path.get((repl_ids[i], paths[i]))
            if hit is None:
                continue
            j = int(np.searchsorted(hit[0], instants[i], side="right")) - 1
            if j >= 0 and hit[1][j] is not None:
                wanted[(repl_ids[i], hit[1][j])].append(i)
        if not wanted:
            return out
        lineages = pa.table({
            "repl_id": pa.array([k[0] for k in wanted], pa.string()),
            "file_id": pa.array([k[1] for k in wanted], pa.int64()),
        })
        ops = self._query(
            f"""SELECT o.repl_id, o.file_id, {_US.replace('ts', 'o.ts')} AS us FROM ot_ops o
                SEMI JOIN l ON o.repl_id = l.repl_id AND o.file_id = l.file_id
                ORDER BY o.repl_id, o.file_id, o.version""",
            l=lineages,
        )
        breaks = self._query(
            f"""SELECT b.repl_id, b.file_id, {_US.replace('ts', 'b.ts')} AS us FROM file_breaks b
                SEMI JOIN l ON b.repl_id = l.repl_id AND b.file_id = l.file_id""",
            l=lineages,
        ).to_pydict()
        broken_at = {(r, f): u for r, f, u in zip(breaks["repl_id"], breaks["file_id"], breaks["us"])}
        op_times = _group_times(ops)
        for key, rows in wanted.items():
            times = op_times.get(key, np.empty(0, np.int64))
            broken = broken_at.get(key)
            for i in rows:
                if broken is not None and instants[i] >= broken:
                    continue
                out[i] = (key[1], int(np.searchsorted(times, instants[i], side="right")))
        return out

    def contents(self, keys: list[tuple[str, int, int]]) -> list[str]:
        """Content of each (repl, file_id, version); version 0 is the empty file."""
        out = [""] * len(keys)
        need = [(i, k) for i, k in enumerate(keys) if k[2] > 0]
        if not need:
            return out
        lineage_ids = sorted({(r, f) for _, (r, f, _) in need})
        lineages = pa.table({
            "repl_id": pa.array([k[0] for k in lineage_ids], pa.string()),
            "file_id": pa.array([k[1] for k in lineage_ids], pa.int64()),
        })
        cps = self._query(
            """SELECT c.repl_id, c.file_id, c.version FROM checkpoints c
               SEMI JOIN l ON c.repl_id = l.repl_id AND c.file_id = l.file_id
               ORDER BY c.repl_id, c.file_id, c.version""",
            l=lineages,
        ).to_pydict()
        cp_versions: dict[tuple[str, int], list[int]] = defaultdict(list)
        for r, f, v in zip(cps["repl_id"], cps["file_id"], cps["version"]):
            cp_versions[(r, f)].append(v)
        bases = []
        for i, (r, f, v) in need:
            vs = cp_versions.get((r, f), [])
            j = int(np.searchsorted(np.asarray(vs, dtype=np.int64), v, side="right")) - 1 if vs else -1
            bases.append(vs[j] if j >= 0 else 0)
        # one range of ops per lineage covers every query on it
        lo: dict[tuple[str, int], int] = {}
        hi: dict[tuple[str, int], int] = {}
        for (i, (r, f, v)), base in zip(need, bases):
            lo[(r, f)] = min(lo.get((r, f), base), base)
            hi[(r, f)] = max(hi.get((r, f), v), v)
        ranges = pa.table({
            "repl_id": pa.array([k[0] for k in lo], pa.string()),
            "file_id": pa.array([k[1] for k in lo], pa.int64()),
            "lo": pa.array(list(lo.values()), pa.int64()),
            "hi": pa.array([hi[k] for k in lo], pa.int64()),
        })
        ops = self._query(
            """SELECT o.repl_id, o.file_id, o.version, o.ops FROM ot_ops o
               JOIN r ON o.repl_id = r.repl_id AND o.file_id = r.file_id
                     AND o.version > r.lo AND o.version <= r.hi
               ORDER BY o.repl_id, o.file_id, o.version""",
            r=ranges,
        )
        op_lists: dict[tuple[str, int], tuple[int, pa.Array]] = {}  # lineage: (first version, its packets)
        rids, fids = ops.column("repl_id").to_pylist(), ops.column("file_id").to_pylist()
        first_versions, packets = ops.column("version"), ops.column("ops").combine_chunks()
        start = 0
        for j in range(1, len(rids) + 1):
            if j == len(rids) or rids[j] != rids[start] or fids[j] != fids[start]:
                op_lists[(rids[start], fids[start])] = (first_versions[start].as_py(), packets.slice(start, j - start))
                start = j
        base_keys = sorted({(r, f, b) for (_, (r, f, _)), b in zip(need, bases) if b > 0})
        base_text = self._checkpoint_texts(base_keys)
        runs: dict[tuple[str, int, int], list[tuple[int, int]]] = defaultdict(list)  # (lineage, base): (i, v)
        for (i, (r, f, v)), base in zip(need, bases):
            runs[(r, f, base)].append((i, v))
        for (r, f, base), asked in runs.items():  # one pass per lineage and base, to all its versions
            first, lineage_ops = op_lists.get((r, f), (base + 1, pa.array([], pa.string())))
            last = max(v for _, v in asked)
            got = lineage.texts(base_text.get((r, f, base), ""), lineage_ops.slice(base + 1 - first, last - base),
                                [v - base for _, v in asked])
            for (i, _), text in zip(asked, got, strict=True):
                out[i] = text
        return out

    def _checkpoint_texts(self, keys: list[tuple[str, int, int]]) -> dict[tuple[str, int, int], str]:
        if not keys:
            return {}
        table = pa.table({
            "repl_id": pa.array([k[0] for k in keys], pa.string()),
            "file_id": pa.array([k[1] for k in keys], pa.int64()),
            "version": pa.array([k[2] for k in keys], pa.int64()),
        })
        got = self._query(
            """SELECT c.repl_id, c.file_id, c.version, c.content FROM checkpoints c
               SEMI JOIN k ON c.repl_id = k.repl_id AND c.file_id = k.file_id AND c.version = k.version""",
            k=table,
        ).to_pydict()
        return {(r, f, v): c for r, f, v, c in zip(got["repl_id"], got["file_id"], got["version"], got["content"])}

    def file_at(self, repl_ids: list[str], paths: list[str], instants: list[int]) -> list[str | None]:
        """Content of each (repl, path) after every event at or before the instant (µs); None if no file.

        None also for a repl the warehouse does not know (as the SQL function's NULL): files_at,
        paths_at and require_repls tell an unknown repl apart.
        """
        found = self.lineages_at(repl_ids, paths, instants)
        keys = [(repl_ids[i], hit[0], hit[1]) for i, hit in enumerate(found) if hit is not None]
        texts = iter(self.contents(keys))
        return [next(texts) if hit is not None else None for hit in found]

    def live_paths(self, repl_ids: list[str], instant: int | None = None) -> list[tuple[str, str, int]]:
        """(repl_id, path, file_id) of every path that holds a file at the instant (µs; None: after every stored
        event), by repl and path: a path's last binding at or before it, unless that unbound it."""
        at = "" if instant is None else "AND epoch_us(ts) <= ?"
        return self.cur.execute(
            f"""SELECT repl_id, path, file_id FROM path_events WHERE repl_id IN (SELECT unnest(?::VARCHAR[])) {at}
                QUALIFY row_number() OVER (PARTITION BY repl_id, path ORDER BY seq DESC) = 1 AND file_id IS NOT NULL
                ORDER BY repl_id, path""",
            [list(repl_ids)] + ([] if instant is None else [instant])).fetchall()

    def paths_at(self, repl_id: str, instant: int) -> list[str]:
        """Paths that hold a file in the repl at the instant (µs), sorted; UnknownRepl if there is no such repl."""
        rows = self.live_paths([repl_id], instant)
        if not rows:  # no file then, or no such repl: only the second is an error
            require_repls(self.cur, [repl_id])
        return [path for _, path, _ in rows]

    def files_at(self, repl_id: str, instant: int) -> dict[str, str | None]:
        """{path: content} of the repl at the instant (µs); content None where unknown; UnknownRepl if no such repl."""
        paths = self.paths_at(repl_id, instant)
        texts = self.file_at([repl_id] * len(paths), paths, [instant] * len(paths))
        return dict(zip(paths, texts))


def _group_times(table: pa.Table) -> dict[tuple[str, int], np.ndarray]:
    d = table.to_pydict()
    us = np.asarray(d["us"], dtype=np.int64)
    out = {}
    start = 0
    rids, fids = d["repl_id"], d["file_id"]
    for j in range(1, len(rids) + 1):
        if j == len(rids) or rids[j] != rids[start] or fids[j] != fids[start]:
            out[(rids[start], fids[start])] = us[start:j]
            start = j
    return out
