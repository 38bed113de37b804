"""Ingest step 2: classify staged events against the warehouse, and rebuild repls that got late events."""

from __future__ import annotations

import pyarrow as pa

from events.errors import BadEvent
from events.readers import decode_json_line
from events.validate import validate_event

from .canonical import canonical
from .stage import Staged, decode_record, quarantine_row, stage_records

# The stream of a repl is its stored events plus the events the fold refused (quarantine rows with
# a `ts`: valid records kept losslessly). Records that failed validation are not part of it.
_STREAM = """
    SELECT repl_id, seq FROM events WHERE repl_id IN (SELECT repl_id FROM staged)
    UNION ALL
    SELECT repl_id, seq FROM quarantine
    WHERE source = 'ingest' AND ts IS NOT NULL AND repl_id IN (SELECT repl_id FROM staged)"""


def rebuild_late_repls(con, report, staged: Staged, quarantine: list[tuple]) -> None:
    """A new event older than a repl's stored stream: restage the whole stream and re-derive the repl.

    Restaged rows get negative line numbers: they sort before the chunk's own (stored content wins
    a tie) and are told apart in the reconciliation, which counts only this run's records.
    """
    late = [r for (r,) in con.execute(
        f"""SELECT DISTINCT s.repl_id FROM staged s
            JOIN (SELECT repl_id, max(seq) AS head FROM ({_STREAM}) GROUP BY repl_id) h ON h.repl_id = s.repl_id
            WHERE s.seq < h.head AND s.line_no >= 0
              AND NOT EXISTS (SELECT 1 FROM ({_STREAM}) x WHERE x.repl_id = s.repl_id AND x.seq = s.seq)"""
    ).fetchall()]
    for repl_id in late:
        stream = con.execute(
            """SELECT event, NULL FROM events WHERE repl_id = ?
               UNION ALL
               SELECT raw, origin FROM quarantine WHERE source = 'ingest' AND ts IS NOT NULL AND repl_id = ?""",
            [repl_id, repl_id]).fetchall()
        # what later stages derived from the old stream is stale too: pairs and diffs are decided again
        con.execute("DELETE FROM diffs WHERE pair_id IN (SELECT pair_id FROM pairs WHERE repl_id = ?)", [repl_id])
        con.execute("DELETE FROM quarantine WHERE source = 'pairs' AND repl_id = ?", [repl_id])
        for table in ("events", "ot_ops", "path_events", "file_breaks", "checkpoints", "diagnostics", "pairs",
                      "pair_checks"):
            con.execute(f"DELETE FROM {table} WHERE repl_id = ?", [repl_id])
        con.execute("DELETE FROM quarantine WHERE source = 'ingest' AND ts IS NOT NULL AND repl_id = ?", [repl_id])
        records = [(i - len(stream), decode_record(text.encode(), origin or "warehouse"))
                   for i, (text, origin) in enumerate(stream)]
        rows, bad = stage_records(records)
        # every record of the stream passed validation when it was stored; one that fails now (a stricter
        # rule since) leaves the stream for quarantine, counted as a restaged refusal, never lost
        for error, origin, raw, h in bad:
            quarantine.append(quarantine_row(error, origin, raw, h, None, True))
        staged.add_rows(rows)
        report.repls_rebuilt += 1
    if late:
        staged.register()


def classify(con, report, quarantine: list[tuple]) -> None:
    """`cls`: staged rows with status new / dup / qdup / conflict, and effective time us_eff."""
    # cls is narrow (the staged rows are not copied); the view `cv` joins it back to them
    # us_eff, the effective time: the running max of ts over the new rows in seq order, continuing from what
    # each repl has stored. Conflicts are resolved below, but never into 'new', so it can be set here.
    con.execute(
        """CREATE OR REPLACE TEMP TABLE cls AS
           WITH repeated AS (  -- (repl_id, seq) staged more than once: only those need ranking
             SELECT repl_id, seq FROM staged GROUP BY repl_id, seq HAVING count(*) > 1),
           ranked AS (
             SELECT rix, line_no, repl_id, seq, h, us, 1 AS rn, h AS first_h
             FROM staged ANTI JOIN repeated USING (repl_id, seq)
             UNION ALL
             SELECT rix, line_no, repl_id, seq, h, us, row_number() OVER w AS rn, first_value(h) OVER w AS first_h
             FROM staged SEMI JOIN repeated USING (repl_id, seq)
             WINDOW w AS (PARTITION BY repl_id, seq ORDER BY line_no)),
           classified AS (
             SELECT r.rix, r.line_no, r.repl_id, r.seq, r.rn, r.us,
               CASE WHEN e.event_hash = r.h THEN 'dup'
                    WHEN e.event_hash IS NOT NULL THEN 'conflict'
                    WHEN q.key IS NOT NULL THEN 'qdup'
                    WHEN qs.seq IS NOT NULL THEN 'conflict'  -- the stream holds a refused event at this seq
                    WHEN r.rn > 1 AND r.h = r.first_h THEN 'dup'
                    WHEN r.rn > 1 THEN 'conflict'
                    ELSE 'new' END AS status
             FROM ranked r
             LEFT JOIN events e ON e.repl_id = r.repl_id AND e.seq = r.seq
             LEFT JOIN quarantine q ON q.source = 'ingest' AND q.repl_id = r.repl_id AND q.seq = r.seq
                  AND q.key = r.repl_id || '/' || r.seq || '/' || lpad(lower(hex(r.h)), 16, '0')
             LEFT JOIN (SELECT DISTINCT repl_id, seq FROM quarantine WHERE source = 'ingest' AND ts IS NOT NULL) qs
                  ON qs.repl_id = r.repl_id AND qs.seq = r.seq),
           heads AS (
             SELECT repl_id, max(us) AS head_us FROM (
               SELECT repl_id, epoch_us(ts) AS us FROM events WHERE repl_id IN (SELECT repl_id FROM staged)
               UNION ALL
               SELECT repl_id, epoch_us(ts) FROM quarantine
               WHERE source = 'ingest' AND ts IS NOT NULL AND repl_id IN (SELECT repl_id FROM staged))
             GROUP BY repl_id)
           SELECT c.rix, c.line_no, c.repl_id, c.seq, c.rn, c.status,
             CASE WHEN c.status = 'new' THEN greatest(
               max(CASE WHEN c.status = 'new' THEN c.us END) OVER (PARTITION BY c.repl_id ORDER BY c.seq
                                                                  ROWS UNBOUNDED PRECEDING),
               coalesce(h.head_us, c.us)) END AS us_eff
           FROM classified c LEFT JOIN heads h ON h.repl_id = c.repl_id;
           CREATE OR REPLACE TEMP VIEW cv AS
           SELECT s.*, c.rn, c.status, c.us_eff FROM staged s JOIN cls c USING (rix)"""
    )
    counts = dict(con.execute("SELECT status, count(*) FROM cls WHERE line_no >= 0 GROUP BY status").fetchall())
    if not con.execute("SELECT count(*) FROM cls WHERE status = 'conflict'").fetchall()[0][0]:
        report.duplicates += counts.get("dup", 0)
        report.already_quarantined += counts.get("qdup", 0)
        return
    # a conflict is with what is stored (an event, or a refused event of the stream) or with the chunk's first
    conflicts = con.execute(
        """SELECT c.repl_id, c.seq, c.line_no, c.raw, c.origin, c.h, c.path, e.event, qs.raw, f.raw FROM cv c
           LEFT JOIN events e ON e.repl_id = c.repl_id AND e.seq = c.seq
           LEFT JOIN (SELECT repl_id, seq, any_value(raw) AS raw FROM quarantine
                      WHERE source = 'ingest' AND ts IS NOT NULL GROUP BY repl_id, seq) qs
                ON qs.repl_id = c.repl_id AND qs.seq = c.seq
           LEFT JOIN cv f ON f.repl_id = c.repl_id AND f.seq = c.seq AND f.rn = 1 AND c.rn > 1
           WHERE c.status = 'conflict'"""
    ).fetchall()
    same, refused, other = [], [], []
    for repl_id, seq, line_no, raw, origin, h, path, stored, stream, first in conflicts:
        theirs = stored if stored is not None else stream if stream is not None else first
        mine = _canonical(raw)
        if mine is not None and mine == _canonical(theirs):
            # the same event in other bytes: a duplicate, of a refused one if that is what the stream holds
            (same if stored is not None or stream is None else refused).append((repl_id, seq, line_no))
        else:
            other.append((repl_id, seq, line_no))
            quarantine.append(quarantine_row(BadEvent("duplicate_seq", "another event with this seq and different content "
                                             "came first", repl_id=repl_id, seq=seq, path=path),
                                    origin, raw, h, None, line_no < 0))
    for status, keys in (("dup", same), ("qdup", refused), ("rejected", other)):
        if keys:
            con.register("k", pa.table({"repl_id": [k[0] for k in keys], "seq": [k[1] for k in keys],
                                        "line_no": [k[2] for k in keys]}))
            con.execute(f"""UPDATE cls SET status = '{status}' FROM k
                            WHERE cls.repl_id = k.repl_id AND cls.seq = k.seq AND cls.line_no = k.line_no""")
            con.unregister("k")
    counts = dict(con.execute("SELECT status, count(*) FROM cls WHERE line_no >= 0 GROUP BY status").fetchall())
    report.duplicates += counts.get("dup", 0)
    report.already_quarantined += counts.get("qdup", 0)


def _canonical(text: str) -> bytes | None:
    """The canonical form of a stored or staged record; None if it has none (then it is not the same event).

    Stored text was read before, by either JSON parser (NaN, integers past 64 bits: the stdlib's). ops=False:
    an op list is checked later, in the fold, like for any other event."""
    try:
        return canonical(validate_event(decode_json_line(text.encode()), trusted_text=True, ops=False))
    except (BadEvent, RecursionError):  # RecursionError: nested deeper than the stdlib writes JSON
        return None
