"""How every DuckDB connection of the project is opened."""

from pathlib import Path

import duckdb

# Extensions are never installed or loaded on the fly: a file DuckDB does not recognise (a SQLite
# database, say) would otherwise make it fetch an extension from the internet in the middle of a run.
CONFIG = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "custom_user_agent": "news_ai_assets",
}


def open_duckdb(database: str | Path = ":memory:", read_only: bool = False) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect(str(database), read_only=read_only, config=CONFIG)
    conn.execute("SET enable_progress_bar = false")
    # DuckDB checkpoints after any commit that leaves its log over 16 MB, and a day's partition of
    # articles or vectors is about that size: every day's commit paid for a checkpoint (12 of the
    # 19 s of text_embeddings at MIND-small). Checkpoint when the file is closed instead.
    conn.execute("SET checkpoint_threshold = '1GB'")
    return conn
