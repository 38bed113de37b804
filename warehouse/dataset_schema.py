"""The tables of built datasets (`otlake dataset build`); keys follow DESIGN.md."""

from __future__ import annotations

DATASET_TABLES = {
    "datasets": """
        CREATE TABLE IF NOT EXISTS datasets (
            dataset_id VARCHAR PRIMARY KEY,   -- the NAME given to `otlake dataset build`
            created_at TIMESTAMPTZ NOT NULL,
            params JSON NOT NULL,             -- selection, hygiene and split parameters, eval sets
            counts JSON NOT NULL,             -- examples in and out of each step, dropped by reason
            out_dir VARCHAR NOT NULL,         -- where the files were written (absolute)
            train_examples INTEGER NOT NULL,
            eval_examples INTEGER NOT NULL,
            train_sha256 VARCHAR,             -- NULL: the split was empty and its file not written
            eval_sha256 VARCHAR,
            card_sha256 VARCHAR NOT NULL,     -- README.md
            run_id VARCHAR NOT NULL           -- the `runs` row of the build
        )""",
    "dataset_examples": """
        CREATE TABLE IF NOT EXISTS dataset_examples (
            dataset_id VARCHAR NOT NULL,
            pair_id VARCHAR NOT NULL,
            source VARCHAR NOT NULL,          -- with model: the `diffs` row the response came from
            model VARCHAR NOT NULL,
            split VARCHAR NOT NULL,           -- train or eval
            line INTEGER NOT NULL,            -- 1-based line of the example in its split's file
            PRIMARY KEY (dataset_id, pair_id)
        )""",
}


def create_dataset_tables(con) -> None:
    """Create the tables if they are missing (idempotent)."""
    for ddl in DATASET_TABLES.values():
        con.execute(ddl)
    # warehouses made before an empty split's file could be left out declared these NOT NULL
    for (column,) in con.execute(
            """SELECT column_name FROM information_schema.columns WHERE table_catalog = current_database()
               AND table_name = 'datasets'
               AND column_name IN ('train_sha256', 'eval_sha256') AND is_nullable = 'NO'""").fetchall():
        con.execute(f"ALTER TABLE datasets ALTER COLUMN {column} DROP NOT NULL")
