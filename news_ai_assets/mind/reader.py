"""Reads MIND split folders (behaviors.tsv, news.tsv) with DuckDB's native CSV reader.

MIND files are tab separated with no quoting (a title may start with `"`), so quoting
is off. A malformed line never stops a read and is never dropped silently: DuckDB's
reject store catches wrong field counts and invalid UTF-8 (with line numbers), the
SQL below catches bad values, and every rejected line comes back with its reason.
Everything here is plain DuckDB/Polars and knows nothing of Dagster.
"""

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

SPLITS = ("train", "dev", "test")
LABELLED_SPLITS = ("train", "dev")
_SPLIT_DIR = re.compile(r"^MIND\w*_(train|dev|test)$")

BEHAVIOR_FIELDS = ("impression_id", "user_id", "time", "history", "impressions")
NEWS_FIELDS = (
    "news_id", "category", "subcategory", "title", "abstract", "url", "title_entities", "abstract_entities",
)
REJECT_SCHEMA = {"source_file": pl.String, "line": pl.Int64, "reason": pl.String, "raw_line": pl.String}

ENTITY_TYPE = (
    "STRUCT(label VARCHAR, type VARCHAR, wikidata_id VARCHAR, confidence FLOAT, "
    "occurrence_offsets INTEGER[], surface_forms VARCHAR[])[]"
)
_ENTITY_JSON_SHAPE = (
    '[{"Label":"VARCHAR","Type":"VARCHAR","WikidataId":"VARCHAR","Confidence":"FLOAT",'
    '"OccurrenceOffsets":["INTEGER"],"SurfaceForms":["VARCHAR"]}]'
)


class MindInputError(ValueError):
    """The MIND folder itself is unusable (missing, ambiguous): no partial read is possible."""


@dataclass(frozen=True)
class SplitDir:
    split: str
    path: Path

    def file(self, name: str) -> Path:
        path = self.path / name
        if not path.is_file():
            raise MindInputError(f"MIND split folder {self.path} has no {name}")
        return path


def discover_splits(mind_dir: Path) -> list[SplitDir]:
    """Split folders under mind_dir (MINDsmall_train, MINDlarge_test, ...), in train/dev/test order."""
    if not mind_dir.is_dir():
        raise MindInputError(f"MIND folder {mind_dir} does not exist (NEWS_AI_MIND_DIR)")
    found: dict[str, list[Path]] = {}
    for child in sorted(mind_dir.iterdir()):
        match = _SPLIT_DIR.match(child.name)
        if match and child.is_dir():
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


def _csv_scan(fields: tuple[str, ...]) -> str:
    """Every field as text. Non-strict parsing never stops on a stray byte; instead an `overflow`
    column catches extra fields and, with no string read as NULL, a NULL field is a missing one."""
    columns = ", ".join(f"'{name}': 'VARCHAR'" for name in (*fields, "overflow"))
    return (
        "read_csv($path, delim='\t', quote='', escape='', new_line='\\n', header=false, auto_detect=false, "
        f"strict_mode=false, null_padding=true, nullstr='\x01', store_rejects=true, columns={{{columns}}})"
    )


def _field_count_problem(fields: tuple[str, ...]) -> str:
    """SQL CASE branches rejecting lines with too many or too few tab-separated fields."""
    missing = " OR ".join(f"{name} IS NULL" for name in fields)
    return (
        f"WHEN overflow IS NOT NULL THEN 'too many fields (expected {len(fields)})' "
        f"WHEN {missing} THEN 'too few fields (expected {len(fields)})'"
    )


def _reader_rejects(conn: duckdb.DuckDBPyConnection, path: Path) -> pl.DataFrame:
    """Lines DuckDB's CSV reader itself refused (field counts, encoding), with their line numbers."""
    return conn.sql(
        """
        SELECT $path AS source_file, line::BIGINT AS line,
               lower(error_type) || ': ' || error_message AS reason, csv_line AS raw_line
        FROM reject_errors
        QUALIFY row_number() OVER (PARTITION BY line ORDER BY column_idx) = 1  -- one row per line
        ORDER BY line
        """,
        params={"path": str(path)},
    ).pl()


def _read(
    fields: tuple[str, ...], path: Path, validation: str, select: str, key: str, params: dict
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Scans `path` as `raw`, runs the `validation` CTEs (which define `validated` with a `reason`),
    rejects duplicate keys, then `select`s from `deduped`. Returns (good rows, rejects)."""
    raw_line = f"concat_ws('\t', {', '.join(fields)}, overflow)"
    query = f"""
        CREATE TEMP TABLE checked AS
        WITH raw AS (SELECT *, {raw_line} AS raw_line FROM {_csv_scan(fields)}),
        {validation},
        {_DUPLICATES.format(key=key)}
        {select}
    """
    conn = duckdb.connect()
    try:
        conn.execute("SET enable_progress_bar = false")
        conn.execute(query, {"path": str(path), **params})
        rejects = pl.concat(
            [
                _reader_rejects(conn, path),
                conn.sql(
                    "SELECT $path AS source_file, NULL::BIGINT AS line, reject_reason AS reason, raw_line "
                    "FROM checked WHERE reject_reason IS NOT NULL ORDER BY raw_line",
                    params={"path": str(path)},
                ).pl(),
            ]
        ).cast(REJECT_SCHEMA)
        rows = conn.sql("SELECT * EXCLUDE (reject_reason, raw_line) FROM checked WHERE reject_reason IS NULL").pl()
        return rows, rejects
    finally:
        conn.close()


# Duplicate keys: identical lines are kept once; lines that disagree are all rejected,
# since nothing says which one is right.
_DUPLICATES = """
counted AS (
    SELECT *,
        count(DISTINCT raw_line) FILTER (WHERE reason IS NULL) OVER (PARTITION BY {key}) AS versions,
        row_number() OVER (PARTITION BY {key}, reason IS NULL ORDER BY raw_line) AS copy_number
    FROM validated
), deduped AS (
    SELECT * EXCLUDE (reason, versions, copy_number),
        CASE
            WHEN reason IS NOT NULL THEN reason
            WHEN versions > 1 THEN 'conflicting lines share one {key}'
            WHEN copy_number > 1 THEN 'duplicate line'
        END AS reject_reason
    FROM counted
)
"""

_BEHAVIORS_VALIDATION = """
tokenised AS (
    SELECT raw_line, user_id, {field_count_problem} AS field_count_problem,
        TRY_CAST(impression_id AS INTEGER) AS impression_id,
        try_strptime(time, '%m/%d/%Y %I:%M:%S %p') AS time,
        CASE WHEN trim(coalesce(history, '')) = '' THEN []::VARCHAR[]
             ELSE regexp_split_to_array(trim(history), ' +') END AS history,
        CASE WHEN trim(coalesce(impressions, ''), ' ' || chr(13)) = '' THEN []::VARCHAR[]
             ELSE regexp_split_to_array(trim(impressions, ' ' || chr(13)), ' +') END AS tokens  -- CRLF files too
    FROM raw
), validated AS (
    SELECT *,
        CASE
            WHEN field_count_problem IS NOT NULL THEN field_count_problem
            WHEN impression_id IS NULL OR impression_id <= 0 THEN 'impression_id is not a positive integer'
            WHEN user_id = '' OR regexp_matches(user_id, '\\s') THEN 'missing or malformed user_id'
            WHEN time IS NULL THEN 'unparseable time'
            WHEN len(list_filter(history, lambda t: NOT regexp_full_match(t, 'N[0-9]+'))) > 0
                THEN 'malformed history news id'
            WHEN len(tokens) = 0 THEN 'no impressions'
            WHEN len(list_filter(tokens, lambda t: NOT regexp_full_match(t, 'N[0-9]+(-[01])?'))) > 0
                THEN 'malformed impression token'
            WHEN len(list_filter(tokens, lambda t: contains(t, '-'))) NOT IN (0, len(tokens))
                THEN 'impression mixes labelled and unlabelled candidates'
            WHEN $split IN ('train', 'dev') AND NOT contains(tokens[1], '-')
                THEN 'unlabelled impression in a labelled split'
            WHEN len(list_distinct(list_transform(tokens, lambda t: split_part(t, '-', 1)))) < len(tokens)
                THEN 'candidate repeated within an impression'
        END AS reason
    FROM tokenised
)""".format(field_count_problem=f"CASE {_field_count_problem(BEHAVIOR_FIELDS)} END")

_BEHAVIORS_SELECT = """
SELECT
    time::DATE AS date,
    impression_id,
    user_id,
    time,
    $split AS split,
    history,
    list_transform(tokens, lambda t: {
        'news_id': split_part(t, '-', 1),
        'clicked': CASE split_part(t, '-', 2) WHEN '1' THEN true WHEN '0' THEN false END
    }) AS impressions,
    len(history)::SMALLINT AS history_length,
    len(tokens)::SMALLINT AS impressions_count,
    CASE WHEN contains(tokens[1], '-')
         THEN len(list_filter(tokens, lambda t: ends_with(t, '-1'))) END::SMALLINT AS click_count,
    (click_count / impressions_count)::FLOAT AS click_ratio,
    (isodow(time) - 1)::TINYINT AS day_of_week,
    hour(time)::TINYINT AS hour_of_day,
    reject_reason,
    raw_line
FROM deduped
WHERE reject_reason IS NOT NULL OR (time >= $start AND time < $end)
"""


def read_behaviors(
    splits: list[SplitDir], start: dt.date, end: dt.date
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Impressions with start <= day < end from every split, and every rejected line of those files.

    day_of_week is 0 for Monday; click_count and click_ratio are NULL for unlabelled impressions.
    """
    frames, rejects = [], []
    for split_dir in splits:
        rows, bad = _read(
            BEHAVIOR_FIELDS, split_dir.file("behaviors.tsv"), _BEHAVIORS_VALIDATION, _BEHAVIORS_SELECT,
            key="impression_id", params={"split": split_dir.split, "start": start, "end": end},
        )
        frames.append(rows)
        rejects.append(bad)
    return pl.concat(frames).sort("date", "split", "impression_id"), pl.concat(rejects)


_NEWS_VALIDATION = f"""
validated AS (
    SELECT *,
        CASE
            {_field_count_problem(NEWS_FIELDS)}
            WHEN NOT regexp_full_match(news_id, 'N[0-9]+') THEN 'malformed news_id'
            WHEN category = '' THEN 'missing category'
            WHEN json_type(coalesce(nullif(title_entities, ''), '[]')) IS DISTINCT FROM 'ARRAY'
                THEN 'title entities are not a valid JSON array'
            WHEN json_type(coalesce(nullif(abstract_entities, ''), '[]')) IS DISTINCT FROM 'ARRAY'
                THEN 'abstract entities are not a valid JSON array'
        END AS reason
    FROM (
        SELECT * REPLACE (
            CASE WHEN title_entities = '' OR json_valid(title_entities) THEN title_entities ELSE '"invalid"' END
                AS title_entities,
            CASE WHEN abstract_entities = '' OR json_valid(abstract_entities) THEN abstract_entities ELSE '"invalid"' END
                AS abstract_entities)
        FROM raw
    )
)"""


def _entities(column: str) -> str:
    return f"""list_transform(
        CASE WHEN reject_reason IS NULL THEN from_json(coalesce(nullif({column}, ''), '[]'), '{_ENTITY_JSON_SHAPE}') END,
        lambda e: {{'label': e.Label, 'type': e.Type, 'wikidata_id': e.WikidataId, 'confidence': e.Confidence,
               'occurrence_offsets': e.OccurrenceOffsets, 'surface_forms': e.SurfaceForms}}
    )::{ENTITY_TYPE} AS {column}"""


_NEWS_SELECT = f"""
SELECT news_id, category, coalesce(subcategory, '') AS subcategory, coalesce(title, '') AS title,
    coalesce(abstract, '') AS abstract, coalesce(url, '') AS url,
    {_entities("title_entities")},
    {_entities("abstract_entities")},
    $split AS split,
    reject_reason, raw_line
FROM deduped
"""


def read_news(splits: list[SplitDir]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The union of the splits' news.tsv (one row per news_id; the same id is the same article,
    taken from the earliest split), and every rejected line."""
    frames, rejects = [], []
    for rank, split_dir in enumerate(splits):
        rows, bad = _read(
            NEWS_FIELDS, split_dir.file("news.tsv"), _NEWS_VALIDATION, _NEWS_SELECT,
            key="news_id", params={"split": split_dir.split},
        )
        frames.append(rows.with_columns(pl.lit(rank, pl.Int8).alias("split_rank")))
        rejects.append(bad)
    news = (
        pl.concat(frames)
        .sort("news_id", "split_rank")
        .unique("news_id", keep="first", maintain_order=True)
        .drop("split_rank", "split")
    )
    return news, pl.concat(rejects)
