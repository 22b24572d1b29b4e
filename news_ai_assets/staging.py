"""Raw MIND files parsed once per file version, into the pipeline's DuckDB file.

Staging a split file parses and validates all of it into `bronze.staged_<kind>` (every good row,
every day), its rejects into `bronze.rejects`, its lines per day into `bronze.source_days`
(behaviors), and records its size, mtime and SHA-256 in `bronze.staged_files`, all in one
transaction. A later run reuses the staged rows while size and mtime are unchanged; when they
changed it hashes the file again and re-stages it only if the content changed. A day's bronze
partition is then a filter of the staged rows, not a fresh parse of the whole file.
"""

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from news_ai_assets.mind.reader import MindInputError, SplitDir, parse_behaviors, parse_news
from news_ai_assets.storage import transaction

STAGED_FILES = "bronze.staged_files"
PARSERS: dict[str, Callable] = {"behaviors": parse_behaviors, "news": parse_news}


@dataclass(frozen=True)
class StagedFile:
    kind: str
    split: str
    source_file: str
    lines: int
    blank_lines: int
    rows: int
    rejects: int
    staged_at: dt.datetime
    reused: bool


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(16 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _ensure_tables(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("CREATE SCHEMA IF NOT EXISTS bronze")
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {STAGED_FILES} (kind VARCHAR NOT NULL, split VARCHAR NOT NULL, "
        "source_file VARCHAR NOT NULL, size BIGINT NOT NULL, mtime_ns BIGINT NOT NULL, sha256 VARCHAR NOT NULL, "
        "lines BIGINT NOT NULL, blank_lines BIGINT NOT NULL, rows BIGINT NOT NULL, rejects BIGINT NOT NULL, "
        "staged_at TIMESTAMP NOT NULL)"
    )
    conn.execute(
        "CREATE TABLE IF NOT EXISTS bronze.rejects (source_file VARCHAR, line BIGINT, reason VARCHAR, raw_line VARCHAR)"
    )
    conn.execute(
        "CREATE TABLE IF NOT EXISTS bronze.source_days (split VARCHAR, source_file VARCHAR, date DATE, lines BIGINT)"
    )


def _fit_staged_table(conn, kind: str, table: str) -> None:
    """Creates the staged table like the parsed rows; one staged by an older parser (other columns)
    is dropped, and every file of its kind is re-staged when next read."""
    wanted = [("source_file", "VARCHAR"), *conn.execute("SELECT column_name, column_type FROM (DESCRIBE parsed_rows)").fetchall()]
    schema, name = table.split(".")
    exists = conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                          [schema, name]).fetchall()[0][0]
    stored = conn.execute(f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall() if exists else None
    if stored is not None and stored != wanted:
        conn.execute(f"DROP TABLE {table}")
        conn.execute(f"DELETE FROM {STAGED_FILES} WHERE kind = ?", [kind])
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT ''::VARCHAR AS source_file, * FROM parsed_rows LIMIT 0")


def _recorded(conn, kind: str, path: Path) -> tuple | None:
    return conn.execute(
        f"SELECT size, mtime_ns, sha256, split, lines, blank_lines, rows, rejects, staged_at FROM {STAGED_FILES} "
        "WHERE kind = ? AND source_file = ?", [kind, str(path)],
    ).fetchone()


def stage(conn: duckdb.DuckDBPyConnection, kind: str, split_dir: SplitDir, log) -> StagedFile:
    """The split's `kind` file (behaviors or news), staged: reused when unchanged, else parsed anew."""
    path = split_dir.file(f"{kind}.tsv")
    _ensure_tables(conn)
    stat = path.stat()
    recorded = _recorded(conn, kind, path)
    if recorded and recorded[:2] == (stat.st_size, stat.st_mtime_ns):
        return StagedFile(kind, split_dir.split, str(path), *recorded[4:], reused=True)
    digest = sha256_of(path)
    if recorded and recorded[2] == digest:  # touched, not changed
        conn.execute(f"UPDATE {STAGED_FILES} SET size = ?, mtime_ns = ? WHERE kind = ? AND source_file = ?",
                     [stat.st_size, stat.st_mtime_ns, kind, str(path)])
        return StagedFile(kind, split_dir.split, str(path), *recorded[4:], reused=True)
    log.info(f"staging {path} ({stat.st_size / 2**20:.0f} MiB): parsing and validating every line")
    parsed = PARSERS[kind](conn, split_dir)
    if (path.stat().st_size, path.stat().st_mtime_ns) != (stat.st_size, stat.st_mtime_ns):
        raise MindInputError(f"{path} changed while it was being read; run again once it is complete")
    staged_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    table, file = f"bronze.staged_{kind}", [str(path)]
    try:
        with transaction(conn, f"staging {path} failed, so what was staged before is kept."):
            _fit_staged_table(conn, kind, table)
            conn.execute(f"DELETE FROM {table} WHERE source_file = ?", file)
            conn.execute(f"INSERT INTO {table} SELECT ?, * FROM parsed_rows", file)
            conn.execute("DELETE FROM bronze.rejects WHERE source_file = ?", file)
            conn.execute("INSERT INTO bronze.rejects SELECT * FROM parsed_rejects")
            conn.execute("DELETE FROM bronze.source_days WHERE source_file = ?", file)
            conn.execute("INSERT INTO bronze.source_days SELECT ?, ?, date, lines FROM parsed_days", [split_dir.split, str(path)])
            conn.execute(f"DELETE FROM {STAGED_FILES} WHERE kind = ? AND source_file = ?", [kind, str(path)])
            conn.execute(
                f"INSERT INTO {STAGED_FILES} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [kind, split_dir.split, str(path), stat.st_size, stat.st_mtime_ns, digest, parsed.lines,
                 parsed.blank_lines, parsed.rows, parsed.rejects, staged_at],
            )
    finally:
        conn.execute("DROP VIEW IF EXISTS parsed_rows")
        conn.execute("DROP TABLE IF EXISTS checked")
    log.info(f"staged {path}: {parsed.rows} rows, {parsed.rejects} rejected lines, {parsed.blank_lines} blank")
    return StagedFile(kind, split_dir.split, str(path), parsed.lines, parsed.blank_lines, parsed.rows, parsed.rejects,
                      staged_at, reused=False)


def staged_splits(conn: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """split -> a behaviors file staged for it (splits read by earlier runs)."""
    try:
        return dict(conn.execute(f"SELECT split, max(source_file) FROM {STAGED_FILES} WHERE kind = 'behaviors' GROUP BY split").fetchall())
    except duckdb.CatalogException:
        return {}
