"""Raw MIND files parsed once per file version, into the pipeline's storage.

Staging a split file parses and validates all of it into `bronze.staged_<kind>` (every good row,
every day), its rejects into `bronze.rejects`, its lines per day and their content into
`bronze.source_days` (behaviors), and records its size, mtime and SHA-256 in `bronze.staged_files`:
in one transaction in DuckDB; on Delta the file's record is written last, so a file counts as
staged only once all of it is. A later run reuses the staged rows while size and mtime are
unchanged; when they changed it hashes the file again and re-stages it only if the content
changed. A day's bronze partition is then a filter of the staged rows, not a fresh parse.
"""

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from news_ai_assets.mind.reader import MindInputError, SplitDir, parse_behaviors, parse_news
from news_ai_assets.storage.database import Database, Replacement

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


_STAGED_ROWS = "SELECT ?::VARCHAR AS source_file, * FROM parsed_rows"
_SOURCE_DAYS = "SELECT ?::VARCHAR AS split, ?::VARCHAR AS source_file, date, lines, content FROM parsed_days"


def _staged_columns_changed(conn, table: str, select: str, params=()) -> bool:
    """Whether `table` exists with other columns than `select` gives (an older parser's)."""
    schema, name = table.split(".")
    stored = conn.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
                          [schema, name]).fetchall()
    wanted = conn.execute(f"SELECT column_name FROM (DESCRIBE ({select}))", list(params)).fetchall()
    return bool(stored) and sorted(stored) != sorted(wanted)


def _recorded(conn, kind: str, path: Path) -> tuple | None:
    try:
        return conn.execute(
            f"SELECT size, mtime_ns, sha256, split, lines, blank_lines, rows, rejects, staged_at FROM {STAGED_FILES} "
            "WHERE kind = ? AND source_file = ?", [kind, str(path)],
        ).fetchone()
    except duckdb.CatalogException:
        return None


def _file_record(kind: str, split: str, path: Path, stat, digest: str, counts: tuple, staged_at: dt.datetime) -> Replacement:
    return Replacement(
        "bronze", "staged_files",
        "SELECT ?::VARCHAR AS kind, ?::VARCHAR AS split, ?::VARCHAR AS source_file, ?::BIGINT AS size, "
        "?::BIGINT AS mtime_ns, ?::VARCHAR AS sha256, ?::BIGINT AS lines, ?::BIGINT AS blank_lines, ?::BIGINT AS rows, "
        "?::BIGINT AS rejects, ?::TIMESTAMP AS staged_at",
        [kind, split, str(path), stat.st_size, stat.st_mtime_ns, digest, *counts, staged_at],
        "source_file", str(path),
    )


def stage(database: Database, conn: duckdb.DuckDBPyConnection, kind: str, split_dir: SplitDir, log) -> StagedFile:
    """The split's `kind` file (behaviors or news), staged: reused when unchanged, else parsed anew.
    `conn` is a connection of `database`, where the file is parsed."""
    path = split_dir.file(f"{kind}.tsv")
    stat = path.stat()
    recorded = _recorded(conn, kind, path)
    if recorded and recorded[:2] == (stat.st_size, stat.st_mtime_ns):
        return StagedFile(kind, split_dir.split, str(path), *recorded[4:], reused=True)
    digest = sha256_of(path)
    if recorded and recorded[2] == digest:  # touched, not changed
        database.replace_each(conn, [_file_record(kind, split_dir.split, path, stat, digest, recorded[4:8], recorded[8])],
                              f"recording {path} as unchanged failed.")
        return StagedFile(kind, split_dir.split, str(path), *recorded[4:], reused=True)
    log.info(f"staging {path} ({stat.st_size / 2**20:.0f} MiB): parsing and validating every line")
    parsed = PARSERS[kind](conn, split_dir)
    if (path.stat().st_size, path.stat().st_mtime_ns) != (stat.st_size, stat.st_mtime_ns):
        raise MindInputError(f"{path} changed while it was being read; run again once it is complete")
    staged_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    table, file = f"bronze.staged_{kind}", [str(path)]
    counts = (parsed.lines, parsed.blank_lines, parsed.rows, parsed.rejects)
    replacements = []
    if _staged_columns_changed(conn, table, _STAGED_ROWS, [""]) or (
        kind == "behaviors" and _staged_columns_changed(conn, "bronze.source_days", _SOURCE_DAYS, ["", ""])
    ):  # staged by an older parser: every file of the kind is staged anew
        replacements += [
            Replacement("bronze", f"staged_{kind}", f"{_STAGED_ROWS} LIMIT 0", [""]),
            Replacement("bronze", "staged_files", f"SELECT * FROM {STAGED_FILES} WHERE kind <> ?", [kind]),
            *([Replacement("bronze", "source_days", f"{_SOURCE_DAYS} LIMIT 0", ["", ""])] if kind == "behaviors" else []),
        ]
    try:
        database.replace_each(conn, [
            *replacements,
            Replacement("bronze", f"staged_{kind}", _STAGED_ROWS, file, "source_file", str(path)),
            Replacement("bronze", "rejects", "SELECT * FROM parsed_rejects", (), "source_file", str(path)),
            Replacement("bronze", "source_days", _SOURCE_DAYS, [split_dir.split, str(path)], "source_file", str(path)),
            _file_record(kind, split_dir.split, path, stat, digest, counts, staged_at),  # last: the file counts as staged
        ], f"staging {path} failed, so what was staged before is kept.")
    finally:
        conn.execute("DROP VIEW IF EXISTS parsed_rows")
        conn.execute("DROP TABLE IF EXISTS checked")
    log.info(f"staged {path}: {parsed.rows} rows, {parsed.rejects} rejected lines, {parsed.blank_lines} blank")
    return StagedFile(kind, split_dir.split, str(path), *counts, staged_at, reused=False)


def staged_splits(conn: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """split -> a behaviors file staged for it (splits read by earlier runs)."""
    try:
        return dict(conn.execute(f"SELECT split, max(source_file) FROM {STAGED_FILES} WHERE kind = 'behaviors' GROUP BY split").fetchall())
    except duckdb.CatalogException:
        return {}
