"""Reads MIND split folders (behaviors.tsv, news.tsv) with DuckDB's native CSV reader.

MIND files are tab separated with no quoting (a title may start with `"`), so quoting
is off. A malformed line never stops a read and is never dropped silently: DuckDB's
reject store catches invalid UTF-8 (with line numbers), the SQL below catches wrong field
counts and bad values, an independent line count (line_scan.py) catches lines too long
for DuckDB, and the counts must add up: every line of a file is a row, a reject or blank.
Paths are data: DuckDB is given each path with its glob characters bracketed, so a folder
named like a pattern is read as itself. Everything here is plain DuckDB/Polars and knows nothing of Dagster.
"""

import datetime as dt
import os
import re
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import polars as pl
import pyarrow as pa

from news_ai_assets.mind import grammar
from news_ai_assets.mind.line_scan import line_head, scan_lines
from news_ai_assets.storage.duckdb_config import open_duckdb

SPLITS = ("train", "dev", "test")
SPLIT_DIR = re.compile(r"^MIND\w*_(train|dev|test)$")

BEHAVIOR_FIELDS = ("impression_id", "user_id", "time", "history", "impressions")
NEWS_FIELDS = (
    "news_id", "category", "subcategory", "title", "abstract", "url", "title_entities", "abstract_entities",
)
BEHAVIOR_DESCRIPTIONS = {
    "date": "The partition: the impression's day (the date of time).",
    "impression_id": "MIND impression id, unique within a split; (split, impression_id) identifies an impression.",
    "user_id": "MIND user id.",
    "time": "Time of the impression (naive, as MIND gives it).",
    "split": "MIND split the line comes from: train, dev or test.",
    "history": "The user's history list of news ids, oldest first, as MIND gives it.",
    "impressions": "Candidates in the order shown, each {news_id, clicked}; clicked is NULL on the unlabelled test split.",
    "history_length": "Length of history.",
    "impressions_count": "Number of candidates.",
    "click_count": "Clicked candidates; NULL when unlabelled.",
    "click_ratio": "click_count / impressions_count; NULL when unlabelled.",
    "clicked_news": "The clicked candidates' news ids, in shown order ([] when none or unlabelled).",
    "day_of_week": "Weekday of time, 0 = Monday.",
    "hour_of_day": "Hour of time, 0-23.",
}
NEWS_DESCRIPTIONS = {
    "date": "The partition: day D, whose impressions show or list the article.",
    "news_id": "MIND article id.",
    "category": "MIND category.",
    "subcategory": "MIND subcategory ('' when absent).",
    "title": "Title ('' when absent).",
    "abstract": "Abstract ('' when absent).",
    "url": "URL ('' when absent).",
    "title_entities": "Entities MIND lists for the title, parsed from its JSON.",
    "abstract_entities": "Entities MIND lists for the abstract, parsed from its JSON.",
    "article_key": "MD5 of the article's news.tsv line: one version of an article, stored once in bronze.articles.",
}
REJECT_SCHEMA = {"source_file": pl.String, "line": pl.Int64, "reason": pl.String, "raw_line": pl.String}
SOURCE_DAYS_SCHEMA = {"split": pl.String, "source_file": pl.String, "date": pl.Date, "lines": pl.Int64, "content": pl.String}
# What a day's lines hold, whatever their order: their count and the sum of their 64-bit hashes (the
# hash the duplicate check computes anyway; an MD5 per line cost ~3 s per million lines more). Staging
# records it per file and day; the raw-file sensor computes it the same way (day_contents), and
# bronze/behaviors[D]'s data version is made from it. A DuckDB release with another hash() would give
# every day a new version once, and the sensor would re-run them.
DAY_CONTENT = "count(*)::BIGINT AS lines, count(*) || ':' || sum(line_hash::HUGEINT)::VARCHAR AS content"
MAX_LINE_BYTES = 2_000_000  # DuckDB's max_line_size; real MIND lines are a few KB

ENTITY_TYPE = (
    "STRUCT(label VARCHAR, type VARCHAR, wikidata_id VARCHAR, confidence FLOAT, "
    "occurrence_offsets INTEGER[], surface_forms VARCHAR[])[]"
)
_ENTITY_JSON_SHAPE = (
    '[{"Label":"VARCHAR","Type":"VARCHAR","WikidataId":"VARCHAR","Confidence":"FLOAT",'
    '"OccurrenceOffsets":["INTEGER"],"SurfaceForms":["VARCHAR"]}]'
)


class MindInputError(ValueError):
    """The MIND folder itself is unusable (missing, ambiguous, unreadable): no partial read is possible."""


class Read(NamedTuple):
    rows: pl.DataFrame
    rejects: pl.DataFrame  # every rejected line of the files read
    source_days: pl.DataFrame  # lines per day each file holds (behaviors only), whether or not read


@dataclass(frozen=True)
class SplitDir:
    split: str
    path: Path

    def file(self, name: str) -> Path:
        path = self.path / name
        if not path.is_file():
            raise MindInputError(f"MIND split folder {self.path} has no readable {name}{_why_unreadable(path)}")
        if not os.access(path, os.R_OK):
            raise MindInputError(f"{path} cannot be read (permission denied)")
        return path


def _why_unreadable(path: Path) -> str:
    """Why `path` is not a usable file or folder, for an error message."""
    if path.is_symlink() and not path.exists():
        return f" ({path} is a symbolic link to {os.readlink(path)}, which does not exist or loops: an unmounted disk?)"
    if path.exists():
        return f" ({path} is not a {'folder' if path.is_file() else 'regular file'})"
    return ""


def discover_splits(mind_dir: Path) -> list[SplitDir]:
    """Split folders under mind_dir (MINDsmall_train, MINDlarge_test, ...), in train/dev/test order.

    Anything named like a split folder that is not a readable folder (a dangling or looping link,
    a plain file) stops the read: skipping it would replace its days with nothing.
    """
    if not mind_dir.is_dir():
        raise MindInputError(f"MIND folder {mind_dir} does not exist (NEWS_AI_MIND_DIR){_why_unreadable(mind_dir)}")
    found: dict[str, list[Path]] = {}
    for child in sorted(mind_dir.iterdir()):
        match = SPLIT_DIR.match(child.name)
        if not match:
            continue
        if not child.is_dir() or not os.access(child, os.R_OK | os.X_OK):
            why = " (permission denied)" if child.is_dir() else _why_unreadable(child)
            raise MindInputError(f"{child} looks like a MIND split folder but cannot be read{why}")
        found.setdefault(match.group(1), []).append(child)
    if not found:
        raise MindInputError(
            f"{mind_dir} holds no MIND split folder (expected names like MINDsmall_train, MINDlarge_test)"
        )
    for split, paths in found.items():
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            raise MindInputError(f"more than one {split} split under {mind_dir}: {names}; keep one of them")
    return [SplitDir(split, found[split][0]) for split in SPLITS if split in found]


def _literal(path: Path) -> str:
    """`path` as DuckDB reads it literally: it expands *, ? and [...] in file paths, so a folder
    named mind[v1] would read mindv/ or mind1/ instead; a bracketed character matches itself."""
    return "".join(f"[{char}]" if char in "*?[" else char for char in str(path.absolute()))


def _csv_scan(fields: tuple[str, ...]) -> str:
    """Every field as text. Non-strict parsing never stops on a stray byte; instead an `overflow`
    column catches extra fields and, with no string read as NULL (the NULL string is a carriage
    return, which always ends a line), a NULL field is a missing one."""
    columns = ", ".join(f"'{name}': 'VARCHAR'" for name in (*fields, "overflow"))
    return (
        "read_csv($file, delim='\t', quote='', escape='', new_line='\\n', header=false, auto_detect=false, "
        f"strict_mode=false, null_padding=true, nullstr='\r', store_rejects=true, max_line_size={MAX_LINE_BYTES}, "
        f"columns={{{columns}}})"
    )


def _field_count_problem(fields: tuple[str, ...]) -> str:
    """SQL CASE branches rejecting lines with too many or too few tab-separated fields."""
    missing = " OR ".join(f"{name} IS NULL" for name in fields)
    return (
        f"WHEN overflow IS NOT NULL THEN '{grammar.field_count_problem(len(fields), too_many=True)}' "
        f"WHEN {missing} THEN '{grammar.field_count_problem(len(fields), too_many=False)}'"
    )


def _breaks(field: grammar.Field, column: str | None = None) -> str:
    """The SQL CASE branch rejecting a field that does not match its pattern, naming it."""
    return f"WHEN NOT regexp_full_match({column or field.name}, '{field.pattern}') THEN '{field.name}: {field.problem}'"


def _reader_rejects(conn, path: Path) -> pl.DataFrame:
    """Lines DuckDB's CSV reader itself refused (encoding), with their line numbers. Over-long
    lines are left to the line scan, which finds all of them (DuckDB drops some without a word)."""
    return conn.sql(
        """
        SELECT $path AS source_file, line::BIGINT AS line,
               'line: ' || lower(error_type) || ': ' || error_message AS reason, csv_line AS raw_line
        FROM reject_errors
        WHERE lower(error_type) <> 'line size over maximum'
        QUALIFY row_number() OVER (PARTITION BY line ORDER BY column_idx) = 1  -- one row per line
        ORDER BY line
        """,
        params={"path": str(path)},
    ).pl()


def _overlong_rejects(path: Path, overlong: list[tuple[int, int, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(str(path), line, f"line: longer than {MAX_LINE_BYTES:,} bytes ({length:,})", line_head(path, start, length))
         for line, start, length in overlong],
        schema=REJECT_SCHEMA, orient="row",
    )


@dataclass(frozen=True)
class ParsedFile:
    """One file parsed into a connection's temp tables: `parsed_rows` (every good row, all days),
    `parsed_rejects` (every rejected line) and `parsed_days` (lines per day, behaviors only)."""

    split: str
    path: Path
    lines: int
    blank_lines: int
    rows: int
    rejects: int


_RAW_LINES = "WITH raw AS (SELECT *, concat_ws('\t', {fields}, overflow) AS raw_line FROM {scan})"


def _line_pass(cte: str, key_of_raw: str, day_of_raw: str) -> str:
    """One cheap pass over the file: each line's key, hash (for duplicates and its day's content) and day."""
    return f"{cte} SELECT {key_of_raw} AS line_key, hash(raw_line) AS line_hash, {day_of_raw} AS day FROM raw"


def _parse(
    conn, split: str, path: Path, fields: tuple[str, ...], validation: str, columns: str, key: str, key_of_raw: str,
    day_of_raw: str = "NULL::DATE",
) -> ParsedFile:
    """Parses one file into `conn`'s temp tables (see ParsedFile), replacing what they held.

    `validation` holds CTEs over `raw` (the file's fields and `raw_line`) that define `validated`
    with a `reason` (NULL for a good line); `columns` is the output's SELECT list over it.
    Duplicate keys (`key` of a good row; `key_of_raw`, the same from the raw fields): identical
    lines are kept once; lines that disagree are all rejected, since nothing says which is right.
    `day_of_raw` dates a raw line, for the count of lines per day. The file is scanned twice (keys
    and days, then the rows); DuckDB keeps the rows and spills them to disk when they outgrow memory.
    """
    values = {"file": _literal(path), "path": str(path), "split": split}

    def run(query: str) -> None:
        conn.execute(query, {k: v for k, v in values.items() if f"${k}" in query})

    scan = scan_lines(path, MAX_LINE_BYTES)
    cte = f"{_RAW_LINES.format(scan=_csv_scan(fields), fields=', '.join(fields))}, {validation}"
    conn.execute("DROP VIEW IF EXISTS parsed_rows")
    run(f"CREATE OR REPLACE TEMP TABLE parsed_lines AS {_line_pass(cte, key_of_raw, day_of_raw)}")
    reader_rejects = _reader_rejects(conn, path)  # recorded by the first scan only
    records = conn.execute("SELECT count(*) FROM parsed_lines").fetchall()[0][0]
    unaccounted = scan.nonblank - records - reader_rejects.height - len(scan.overlong)
    if unaccounted:
        raise MindInputError(
            f"{path} has {scan.nonblank} non-blank lines, but DuckDB's reader gave {records} records and "
            f"{reader_rejects.height} rejects, and {len(scan.overlong)} lines are over {MAX_LINE_BYTES:,} bytes: "
            f"{unaccounted} lines are unaccounted for, so nothing of it is used. Please report this file."
        )
    conn.execute(
        f"CREATE OR REPLACE TEMP TABLE parsed_days AS SELECT day AS date, {DAY_CONTENT} FROM parsed_lines "
        "WHERE day IS NOT NULL GROUP BY day ORDER BY day"
    )
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE duplicated AS SELECT line_key AS duplicate_key, count(DISTINCT line_hash) AS versions "
        "FROM parsed_lines WHERE line_key IS NOT NULL GROUP BY line_key HAVING count(*) > 1"
    )
    conn.execute("DROP TABLE parsed_lines")
    run(
        f"""CREATE OR REPLACE TEMP TABLE checked AS {cte}
        SELECT {columns},
            coalesce(reason, CASE WHEN d.versions > 1 THEN '{grammar.conflicting_lines(key)}'
                                  WHEN d.versions = 1 THEN '{grammar.DUPLICATE_LINE}' END) AS reject_reason,
            CASE WHEN reject_reason IS NOT NULL THEN raw_line END AS raw_line
        FROM validated LEFT JOIN duplicated d ON validated.{key} = d.duplicate_key"""
    )
    conn.execute(  # one copy of each exactly duplicated line is a good row after all
        f"""UPDATE checked SET reject_reason = NULL, raw_line = NULL WHERE rowid IN (
            SELECT min(rowid) FROM checked WHERE reject_reason = '{grammar.DUPLICATE_LINE}' GROUP BY {key})"""
    )
    conn.register("overlong_rejects", _overlong_rejects(path, scan.overlong).to_arrow())
    conn.register("reader_rejects", reader_rejects.cast(REJECT_SCHEMA).to_arrow())
    try:
        run(
            """CREATE OR REPLACE TEMP TABLE parsed_rejects AS
            SELECT * FROM overlong_rejects UNION ALL SELECT * FROM reader_rejects UNION ALL (
                SELECT $path AS source_file, NULL::BIGINT AS line, reject_reason AS reason, raw_line
                FROM checked WHERE reject_reason IS NOT NULL ORDER BY raw_line, reason)"""
        )
    finally:
        conn.unregister("overlong_rejects")
        conn.unregister("reader_rejects")
    conn.execute("CREATE TEMP VIEW parsed_rows AS SELECT * EXCLUDE (reject_reason, raw_line) FROM checked WHERE reject_reason IS NULL")
    rows, rejects = conn.execute(
        "SELECT (SELECT count(*) FROM parsed_rows), (SELECT count(*) FROM parsed_rejects)"
    ).fetchall()[0]
    return ParsedFile(split, path, scan.lines, scan.blank, rows, rejects)


# One regular expression per field and line, not per token: MIND-large has 5 M lines of ~70 ids.
_ID, _USER, _TIME, _HISTORY, _IMPRESSIONS = grammar.BEHAVIOR_FIELDS
_IMPRESSION_ID_VALUE = (f"CASE WHEN regexp_full_match(impression_id, '{_ID.pattern}') AND TRY_CAST(impression_id AS BIGINT) "
                        f"BETWEEN 1 AND {grammar.MAX_IMPRESSION_ID} THEN impression_id::INTEGER END")
_TIME_VALUE = f"CASE WHEN regexp_full_match(time, '{_TIME.pattern}') THEN try_strptime(time, '{grammar.TIME_FORMAT}') END"

_BEHAVIORS_VALIDATION = f"""
texts AS (
    SELECT raw_line, user_id, history AS history_raw, impressions AS impressions_raw,
        CASE {_field_count_problem(BEHAVIOR_FIELDS)} END AS field_count_problem,
        {_IMPRESSION_ID_VALUE} AS impression_id, time AS time_text, {_TIME_VALUE} AS time,
        trim(coalesce(history, '')) AS history_text,
        trim(coalesce(impressions, '')) AS impressions_text
    FROM raw
), validated AS (
    SELECT *,
        regexp_full_match(impressions_text, '{grammar.LABELLED_IMPRESSIONS}') AS labelled,
        -- each candidate as [news id, label]: split once for the repeat check and the impressions column
        list_transform(string_split(impressions_text, ' '), lambda t: string_split(t, '-')) AS candidate_parts,
        CASE
            WHEN field_count_problem IS NOT NULL THEN field_count_problem
            WHEN impression_id IS NULL THEN 'impression_id: {_ID.problem}'
            {_breaks(_USER)}
            {_breaks(_TIME, "time_text")}
            WHEN time IS NULL THEN 'time: {grammar.TIME_NOT_A_DAY}'
            WHEN year(time) NOT BETWEEN {grammar.YEARS[0]} AND {grammar.YEARS[1]} THEN 'time: {grammar.TIME_OUT_OF_RANGE}'
            {_breaks(_HISTORY, "history_raw")}
            WHEN impressions_text = '' THEN 'impressions: {grammar.NO_IMPRESSIONS}'
            WHEN NOT regexp_full_match(impressions_raw, '{_IMPRESSIONS.pattern}') THEN
                CASE WHEN regexp_full_match(impressions_raw, '{grammar.ANY_IMPRESSION_TOKENS}') THEN 'impressions: {grammar.MIXED_LABELS}'
                     ELSE 'impressions: {_IMPRESSIONS.problem}' END
            WHEN $split IN {grammar.LABELLED_SPLITS} AND NOT labelled THEN 'impressions: {grammar.UNLABELLED_IN_LABELLED_SPLIT}'
            WHEN list_unique(list_transform(candidate_parts, lambda p: p[1])) < len(candidate_parts)
                THEN 'impressions: {grammar.REPEATED_CANDIDATE}'
        END AS reason
    FROM texts
)"""

_BEHAVIORS_COLUMNS = """
    time::DATE AS date,
    impression_id,
    user_id,
    time,
    $split AS split,
    CASE WHEN history_text = '' THEN []::VARCHAR[] ELSE string_split(history_text, ' ') END AS history,
    list_transform(candidate_parts, lambda p: {
        'news_id': p[1], 'clicked': CASE p[2] WHEN '1' THEN true WHEN '0' THEN false END
    }) AS impressions,
    len(history)::INTEGER AS history_length,
    len(impressions)::INTEGER AS impressions_count,
    CASE WHEN labelled THEN len(list_filter(impressions, lambda c: c.clicked)) END::INTEGER AS click_count,
    list_transform(list_filter(impressions, lambda c: coalesce(c.clicked, false)), lambda c: c.news_id) AS clicked_news,
    (click_count / impressions_count)::FLOAT AS click_ratio,
    (isodow(time) - 1)::TINYINT AS day_of_week,
    hour(time)::TINYINT AS hour_of_day
"""
_DAY_OF_RAW = f"({_TIME_VALUE})::DATE"


def parse_behaviors(conn, split_dir: SplitDir) -> ParsedFile:
    """A split's behaviors.tsv into `conn`'s parsed_* temp tables (see ParsedFile)."""
    return _parse(
        conn, split_dir.split, split_dir.file("behaviors.tsv"), BEHAVIOR_FIELDS, _BEHAVIORS_VALIDATION,
        _BEHAVIORS_COLUMNS, key="impression_id", key_of_raw=_IMPRESSION_ID_VALUE, day_of_raw=_DAY_OF_RAW,
    )


def day_contents(path: Path) -> dict[dt.date, str]:
    """The content of each day's lines in a behaviors.tsv, as staging records it (DAY_CONTENT),
    read without parsing or validating: what the raw-file sensor compares."""
    cte = _RAW_LINES.format(scan=_csv_scan(BEHAVIOR_FIELDS), fields=", ".join(BEHAVIOR_FIELDS))
    with closing(open_duckdb()) as conn:
        rows = conn.execute(
            f"SELECT day, {DAY_CONTENT} FROM ({_line_pass(cte, 'NULL', _DAY_OF_RAW)}) WHERE day IS NOT NULL GROUP BY day",
            {"file": _literal(path)},
        ).fetchall()
    return {day: content for day, _, content in rows}


def read_behaviors(splits: list[SplitDir], start: dt.date, end: dt.date) -> Read:
    """Impressions with start <= day < end from every split, every rejected line of those files,
    and how many lines each file dates to each day (all days, so that a run knows what the files cover).

    day_of_week is 0 for Monday; click_count and click_ratio are NULL for unlabelled impressions.
    """
    frames, rejects, days = [], [], []
    with closing(open_duckdb()) as conn:
        for split_dir in splits:
            parsed = parse_behaviors(conn, split_dir)
            frames.append(conn.sql("SELECT * FROM parsed_rows WHERE date >= ? AND date < ?", params=[start, end]).pl())
            rejects.append(conn.sql("SELECT * FROM parsed_rejects").pl())
            days.append(conn.sql("SELECT ?::VARCHAR AS split, ?::VARCHAR AS source_file, date, lines, content FROM parsed_days",
                                 params=[parsed.split, str(parsed.path)]).pl())
    return Read(
        pl.concat(frames).sort("date", "split", "impression_id"), pl.concat(rejects).cast(REJECT_SCHEMA),
        pl.concat([pl.DataFrame(schema=SOURCE_DAYS_SCHEMA), *days]).cast(SOURCE_DAYS_SCHEMA),
    )


def _entity_problem_sql(column: str) -> str:
    """Why the column's text is not an entity list: NULL straight away in MIND's own form, else Python's parse."""
    return (f"CASE WHEN regexp_full_match({column}, '{grammar.ENTITY_LIST_COMMON_FORM}') THEN NULL "
            f"ELSE entity_list_problem({column}) END AS {column}_problem")


_NEWS_VALIDATION = f"""
validated AS (
    SELECT *,
        CASE
            {_field_count_problem(NEWS_FIELDS)}
            {" ".join(_breaks(field) for field in grammar.NEWS_FIELDS if field.name not in grammar.ENTITY_FIELDS)}
            {" ".join(f"WHEN {f}_problem IS NOT NULL THEN '{f}: ' || {f}_problem" for f in grammar.ENTITY_FIELDS)}
        END AS reason
    FROM (SELECT *, {", ".join(_entity_problem_sql(f) for f in grammar.ENTITY_FIELDS)} FROM raw)
)"""


def _entities(column: str) -> str:
    return f"""list_transform(
        CASE WHEN reason IS NULL THEN from_json(coalesce(nullif({column}, ''), '[]'), '{_ENTITY_JSON_SHAPE}') END,
        lambda e: {{'label': e.Label, 'type': e.Type, 'wikidata_id': e.WikidataId, 'confidence': e.Confidence,
               'occurrence_offsets': e.OccurrenceOffsets, 'surface_forms': e.SurfaceForms}}
    )::{ENTITY_TYPE} AS {column}"""


_NEWS_COLUMNS = f"""
    news_id, category, coalesce(subcategory, '') AS subcategory, coalesce(title, '') AS title,
    coalesce(abstract, '') AS abstract, coalesce(url, '') AS url,
    {_entities("title_entities")},
    {_entities("abstract_entities")},
    md5(raw_line) AS article_key
"""


def _entity_list_problems(texts: pa.Array) -> pa.Array:
    return pa.array([None if text is None else grammar.entity_list_problem(text) for text in texts.to_pylist()], pa.string())


def parse_news(conn, split_dir: SplitDir) -> ParsedFile:
    """A split's news.tsv into `conn`'s parsed_* temp tables (see ParsedFile)."""
    if not conn.execute("SELECT count(*) FROM duckdb_functions() WHERE function_name = 'entity_list_problem'").fetchall()[0][0]:
        conn.create_function("entity_list_problem", _entity_list_problems, ["VARCHAR"], "VARCHAR", type="arrow",
                             null_handling="special")
    return _parse(conn, split_dir.split, split_dir.file("news.tsv"), NEWS_FIELDS, _NEWS_VALIDATION, _NEWS_COLUMNS,
                  key="news_id", key_of_raw="news_id")


def read_news(splits: list[SplitDir]) -> Read:
    """The union of the splits' news.tsv (one row per news_id; the same id is the same article,
    taken from the earliest split), and every rejected line."""
    frames, rejects = [], []
    with closing(open_duckdb()) as conn:
        for rank, split_dir in enumerate(splits):
            parse_news(conn, split_dir)
            frames.append(conn.sql("SELECT * FROM parsed_rows").pl().with_columns(pl.lit(rank, pl.Int8).alias("split_rank")))
            rejects.append(conn.sql("SELECT * FROM parsed_rejects").pl())
    news = (
        pl.concat(frames)
        .sort("news_id", "split_rank")
        .unique("news_id", keep="first", maintain_order=True)
        .drop("split_rank")
    )
    return Read(news, pl.concat(rejects).cast(REJECT_SCHEMA), pl.DataFrame(schema=SOURCE_DAYS_SCHEMA))
