"""Reads MIND split folders (behaviors.tsv, news.tsv) with DuckDB's native CSV reader.

MIND files are tab separated with no quoting (a title may start with `"`), so quoting
is off. A malformed line never stops a read and is never dropped silently: DuckDB's
reject store catches invalid UTF-8 (with line numbers), the SQL below catches wrong field
counts and bad values, and every rejected line comes back with its reason.
Everything here is plain DuckDB/Polars and knows nothing of Dagster.
"""

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

SPLITS = ("train", "dev", "test")
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
    fields: tuple[str, ...], path: Path, validation: str, columns: str, key: str, key_of_raw: str, keep: str,
    params: dict,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Reads one file; returns (good rows that satisfy `keep`, every rejected line).

    `validation` holds CTEs over `raw` (the file's fields and `raw_line`) that define `validated`
    with a `reason` (NULL for a good line); `columns` is the output's SELECT list over it.
    Duplicate keys (`key` of a good row; `key_of_raw`, the same from the raw fields): identical
    lines are kept once; lines that disagree are all rejected, since nothing says which is right. The file is scanned twice (duplicate keys, then the rows), so
    memory holds the kept rows and the rejects, not the whole file.
    """
    def run(query: str) -> None:
        conn.execute(query, {k: v for k, v in {"path": str(path), **params}.items() if f"${k}" in query})

    cte = f"WITH raw AS (SELECT *, concat_ws('\t', {', '.join(fields)}, overflow) AS raw_line FROM {_csv_scan(fields)}), {validation}"
    conn = duckdb.connect()
    try:
        conn.execute("SET enable_progress_bar = false")
        run(  # lines sharing a key: cheap, no validation needed
            f"CREATE TEMP TABLE duplicated AS {cte} SELECT {key_of_raw} AS duplicate_key, "
            f"count(DISTINCT hash(raw_line)) AS versions FROM raw WHERE {key_of_raw} IS NOT NULL "
            f"GROUP BY duplicate_key HAVING count(*) > 1"
        )
        reader_rejects = _reader_rejects(conn, path)  # recorded by the first scan only
        run(
            f"""CREATE TEMP TABLE checked AS {cte}
            SELECT {columns},
                coalesce(reason, CASE WHEN d.versions > 1 THEN 'conflicting lines share one {key}'
                                      WHEN d.versions = 1 THEN 'duplicate line' END) AS reject_reason,
                CASE WHEN reject_reason IS NOT NULL THEN raw_line END AS raw_line
            FROM validated LEFT JOIN duplicated d ON validated.{key} = d.duplicate_key
            WHERE reason IS NOT NULL OR d.duplicate_key IS NOT NULL OR ({keep})"""
        )
        conn.execute(  # one copy of each exactly duplicated line is a good row after all
            f"""UPDATE checked SET reject_reason = NULL, raw_line = NULL WHERE rowid IN (
                SELECT min(rowid) FROM checked WHERE reject_reason = 'duplicate line' GROUP BY {key})"""
        )
        rejects = pl.concat(
            [
                reader_rejects,
                conn.sql(
                    "SELECT $path AS source_file, NULL::BIGINT AS line, reject_reason AS reason, raw_line "
                    "FROM checked WHERE reject_reason IS NOT NULL ORDER BY raw_line, reason",
                    params={"path": str(path)},
                ).pl(),
            ]
        ).cast(REJECT_SCHEMA)
        rows = conn.sql(
            f"SELECT * EXCLUDE (reject_reason, raw_line) FROM checked WHERE reject_reason IS NULL AND ({keep})",
            params={k: v for k, v in params.items() if f"${k}" in keep} or None,
        ).pl()
        return rows, rejects
    finally:
        conn.close()


# One regular expression per field and line, not per token: MIND-large has 5 M lines of ~70 ids.
# MIND's own format, strictly: strptime alone reads "11/10/201  1:25" as the year 201, a day no
# partition holds, so such a line would be neither a row nor a reject.
_TIME_FORMAT = "[0-9]{1,2}/[0-9]{1,2}/[0-9]{4} [0-9]{1,2}:[0-9]{2}:[0-9]{2} [AP]M"
_NEWS_IDS = "N[0-9]+( N[0-9]+)*"
_LABELLED = "N[0-9]+-[01]( N[0-9]+-[01])*"
_ANY_TOKENS = "N[0-9]+(-[01])?( N[0-9]+(-[01])?)*"

_BEHAVIORS_VALIDATION = f"""
texts AS (
    SELECT raw_line, user_id, CASE {_field_count_problem(BEHAVIOR_FIELDS)} END AS field_count_problem,
        TRY_CAST(impression_id AS INTEGER) AS impression_id,
        regexp_full_match(time, '{_TIME_FORMAT}') AS time_well_formed,
        try_strptime(time, '%m/%d/%Y %I:%M:%S %p') AS time,
        trim(coalesce(history, '')) AS history_text,
        trim(coalesce(impressions, ''), ' ' || chr(13)) AS impressions_text  -- CRLF files too
    FROM raw
), validated AS (
    SELECT *,
        regexp_full_match(impressions_text, '{_LABELLED}') AS labelled,
        CASE
            WHEN field_count_problem IS NOT NULL THEN field_count_problem
            WHEN impression_id IS NULL OR impression_id <= 0 THEN 'impression_id is not a positive integer'
            WHEN user_id = '' OR regexp_matches(user_id, '\\s') THEN 'missing or malformed user_id'
            WHEN time IS NULL OR NOT time_well_formed THEN 'unparseable time'
            WHEN year(time) NOT BETWEEN 1970 AND 2099 THEN 'implausible time (year outside 1970-2099)'
            WHEN history_text <> '' AND NOT regexp_full_match(history_text, '{_NEWS_IDS}') THEN 'malformed history news id'
            WHEN impressions_text = '' THEN 'no impressions'
            WHEN NOT labelled AND NOT regexp_full_match(impressions_text, '{_NEWS_IDS}') THEN
                CASE WHEN regexp_full_match(impressions_text, '{_ANY_TOKENS}')
                     THEN 'impression mixes labelled and unlabelled candidates' ELSE 'malformed impression token' END
            WHEN $split IN ('train', 'dev') AND NOT labelled THEN 'unlabelled impression in a labelled split'
            WHEN list_unique(string_split(replace(replace(impressions_text, '-0', ''), '-1', ''), ' '))
                 < len(string_split(impressions_text, ' ')) THEN 'candidate repeated within an impression'
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
    list_transform(string_split(impressions_text, ' '), lambda t: {
        'news_id': split_part(t, '-', 1),
        'clicked': CASE split_part(t, '-', 2) WHEN '1' THEN true WHEN '0' THEN false END
    }) AS impressions,
    len(history)::SMALLINT AS history_length,
    len(impressions)::SMALLINT AS impressions_count,
    CASE WHEN labelled THEN len(list_filter(impressions, lambda c: c.clicked)) END::SMALLINT AS click_count,
    (click_count / impressions_count)::FLOAT AS click_ratio,
    (isodow(time) - 1)::TINYINT AS day_of_week,
    hour(time)::TINYINT AS hour_of_day
"""
_IN_DAYS = "time >= $start AND time < $end"


def read_behaviors(
    splits: list[SplitDir], start: dt.date, end: dt.date
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Impressions with start <= day < end from every split, and every rejected line of those files.

    day_of_week is 0 for Monday; click_count and click_ratio are NULL for unlabelled impressions.
    """
    frames, rejects = [], []
    for split_dir in splits:
        rows, bad = _read(
            BEHAVIOR_FIELDS, split_dir.file("behaviors.tsv"), _BEHAVIORS_VALIDATION, _BEHAVIORS_COLUMNS,
            key="impression_id", key_of_raw="TRY_CAST(impression_id AS INTEGER)", keep=_IN_DAYS,
            params={"split": split_dir.split, "start": start, "end": end},
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
        CASE WHEN reason IS NULL THEN from_json(coalesce(nullif({column}, ''), '[]'), '{_ENTITY_JSON_SHAPE}') END,
        lambda e: {{'label': e.Label, 'type': e.Type, 'wikidata_id': e.WikidataId, 'confidence': e.Confidence,
               'occurrence_offsets': e.OccurrenceOffsets, 'surface_forms': e.SurfaceForms}}
    )::{ENTITY_TYPE} AS {column}"""


_NEWS_COLUMNS = f"""
    news_id, category, coalesce(subcategory, '') AS subcategory, coalesce(title, '') AS title,
    coalesce(abstract, '') AS abstract, coalesce(url, '') AS url,
    {_entities("title_entities")},
    {_entities("abstract_entities")}
"""


def read_news(splits: list[SplitDir]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The union of the splits' news.tsv (one row per news_id; the same id is the same article,
    taken from the earliest split), and every rejected line."""
    frames, rejects = [], []
    for rank, split_dir in enumerate(splits):
        rows, bad = _read(NEWS_FIELDS, split_dir.file("news.tsv"), _NEWS_VALIDATION, _NEWS_COLUMNS, key="news_id",
                          key_of_raw="news_id", keep="true", params={})
        frames.append(rows.with_columns(pl.lit(rank, pl.Int8).alias("split_rank")))
        rejects.append(bad)
    news = (
        pl.concat(frames)
        .sort("news_id", "split_rank")
        .unique("news_id", keep="first", maintain_order=True)
        .drop("split_rank")
    )
    return news, pl.concat(rejects)
