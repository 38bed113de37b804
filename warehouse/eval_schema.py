"""The tables of eval runs (`otlake eval run`) and frozen eval sets (`otlake eval make-replit`)."""

from __future__ import annotations

from pathlib import Path

EVAL_TABLES = {
    "eval_runs": """
        CREATE TABLE IF NOT EXISTS eval_runs (
            run_id VARCHAR PRIMARY KEY,
            bench VARCHAR NOT NULL,           -- debugbench, replit, jsonl
            model VARCHAR NOT NULL,           -- oracle, noop, a DSPy model string, hf:<folder>
            status VARCHAR NOT NULL,          -- running, done, failed
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ,
            data JSON NOT NULL,               -- the bench's files: path and sha256
            items_sha256 VARCHAR,             -- the items judged (ids, code, references, targets)
            model_settings JSON NOT NULL,
            prompt_hash VARCHAR NOT NULL,     -- sha256 of the repair instructions and prompt schema
            sampling JSON NOT NULL,           -- temperature, top_p, top_k, max_tokens, seed
            samples INTEGER NOT NULL,
            items INTEGER,                    -- items scored (with a target diagnostic)
            skipped INTEGER,                  -- records left out, by reason in `counts`
            metrics JSON,                     -- pass@1 (and pass@k) of every metric
            by_category JSON,
            counts JSON,                      -- test coverage and skips by reason
            timings JSON
        )""",
    "eval_items": """
        CREATE TABLE IF NOT EXISTS eval_items (
            run_id VARCHAR NOT NULL,
            item_id VARCHAR NOT NULL,
            sample INTEGER NOT NULL,          -- 0 .. samples-1
            status VARCHAR NOT NULL,          -- scored, skipped
            skip_reason VARCHAR,
            category VARCHAR, subtype VARCHAR, rule VARCHAR,
            target_line INTEGER, target_message VARCHAR,
            answer VARCHAR, error VARCHAR, diff VARCHAR,
            extracted BOOLEAN, applies BOOLEAN, apply_error VARCHAR,
            changes BOOLEAN,                  -- applies and changes the code (NULL in runs stored before it)
            target_gone BOOLEAN,              -- NULL: the meta-LSP check failed ('lsp_failed: ...')
            target_detail VARCHAR,
            functional BOOLEAN,               -- NULL: no tests, or the sandbox failed ('sandbox_failed: ...')
            tests INTEGER, tests_reason VARCHAR, cases_passed INTEGER, test_detail VARCHAR,
            ast_exact BOOLEAN, ast_or_string BOOLEAN,
            target_as_reference BOOLEAN,      -- the target's hunk is the reference's (NULL: no target)
            deletes_only BOOLEAN,             -- the diff only removes code (NULL: it does not apply)
            seconds DOUBLE, prompt_tokens INTEGER, completion_tokens INTEGER, prompt_hash VARCHAR,
            PRIMARY KEY (run_id, item_id, sample)
        )""",
    "eval_sets": """
        CREATE TABLE IF NOT EXISTS eval_sets (
            name VARCHAR PRIMARY KEY,         -- frozen by `otlake eval make-replit NAME`
            created_at TIMESTAMPTZ NOT NULL,
            path VARCHAR NOT NULL,            -- the JSONL file (absolute)
            sha256 VARCHAR NOT NULL,
            items INTEGER NOT NULL,
            params JSON NOT NULL,
            counts JSON NOT NULL              -- candidates in, kept, dropped by reason
        )""",
}

# NULL in a metric's column: see eval/metrics.py (also NULL in rows stored before the metric existed)
ITEM_COLUMNS = ("run_id", "item_id", "sample", "status", "skip_reason", "category", "subtype", "rule", "target_line",
                "target_message", "answer", "error", "diff", "extracted", "applies", "apply_error", "changes", "target_gone",
                "target_detail", "functional", "tests", "tests_reason", "cases_passed", "test_detail", "ast_exact",
                "ast_or_string", "target_as_reference", "deletes_only", "seconds", "prompt_tokens",
                "completion_tokens", "prompt_hash")


def create_eval_tables(con) -> None:
    """Create the tables if they are missing (idempotent)."""
    for ddl in EVAL_TABLES.values():
        con.execute(ddl)
    # a warehouse whose eval_items predates a metric gains its column; its old rows read NULL
    for column in ("changes", "target_as_reference", "deletes_only"):
        con.execute(f"ALTER TABLE eval_items ADD COLUMN IF NOT EXISTS {column} BOOLEAN")


def has_eval_tables(con) -> bool:
    rows = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'eval_runs'").fetchall()
    return rows[0][0] > 0


def registered_eval_sets(con) -> list[str]:
    """The files of every frozen eval set that still exists (dataset builds decontaminate against them)."""
    if not has_eval_tables(con):
        return []
    return [r[0] for r in con.execute("SELECT path FROM eval_sets ORDER BY name").fetchall() if Path(r[0]).is_file()]
