"""The warehouse's DuckDB schema. Keys follow DESIGN.md; see README for each table."""

from __future__ import annotations

SCHEMA_VERSION = 1

# Keys of the tables ingest derives from events. Ingest keeps them unique (classify looks every record's
# (repl_id, seq) up before anything is written, and the fold numbers versions per lineage); `otlake verify`
# checks them. They are not PRIMARY KEY constraints: DuckDB's indexes for them cost about 12% of ingest
# time (BENCHMARKS.md) and no query here uses them. The other tables keep theirs (ON CONFLICT needs them).
KEYS = {
    "events": ("repl_id", "seq"),
    "ot_ops": ("repl_id", "file_id", "version"),
    "path_events": ("repl_id", "seq", "path"),
    "file_breaks": ("repl_id", "file_id"),
    "checkpoints": ("repl_id", "file_id", "version"),
    "diagnostics": ("repl_id", "seq"),
}

TABLES = {
    "meta": """
        CREATE TABLE IF NOT EXISTS meta (
            key VARCHAR PRIMARY KEY,
            value VARCHAR
        )""",
    "repls": """
        CREATE TABLE IF NOT EXISTS repls (
            repl_id VARCHAR PRIMARY KEY,
            language VARCHAR,
            is_private BOOLEAN,
            owner VARCHAR,
            title VARCHAR,
            seq BIGINT,            -- seq of the repl event these fields came from
            ts TIMESTAMPTZ
        )""",
    "events": """
        CREATE TABLE IF NOT EXISTS events (  -- key: KEYS['events']
            repl_id VARCHAR NOT NULL,
            seq BIGINT NOT NULL,
            ts TIMESTAMPTZ NOT NULL,
            kind VARCHAR NOT NULL,
            session_id VARCHAR,
            user_id BIGINT,
            path VARCHAR,
            -- the event as received (its JSON line); JSON functions apply. zstd: 8x smaller than
            -- DuckDB's default string compression on session logs, no slower to ingest (BENCHMARKS.md)
            event VARCHAR NOT NULL USING COMPRESSION zstd,
            event_hash UBIGINT NOT NULL
        )""",
    "ot_ops": """
        CREATE TABLE IF NOT EXISTS ot_ops (  -- key: KEYS['ot_ops']
            repl_id VARCHAR NOT NULL,
            file_id BIGINT NOT NULL,  -- the file lineage: seq of the event that started it
            version BIGINT NOT NULL,
            path VARCHAR NOT NULL,
            seq BIGINT NOT NULL,
            ts TIMESTAMPTZ NOT NULL,  -- effective time (running max of ts within the repl)
            ops VARCHAR NOT NULL,     -- compact JSON: n skip, -n delete, "s" insert
            crc32 UBIGINT,
            author VARCHAR
        )""",
    "path_events": """
        CREATE TABLE IF NOT EXISTS path_events (  -- key: KEYS['path_events']
            repl_id VARCHAR NOT NULL,
            seq BIGINT NOT NULL,
            path VARCHAR NOT NULL,
            ts TIMESTAMPTZ NOT NULL,  -- effective time
            file_id BIGINT            -- lineage now at path; NULL: nothing there any more
        )""",
    "file_breaks": """
        CREATE TABLE IF NOT EXISTS file_breaks (  -- key: KEYS['file_breaks']
            repl_id VARCHAR NOT NULL,
            file_id BIGINT NOT NULL,
            seq BIGINT NOT NULL,      -- the bad packet; the file's content is unknown from here on
            path VARCHAR NOT NULL,
            ts TIMESTAMPTZ NOT NULL,
            error_kind VARCHAR NOT NULL
        )""",
    "checkpoints": """
        CREATE TABLE IF NOT EXISTS checkpoints (  -- key: KEYS['checkpoints']
            repl_id VARCHAR NOT NULL,
            file_id BIGINT NOT NULL,
            version BIGINT NOT NULL,
            path VARCHAR NOT NULL,
            content VARCHAR NOT NULL USING COMPRESSION zstd  -- whole files: zstd, like events.event
        )""",
    "diagnostics": """
        CREATE TABLE IF NOT EXISTS diagnostics (  -- key: KEYS['diagnostics']
            repl_id VARCHAR NOT NULL,
            seq BIGINT NOT NULL,
            ts TIMESTAMPTZ NOT NULL,
            path VARCHAR NOT NULL,
            start_line INTEGER NOT NULL,
            start_character INTEGER NOT NULL,
            end_line INTEGER NOT NULL,
            end_character INTEGER NOT NULL,
            severity TINYINT NOT NULL,
            code VARCHAR,
            message VARCHAR NOT NULL,
            has_code_action BOOLEAN NOT NULL
        )""",
    "pairs": """
        CREATE TABLE IF NOT EXISTS pairs (
            pair_id VARCHAR PRIMARY KEY,  -- hash of repl, path, ts, code and the diagnostic (range, message)
            repl_id VARCHAR NOT NULL,
            seq BIGINT NOT NULL,          -- the logged diagnostic event
            path VARCHAR NOT NULL,
            ts TIMESTAMPTZ NOT NULL,      -- the instant the code is replayed to
            code VARCHAR NOT NULL,        -- pyright[rule] / ruff[CODE]
            severity TINYINT NOT NULL,
            message VARCHAR NOT NULL,     -- as logged
            start_line INTEGER NOT NULL,
            start_character INTEGER NOT NULL,
            end_line INTEGER NOT NULL,
            end_character INTEGER NOT NULL,
            error_line VARCHAR NOT NULL,  -- the text of start_line
            content VARCHAR NOT NULL,     -- the whole file at ts
            reproduced_message VARCHAR NOT NULL,
            language VARCHAR,
            owner VARCHAR,
            title VARCHAR,
            run_id VARCHAR NOT NULL
        )""",
    "pair_checks": """
        CREATE TABLE IF NOT EXISTS pair_checks (
            repl_id VARCHAR NOT NULL,     -- one row per logged diagnostic the pairs stage decided on
            seq BIGINT NOT NULL,
            outcome VARCHAR NOT NULL,     -- pair, filtered, not_reproduced, quarantined
            reason VARCHAR,               -- the filter or quarantine reason
            code VARCHAR,
            pair_id VARCHAR,
            run_id VARCHAR NOT NULL,
            PRIMARY KEY (repl_id, seq)
        )""",
    "diffs": """
        CREATE TABLE IF NOT EXISTS diffs (
            pair_id VARCHAR NOT NULL,
            source VARCHAR NOT NULL,      -- user (mined from the user's later edits) or lm
            model VARCHAR NOT NULL,       -- the LM's model string; 'user' for user fixes
            diff VARCHAR,                 -- numbered line diff; NULL when there was no candidate
            fixed VARCHAR,                -- the file after the diff, once it applies
            accepted BOOLEAN NOT NULL,    -- passed every verification step
            failed_step VARCHAR,          -- the first step that failed (or no_candidate)
            reason VARCHAR,
            verification JSON NOT NULL,   -- every step's result, in order
            prompt_hash VARCHAR,          -- lm: sha256 of what was sent
            fewshot_ids JSON,             -- lm: the verified examples shown
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            fix_version BIGINT,           -- user: the file version the fix was taken from
            fix_ts TIMESTAMPTZ,
            raw VARCHAR,                  -- lm: the answer as received
            run_id VARCHAR NOT NULL,
            PRIMARY KEY (pair_id, source, model)
        )""",
    "quarantine": """
        CREATE TABLE IF NOT EXISTS quarantine (
            source VARCHAR NOT NULL,   -- the stage: ingest, verify, ...
            key VARCHAR NOT NULL,      -- repl_id/seq/content-hash, or line:hash when unparseable
            repl_id VARCHAR,
            seq BIGINT,
            path VARCHAR,
            version BIGINT,
            origin VARCHAR,            -- file:line (or file:row) it came from
            error_kind VARCHAR NOT NULL,
            message VARCHAR NOT NULL,
            raw VARCHAR,               -- the record as received
            ts TIMESTAMPTZ,            -- the event's time, when it was readable
            run_id VARCHAR,
            quarantined_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (source, key)
        )""",
    "runs": """
        CREATE TABLE IF NOT EXISTS runs (
            run_id VARCHAR PRIMARY KEY,
            stage VARCHAR NOT NULL,
            status VARCHAR NOT NULL,   -- running, done, failed
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ,
            params JSON,
            reconciliation JSON,
            timings JSON
        )""",
}

VIEWS = {
    # Path intervals: path was bound to file_id from from_ts (inclusive) to to_ts (exclusive).
    "file_paths": """
        CREATE OR REPLACE VIEW file_paths AS
        SELECT repl_id, path, file_id, seq AS from_seq, ts AS from_ts,
               lead(seq) OVER w AS to_seq, lead(ts) OVER w AS to_ts
        FROM path_events
        WINDOW w AS (PARTITION BY repl_id, path ORDER BY seq)
        QUALIFY file_id IS NOT NULL""",
}
