"""A floor for the pipeline's time: everything the no-inference run gives consumers, computed by
plain DuckDB SQL straight from the raw MIND files (NumPy and Arrow only where SQL cannot do it
well), with no Dagster, no validation or rejects, no per-day bookkeeping and no Python per row.

    .venv/bin/python benchmarks/sql_floor.py --mind benchmarks/data/small --embeddings run.duckdb --out /tmp/floor.duckdb

It writes, for every day of the files: `training_examples` (a view with every column of
silver.training_examples, over the tables user_features, news_features and cross_features, as the
graph's view is), `impressions` (every column of silver.impressions) and `vocabulary` (the ids).
history_similarity reads the text vectors the run cached (features.embedding_cache of
--embeddings, looked up by the SHA-256 of each article's text), so no inference is timed;
history_entity_similarity reads the splits' entity_embedding.vec. The graph's definitions are in
news_ai_assets/compute; this file shares no code with them, and a test holds the two equal.
benchmarks/run.py runs it beside the pipeline and reports the ratio, overall and per stage.
"""

import argparse
import json
import re
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse

LOOKBACK = 7
HISTORY_SIZE = 50
PRIOR_WEIGHT = 20
DECAY = 0.85
CTR_DAYS = (7, 14, 30)
POPULARITY_HOURS = {"1h": 1, "6h": 6, "24h": 24}
SHOW_SPAN_US = 3 * 86_400_000_000  # an article's show keys: microseconds from D-1 00:00, room for T - 24 h below
CATEGORIES = ("autos", "entertainment", "finance", "foodanddrink", "games", "health", "kids", "lifestyle", "middleeast",
              "movies", "music", "news", "northamerica", "sports", "travel", "tv", "video", "weather")
DAY_PARTS = {"morning": (6, 12), "afternoon": (12, 18), "evening": (18, 24), "night": (0, 6)}
SPLIT_ORDER = ("train", "dev", "test")
# Unicode White_Space, which the graph's text statistics use; RE2's \s is ASCII only.
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
SPACE_CLASS = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in WHITESPACE) + "]"
NON_SPACE = "[^" + SPACE_CLASS[1:]
CAPITAL, DIGIT, SPECIAL = r"\p{Lu}", r"\p{Nd}", r"[^\p{L}\p{N} ]"

# Which of the graph's steps each floor statement does the work of, for the per-stage ratio.
STAGES = {
    "behaviors": "bronze__behaviors", "news": "bronze__news", "interactions": "features__interactions",
    "candidate_stats": "features__candidate_stats", "active_users": "features__user_features",
    "lookback": "features__user_features", "user_features": "features__user_features",
    "content_items": "features__user_features", "news_features": "features__news_features",
    "text_vectors": "features__text_embeddings", "entity_vectors": "features__entity_features",
    "vocabulary": "features__vocabulary", "impressions": "silver__impressions",
    "cross_features": "silver__training_examples", "training_examples": "silver__training_examples",
}
USER_COLUMNS = [
    "behavior_count", "impressions_count_mean", "impressions_count_min", "impressions_count_max", "impressions_count_sum",
    "click_count_mean", "click_count_min", "click_count_max", "click_count_sum", "click_ratio_mean", "click_ratio_min",
    "click_ratio_max", "overall_ctr", "history_length", "first_activity", "last_activity", "activity_duration_hours",
    "days_active", "most_active_day", "hours_active", "most_active_hour", "activity_frequency", "avg_hours_between",
    "min_hours_between", "max_hours_between", "std_hours_between", "bursty_session_ratio", "days_since_last_activity",
    "is_recent_active", *(f"day_{d}_ratio" for d in range(7)), *(f"{p}_ratio" for p in DAY_PARTS),
    "total_content_interactions", "category_diversity", "top_category", "top_subcategory",
    *(f"category_ratio_{c}" for c in CATEGORIES), "category_ratio_other", *(f"ctr_{d}d" for d in CTR_DAYS),
    "engagement_consistency", "recency_weighted_ctr",
]
NEWS_COLUMNS = [
    "category", "subcategory", *(f"{f}_{s}_count" for f in ("title", "abstract") for s in ("char", "word", "sentence")),
    "capital_ratio", "digit_ratio", "special_char_ratio", "avg_word_length", "unique_word_ratio",
    "title_entity_count", "abstract_entity_count", "total_entity_count",
]
ID_COLUMNS = ["date", "impression_id", "user_id", "news_id", "time", "position", "split", "clicked"]
CROSS_COLUMNS = [
    "user_category_ratio", "user_subcategory_ratio", "history_similarity", "candidate_impressions", "candidate_clicks",
    "candidate_ctr", "article_age_days",
    *(f"candidate_{what}_{name}" for name in POPULARITY_HOURS for what in ("impressions", "clicks")),
    "hours_since_first_seen", "history_entity_similarity",
]
IMPRESSION_INDEXES = [f"{side}_{kind}" for side in ("history", "candidate")
                      for kind in ("index", "category_index", "subcategory_index")]


def _csv(path: Path, columns: list[str]) -> str:
    spec = ", ".join(f"'{c}': 'VARCHAR'" for c in columns)
    return (f"read_csv('{path}', delim='\t', quote='', escape='', header=false, auto_detect=false, "
            f"columns={{{spec}}})")


def splits(mind: Path) -> list[tuple[str, Path]]:
    """(split, folder) in train, dev, test order: the earliest split's copy of an article wins."""
    found = {re.fullmatch(r"MIND\w+?_(train|dev|test)", p.name).group(1): p
             for p in mind.iterdir() if p.is_dir() and re.fullmatch(r"MIND\w+?_(train|dev|test)", p.name)}
    return [(split, found[split]) for split in SPLIT_ORDER if split in found]


def _ratio_of(pattern: str) -> str:
    return f"CASE WHEN length(text) > 0 THEN len(regexp_extract_all(text, '{pattern}')) / length(text) END::FLOAT"


def _sentences(field: str) -> str:
    stripped = f"trim({field}, '{WHITESPACE}')"
    return (f"(len(regexp_extract_all({stripped}, '[.!?]+({SPACE_CLASS}|$)')) + "
            f"(length({stripped}) > 0 AND NOT regexp_matches({stripped}, '[.!?]$'))::INT)::INT")


def _mode(column: str) -> str:
    """The most frequent value per user of the day; ties to the smallest."""
    return f"""SELECT day, user_id, arg_max({column}, n * 1000 - {column}) AS value
               FROM (SELECT day, user_id, {column}, count(*) AS n FROM lookback GROUP BY ALL) GROUP BY ALL"""


def _top(column: str) -> str:
    return f"""SELECT day, user_id, first({column} ORDER BY n DESC, {column}) AS value
               FROM (SELECT day, user_id, {column}, count(*) AS n FROM known_items GROUP BY ALL) GROUP BY ALL"""


def statements(mind: Path, cache_key: str) -> list[tuple[str, str]]:
    """The SQL that builds every table but the per-day cross features, in order."""
    folders = splits(mind)
    behaviors = " UNION ALL ".join(
        f"SELECT *, '{split}' AS split FROM {_csv(p / 'behaviors.tsv', ['impression_id', 'user_id', 'time', 'history', 'impressions'])}"
        for split, p in folders
    )
    news = " UNION ALL ".join(
        f"SELECT *, {rank} AS split_rank FROM {_csv(p / 'news.tsv', ['news_id', 'category', 'subcategory', 'title', 'abstract', 'url', 'title_entities', 'abstract_entities'])}"
        for rank, (_, p) in enumerate(folders)
    )
    vector_files = [(rank, p / "entity_embedding.vec") for rank, (_, p) in enumerate(folders)
                    if (p / "entity_embedding.vec").exists()]
    vectors = " UNION ALL ".join(
        f"SELECT {rank} AS split_rank, unnest(string_split(content, '\n')) AS line FROM read_text('{path}')"
        for rank, path in vector_files
    ) or "SELECT NULL::INT AS split_rank, NULL::VARCHAR AS line WHERE false"
    entity_ids = "list_transform(from_json(coalesce(nullif({0}, ''), '[]'), '[{{\"WikidataId\": \"VARCHAR\"}}]'), lambda e: e.WikidataId)"
    window = f"day - {LOOKBACK}"
    return [
        ("behaviors", f"""
            CREATE TABLE behaviors AS
            SELECT ts AS time, ts::DATE AS date, impression_id, user_id, split, history, items AS impressions,
                   len(items)::INT AS impressions_count,
                   CASE WHEN items[1].clicked IS NOT NULL THEN len(list_filter(items, lambda c: c.clicked)) END::INT AS click_count,
                   (click_count / impressions_count)::FLOAT AS click_ratio,
                   list_transform(list_filter(items, lambda c: coalesce(c.clicked, false)), lambda c: c.news_id) AS clicked_news,
                   isodow(ts) - 1 AS day_of_week, hour(ts) AS hour_of_day
            FROM (
                SELECT strptime(time, '%m/%d/%Y %I:%M:%S %p') AS ts, impression_id::INTEGER AS impression_id, user_id, split,
                       CASE WHEN trim(coalesce(history, '')) = '' THEN []::VARCHAR[]
                            ELSE string_split(trim(history), ' ') END AS history,
                       list_transform(string_split(trim(impressions), ' '), lambda t: {{'news_id': split_part(t, '-', 1),
                           'clicked': CASE split_part(t, '-', 2) WHEN '1' THEN true WHEN '0' THEN false END}}) AS items
                FROM ({behaviors}))"""),
        ("news", f"""
            CREATE TABLE news AS
            SELECT news_id, category, coalesce(subcategory, '') AS subcategory, coalesce(title, '') AS title,
                   coalesce(abstract, '') AS abstract, {entity_ids.format('title_entities')} AS title_entities,
                   {entity_ids.format('abstract_entities')} AS abstract_entities
            FROM ({news}) QUALIFY row_number() OVER (PARTITION BY news_id ORDER BY split_rank) = 1"""),
        ("news", """
            CREATE TABLE referenced AS
            SELECT DISTINCT r.date, r.news_id FROM (
                SELECT date, unnest(list_transform(impressions, lambda c: c.news_id)) AS news_id FROM behaviors
                UNION ALL SELECT date, unnest(history) FROM behaviors
            ) r SEMI JOIN news USING (news_id)"""),
        ("interactions", """
            CREATE TABLE interactions AS
            SELECT date, impression_id, user_id, time, split, unnest(impressions).news_id AS news_id,
                   unnest(impressions).clicked AS clicked, unnest(range(1, len(impressions) + 1))::INT AS position
            FROM behaviors"""),
        ("candidate_stats", """
            CREATE TABLE daily_candidates AS
            SELECT date, news_id, count(*) AS shown, count(clicked) AS labelled, count(*) FILTER (clicked) AS clicks,
                   min(time) AS first_shown
            FROM interactions GROUP BY ALL"""),
        ("candidate_stats", f"""
            CREATE TABLE candidate_window AS
            SELECT d.day, s.news_id, sum(s.shown) FILTER (s.date < d.day) AS shown,
                   sum(s.labelled) FILTER (s.date < d.day) AS labelled, sum(s.clicks) FILTER (s.date < d.day) AS clicks,
                   min(s.first_shown) AS first_shown
            FROM (SELECT DISTINCT date AS day FROM behaviors) d
            JOIN daily_candidates s ON s.date BETWEEN d.{window} AND d.day GROUP BY ALL"""),
        ("candidate_stats", """
            CREATE TABLE prior AS
            SELECT day, coalesce(sum(clicks) / nullif(sum(labelled), 0), 0) AS p FROM candidate_window GROUP BY day"""),
        ("active_users", """
            CREATE TABLE active_users AS
            SELECT date AS day, user_id, arg_min(history, (time, split, impression_id)) AS history
            FROM behaviors GROUP BY ALL"""),
        ("lookback", f"""
            CREATE TABLE lookback AS
            SELECT u.day, w.user_id, w.date, w.time, w.impressions_count, w.click_count, w.click_ratio, w.day_of_week,
                   w.hour_of_day, w.clicked_news, u.day - w.date AS days_ago,
                   epoch(w.time - lag(w.time) OVER (PARTITION BY u.day, w.user_id ORDER BY w.time)) / 3600 AS gap
            FROM active_users u JOIN behaviors w ON w.user_id = u.user_id AND w.date >= u.{window} AND w.date < u.day"""),
        ("content_items", """
            CREATE TABLE content_items AS
            SELECT day, user_id, unnest(history) AS news_id FROM active_users
            UNION ALL SELECT day, user_id, unnest(clicked_news) FROM lookback"""),
        ("content_items", """
            CREATE TABLE known_items AS SELECT i.day, i.user_id, n.category, n.subcategory
            FROM content_items i JOIN news n USING (news_id)"""),
        ("user_features", f"""
            CREATE TABLE user_features AS
            WITH engagement AS (
                SELECT day, user_id, count(*) AS behavior_count,
                       avg(impressions_count) AS impressions_count_mean, min(impressions_count) AS impressions_count_min,
                       max(impressions_count) AS impressions_count_max, sum(impressions_count) AS impressions_count_sum,
                       avg(click_count) AS click_count_mean, min(click_count) AS click_count_min,
                       max(click_count) AS click_count_max, sum(click_count) AS click_count_sum,
                       avg(click_ratio) AS click_ratio_mean, min(click_ratio) AS click_ratio_min, max(click_ratio) AS click_ratio_max,
                       sum(impressions_count) FILTER (click_count IS NOT NULL) AS labelled_impressions,
                       sum(click_count * {DECAY} ** days_ago) AS weighted_clicks,
                       sum(impressions_count * {DECAY} ** days_ago) FILTER (click_count IS NOT NULL) AS weighted_impressions,
                       {", ".join(f"sum(click_count) FILTER (days_ago <= {min(d, LOOKBACK)}) AS clicks_{d}d, "
                                  f"sum(impressions_count) FILTER (click_count IS NOT NULL AND days_ago <= {min(d, LOOKBACK)}) AS impressions_{d}d"
                                  for d in CTR_DAYS)},
                       min(time) AS first_activity, max(time) AS last_activity,
                       count(DISTINCT day_of_week) AS days_active, count(DISTINCT hour_of_day) AS hours_active,
                       {", ".join(f"avg((day_of_week = {d})::INT) AS day_{d}_ratio" for d in range(7))},
                       {", ".join(f"avg((hour_of_day >= {lo} AND hour_of_day < {hi})::INT) AS {p}_ratio" for p, (lo, hi) in DAY_PARTS.items())},
                       avg(gap) AS avg_hours_between, min(gap) AS min_hours_between, max(gap) AS max_hours_between,
                       stddev_pop(gap) AS std_hours_between, avg((gap < 0.5)::INT) AS bursty_session_ratio
                FROM lookback GROUP BY ALL
            ), consistency AS (
                SELECT day, user_id, 1 / (1 + stddev_pop(gap)) AS engagement_consistency FROM (
                    SELECT day, user_id, date - lag(date) OVER (PARTITION BY day, user_id ORDER BY date) AS gap
                    FROM (SELECT DISTINCT day, user_id, date FROM lookback)
                ) GROUP BY ALL
            ), totals AS (SELECT day, user_id, count(*) AS total_content_interactions FROM content_items GROUP BY ALL),
            category_counts AS (SELECT day, user_id, category, count(*) AS n FROM known_items GROUP BY ALL),
            diversity AS (
                SELECT day, user_id, -sum(p * log2(p)) AS category_diversity
                FROM (SELECT *, n / sum(n) OVER (PARTITION BY day, user_id) AS p FROM category_counts) GROUP BY ALL
            ), ratios AS (
                SELECT day, user_id, {", ".join(f"avg((category = '{c}')::INT) AS category_ratio_{c}" for c in CATEGORIES)},
                       avg((category NOT IN {CATEGORIES})::INT) AS category_ratio_other
                FROM known_items GROUP BY ALL
            ), most_active_day AS ({_mode("day_of_week")}), most_active_hour AS ({_mode("hour_of_day")}),
            top_category AS ({_top("category")}), top_subcategory AS ({_top("subcategory")})
            SELECT u.day, u.user_id, coalesce(behavior_count, 0)::INT AS behavior_count,
                   impressions_count_mean::FLOAT AS impressions_count_mean, impressions_count_min::INT AS impressions_count_min,
                   impressions_count_max::INT AS impressions_count_max, coalesce(impressions_count_sum, 0)::INT AS impressions_count_sum,
                   click_count_mean::FLOAT AS click_count_mean, click_count_min::INT AS click_count_min,
                   click_count_max::INT AS click_count_max, coalesce(click_count_sum, 0)::INT AS click_count_sum,
                   click_ratio_mean::FLOAT AS click_ratio_mean, click_ratio_min::FLOAT AS click_ratio_min,
                   click_ratio_max::FLOAT AS click_ratio_max,
                   coalesce(click_count_sum / nullif(labelled_impressions, 0), 0)::FLOAT AS overall_ctr,
                   len(u.history)::INT AS history_length, first_activity, last_activity,
                   (epoch(last_activity - first_activity) / 3600)::FLOAT AS activity_duration_hours,
                   coalesce(days_active, 0)::TINYINT AS days_active, mad.value::TINYINT AS most_active_day,
                   coalesce(hours_active, 0)::TINYINT AS hours_active, mah.value::TINYINT AS most_active_hour,
                   (coalesce(behavior_count, 0) / greatest(1, coalesce(floor(epoch(last_activity - first_activity) / 86400), 0)))::FLOAT
                       AS activity_frequency,
                   avg_hours_between::FLOAT AS avg_hours_between, min_hours_between::FLOAT AS min_hours_between,
                   max_hours_between::FLOAT AS max_hours_between, std_hours_between::FLOAT AS std_hours_between,
                   bursty_session_ratio::FLOAT AS bursty_session_ratio,
                   (epoch(u.day::TIMESTAMP - last_activity) / 86400)::FLOAT AS days_since_last_activity,
                   coalesce(epoch(u.day::TIMESTAMP - last_activity) / 86400 <= 1, false) AS is_recent_active,
                   {", ".join(f"day_{d}_ratio::FLOAT AS day_{d}_ratio" for d in range(7))},
                   {", ".join(f"{p}_ratio::FLOAT AS {p}_ratio" for p in DAY_PARTS)},
                   coalesce(total_content_interactions, 0)::INT AS total_content_interactions,
                   category_diversity::FLOAT AS category_diversity, tc.value AS top_category, ts.value AS top_subcategory,
                   {", ".join(f"category_ratio_{c}::FLOAT AS category_ratio_{c}" for c in CATEGORIES)},
                   category_ratio_other::FLOAT AS category_ratio_other,
                   {", ".join(f"coalesce(clicks_{d}d / nullif(impressions_{d}d, 0), 0)::FLOAT AS ctr_{d}d" for d in CTR_DAYS)},
                   engagement_consistency::FLOAT AS engagement_consistency,
                   coalesce(weighted_clicks / nullif(weighted_impressions, 0), 0)::FLOAT AS recency_weighted_ctr
            FROM active_users u
            LEFT JOIN engagement USING (day, user_id) LEFT JOIN consistency USING (day, user_id)
            LEFT JOIN totals USING (day, user_id) LEFT JOIN diversity USING (day, user_id) LEFT JOIN ratios USING (day, user_id)
            LEFT JOIN most_active_day mad USING (day, user_id) LEFT JOIN most_active_hour mah USING (day, user_id)
            LEFT JOIN top_category tc USING (day, user_id) LEFT JOIN top_subcategory ts USING (day, user_id)"""),
        ("user_features", """
            CREATE TABLE user_preferences AS
            WITH totals AS (SELECT day, user_id, count(*) AS known FROM known_items GROUP BY ALL)
            SELECT day, user_id, 'category' AS kind, category AS value, count(*) / any_value(known) AS share
            FROM known_items JOIN totals USING (day, user_id) GROUP BY ALL
            UNION ALL
            SELECT day, user_id, 'subcategory', subcategory, count(*) / any_value(known)
            FROM known_items JOIN totals USING (day, user_id) GROUP BY ALL"""),
        ("news_features", f"""
            CREATE TABLE news_features AS
            SELECT news_id, category, subcategory,
                   {", ".join(f"length({f})::INT AS {f}_char_count, len(regexp_extract_all({f}, '{NON_SPACE}+'))::INT AS {f}_word_count, "
                              f"{_sentences(f)} AS {f}_sentence_count" for f in ("title", "abstract"))},
                   trim(title || ' ' || abstract, '{WHITESPACE}') AS text, regexp_extract_all(text, '{NON_SPACE}+') AS words,
                   {_ratio_of(CAPITAL)} AS capital_ratio, {_ratio_of(DIGIT)} AS digit_ratio,
                   {_ratio_of(SPECIAL)} AS special_char_ratio,
                   list_avg(list_transform(words, lambda w: length(w)))::FLOAT AS avg_word_length,
                   CASE WHEN len(words) > 0 THEN len(list_distinct(list_transform(words, lambda w: lower(w)))) / len(words) END::FLOAT
                       AS unique_word_ratio,
                   len(title_entities)::INT AS title_entity_count, len(abstract_entities)::INT AS abstract_entity_count,
                   (len(title_entities) + len(abstract_entities))::INT AS total_entity_count
            FROM news SEMI JOIN referenced USING (news_id)"""),
        ("text_vectors", f"""
            CREATE TABLE text_vectors AS
            WITH cache AS (SELECT text_hash, embedding FROM read_only.features.embedding_cache WHERE cache_key = '{cache_key}')
            SELECT row_number() OVER (ORDER BY news_id) - 1 AS row, news_id, embedding
            FROM (SELECT news_id, sha256(text) AS text_hash FROM news_features) JOIN cache USING (text_hash)"""),
        ("entity_vectors", f"""
            CREATE TABLE entity_vector_lines AS
            SELECT string_split(rtrim(line, ' \t\r'), '\t') AS fields, split_rank FROM ({vectors})
            WHERE trim(line, ' \t\r') <> ''"""),
        ("entity_vectors", """
            CREATE TABLE entities AS
            SELECT fields[1] AS wikidata_id, fields[2:]::FLOAT[] AS vector FROM entity_vector_lines
            QUALIFY row_number() OVER (PARTITION BY fields[1] ORDER BY split_rank) = 1"""),
        ("entity_vectors", """
            CREATE TABLE entity_vectors AS
            WITH mentions AS (
                SELECT news_id, unnest(title_entities || abstract_entities) AS wikidata_id
                FROM news SEMI JOIN referenced USING (news_id)
            ), values AS (
                SELECT m.news_id, unnest(range(1, len(e.vector) + 1)) AS dim, unnest(e.vector) AS value
                FROM mentions m JOIN entities e USING (wikidata_id)
            ), means AS (SELECT news_id, dim, avg(value)::FLOAT AS value FROM values GROUP BY ALL)
            SELECT row_number() OVER (ORDER BY news_id) - 1 AS row, news_id, list(value ORDER BY dim) AS embedding
            FROM means GROUP BY news_id"""),
        ("vocabulary", """
            CREATE TABLE vocabulary AS
            WITH tokens AS (
                SELECT 'news' AS vocabulary, news_id AS token, min(date) AS first_date FROM referenced GROUP BY ALL
                UNION ALL SELECT 'category', n.category, min(r.date) FROM referenced r JOIN news n USING (news_id) GROUP BY ALL
                UNION ALL SELECT 'subcategory', n.subcategory, min(r.date) FROM referenced r JOIN news n USING (news_id) GROUP BY ALL
            )
            SELECT vocabulary, token, row_number() OVER (PARTITION BY vocabulary ORDER BY first_date, token)::INT AS id, first_date
            FROM tokens"""),
        ("vocabulary", """
            CREATE TABLE article_ids AS
            SELECT n.news_id, coalesce(v.id, 0) AS news_index, coalesce(c.id, 0) AS category_index,
                   coalesce(s.id, 0) AS subcategory_index
            FROM news n SEMI JOIN referenced USING (news_id)
            LEFT JOIN vocabulary v ON v.vocabulary = 'news' AND v.token = n.news_id
            LEFT JOIN vocabulary c ON c.vocabulary = 'category' AND c.token = n.category
            LEFT JOIN vocabulary s ON s.vocabulary = 'subcategory' AND s.token = n.subcategory"""),
        ("impressions", f"""
            CREATE TABLE impressions_lists AS
            SELECT date, split, impression_id, user_id, time,
                   list_slice(history, greatest(len(history) - {HISTORY_SIZE} + 1, 1), len(history)) AS history,
                   len(history)::INT AS history_length, list_transform(impressions, lambda c: c.news_id) AS candidates,
                   CASE WHEN click_count IS NOT NULL THEN list_transform(impressions, lambda c: c.clicked::TINYINT) END AS labels
            FROM behaviors"""),
    ]


def _show_key(day: str) -> str:
    """A show's place in (article, time) order: its article's code in day_articles, then microseconds from D-1."""
    return f"code * {SHOW_SPAN_US} + epoch_us(time - (DATE '{day}' - 1)::TIMESTAMP)"


def _cross_features_sql(day: str) -> str:
    """One day's identifiers, label and cross features but the similarities and the intra-day
    popularity, with the rows those need (user_row, text_row, entity_row, show_key), in
    (split, impression_id, position) order."""
    return f"""
        WITH recent AS (
            SELECT *, {_show_key(day)} AS show_key FROM interactions JOIN day_articles USING (news_id) WHERE date = DATE '{day}'
        ), known AS (SELECT user_id, count(*) AS known FROM known_items WHERE day = DATE '{day}' GROUP BY ALL)
        SELECT i.date, i.impression_id, i.user_id, i.news_id, i.time, i.position, i.split, i.clicked,
               CASE WHEN k.known > 0 AND n.category IS NOT NULL THEN coalesce(c.share, 0) END::FLOAT AS user_category_ratio,
               CASE WHEN k.known > 0 AND n.category IS NOT NULL THEN coalesce(s.share, 0) END::FLOAT AS user_subcategory_ratio,
               coalesce(w.shown, 0)::INT AS candidate_impressions, coalesce(w.clicks, 0)::INT AS candidate_clicks,
               ((coalesce(w.clicks, 0) + {PRIOR_WEIGHT} * p.p) / (coalesce(w.labelled, 0) + {PRIOR_WEIGHT}))::FLOAT AS candidate_ctr,
               (epoch_us(i.time - w.first_shown) / 86400e6)::FLOAT AS article_age_days,
               (epoch_us(i.time - w.first_shown) / 3600e6)::FLOAT AS hours_since_first_seen,
               u.user_row, t.row AS text_row, e.row AS entity_row, i.show_key
        FROM recent i
        JOIN day_users u USING (user_id)
        LEFT JOIN news n USING (news_id)
        LEFT JOIN known k USING (user_id)
        LEFT JOIN user_preferences c ON c.day = i.date AND c.user_id = i.user_id AND c.kind = 'category' AND c.value = n.category
        LEFT JOIN user_preferences s ON s.day = i.date AND s.user_id = i.user_id AND s.kind = 'subcategory' AND s.value = n.subcategory
        LEFT JOIN candidate_window w ON w.day = i.date AND w.news_id = i.news_id
        LEFT JOIN prior p ON p.day = i.date
        LEFT JOIN text_vectors t USING (news_id)
        LEFT JOIN entity_vectors e USING (news_id)
        WHERE i.date = DATE '{day}'
        ORDER BY i.split, i.impression_id, i.position"""


def _popularity(conn: duckdb.DuckDBPyConnection, day: str, show_keys: np.ndarray) -> dict[str, pa.Array]:
    """Labelled shows and clicks of each row's article in each window [T - h, T) over D-1 and D.
    SQL's RANGE frames did this at a third of the graph's speed (most of the floor's time), so it is
    NumPy: the shows sorted by (article, time) with running clicks, two binary searches a window."""
    shows = conn.execute(f"""SELECT {_show_key(day)} AS key, clicked::BIGINT AS clicked
                             FROM interactions JOIN day_articles USING (news_id)
                             WHERE date BETWEEN DATE '{day}' - 1 AND DATE '{day}' AND clicked IS NOT NULL
                             ORDER BY key""").fetchnumpy()
    keys, clicks = shows["key"], np.concatenate([[0], np.cumsum(shows["clicked"])])
    order = np.argsort(show_keys)
    sorted_keys = show_keys[order]
    end = np.searchsorted(keys, sorted_keys, side="left")
    columns = {}
    for name, hours in POPULARITY_HOURS.items():
        start = np.searchsorted(keys, sorted_keys - hours * 3_600_000_000, side="left")
        for what, values in (("impressions", end - start), ("clicks", clicks[end] - clicks[start])):
            column = np.empty(len(order), dtype=np.int32)
            column[order] = values
            columns[f"candidate_{what}_{name}"] = pa.array(column)
    return columns


def _matrix(conn: duckdb.DuckDBPyConnection, table: str) -> np.ndarray:
    """A vector table's embeddings as a float32 matrix, row i its `row` i."""
    lists = conn.sql(f"SELECT embedding FROM {table} ORDER BY row").to_arrow_table().column(0).combine_chunks()
    if len(lists) == 0:
        return np.zeros((0, 1), dtype=np.float32)
    flat = lists.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return flat.reshape(len(lists), -1)


def _cosines(conn: duckdb.DuckDBPyConnection, vectors: np.ndarray, table: str, rows: pa.Table, column: str) -> pa.Array:
    """Cosine between each row's user's history mean (of the `table` vectors they have) and its
    candidate's vector; NULL where either is missing or zero."""
    pairs = conn.execute(f"""SELECT u.user_row, v.row FROM (SELECT user_row, unnest(history) AS news_id FROM day_users) u
                             JOIN {table} v USING (news_id)""").fetchnumpy()
    users = conn.execute("SELECT count(*) FROM day_users").fetchall()[0][0]
    counts = np.bincount(pairs["user_row"], minlength=users)
    averaging = scipy.sparse.csr_matrix((1.0 / counts[pairs["user_row"]], (pairs["user_row"], pairs["row"])),
                                        shape=(users, len(vectors)))
    means = np.asarray(averaging @ vectors.astype(np.float64), dtype=np.float32)
    mean_norms, vector_norms = np.linalg.norm(means, axis=1), np.linalg.norm(vectors, axis=1)
    user_rows = rows.column("user_row").to_numpy()
    vector_rows = rows.column(column).fill_null(-1).to_numpy()
    out = np.full(len(user_rows), np.nan, dtype=np.float32)
    found = np.flatnonzero(vector_rows >= 0)
    for start in range(0, len(found), 2048):  # the gathered vectors stay in cache
        i = found[start:start + 2048]
        u, v = user_rows[i], vector_rows[i]
        norms = mean_norms[u] * vector_norms[v]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[i] = np.clip(np.where(norms > 0, np.einsum("ij,ij->i", means[u], vectors[v]) / norms, np.nan), -1.0, 1.0)
    return pa.array(out, mask=np.isnan(out))


def _index_lists(lists: pa.ChunkedArray, keys: pa.Array, ids: pa.Array) -> pa.Array:
    """Each list's tokens replaced by their ids (0 for a token not in `keys`)."""
    lists = lists.combine_chunks()
    flat = pc.list_flatten(lists)
    found = pc.fill_null(pc.take(ids, pc.index_in(flat, value_set=keys)), 0)
    offsets = np.concatenate([[0], np.cumsum(pc.list_value_length(lists).fill_null(0).to_numpy())]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), found.cast(pa.int32()))


def _append(conn: duckdb.DuckDBPyConnection, table: str, rows: pa.Table) -> None:
    """Inserts Arrow rows into `table`, creating it the first time."""
    exists = conn.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]).fetchall()[0][0]
    conn.register("new_rows", rows)
    conn.execute(f"INSERT INTO {table} SELECT * FROM new_rows" if exists else f"CREATE TABLE {table} AS SELECT * FROM new_rows")
    conn.unregister("new_rows")


def per_day(conn: duckdb.DuckDBPyConnection, seconds: dict) -> None:
    """cross_features and impressions, a day at a time: the similarities and the id lists are
    NumPy and Arrow work that needs a day's rows in memory, not all days'."""
    text = _matrix(conn, "text_vectors")
    entity = _matrix(conn, "entity_vectors")
    articles = conn.sql("SELECT * FROM article_ids").to_arrow_table()
    keys = articles.column("news_id").combine_chunks()
    days = [str(d) for (d,) in conn.execute("SELECT DISTINCT date FROM behaviors ORDER BY date").fetchall()]
    for day in days:
        started = time.perf_counter()
        conn.execute(f"""CREATE OR REPLACE TEMP TABLE day_users AS SELECT user_id, history,
                         (row_number() OVER (ORDER BY user_id) - 1)::INT AS user_row FROM active_users WHERE day = DATE '{day}'""")
        conn.execute(f"""CREATE OR REPLACE TEMP TABLE day_articles AS SELECT news_id, (row_number() OVER ())::BIGINT AS code
                         FROM (SELECT DISTINCT news_id FROM interactions WHERE date = DATE '{day}')""")
        rows = conn.sql(_cross_features_sql(day)).to_arrow_table()
        for name, column in _popularity(conn, day, rows.column("show_key").to_numpy()).items():
            rows = rows.append_column(name, column)
        rows = rows.append_column("history_similarity", _cosines(conn, text, "text_vectors", rows, "text_row"))
        rows = rows.append_column("history_entity_similarity", _cosines(conn, entity, "entity_vectors", rows, "entity_row"))
        _append(conn, "cross_features", rows.select([*ID_COLUMNS, *CROSS_COLUMNS]))
        seconds["cross_features"] = seconds.get("cross_features", 0) + time.perf_counter() - started

        started = time.perf_counter()
        lists = conn.sql(f"SELECT * FROM impressions_lists WHERE date = DATE '{day}' ORDER BY split, impression_id").to_arrow_table()
        for side, column in (("history", "history"), ("candidate", "candidates")):
            for kind in ("index", "category_index", "subcategory_index"):
                ids = articles.column("news_" + kind if kind == "index" else kind).combine_chunks()
                lists = lists.append_column(f"{side}_{kind}", _index_lists(lists.column(column), keys, ids))
        _append(conn, "impressions", lists)
        seconds["impressions"] = seconds.get("impressions", 0) + time.perf_counter() - started


def run(mind: Path, embeddings: Path, out: Path, cache_key: str | None = None) -> dict:
    """Builds every table into a fresh DuckDB file; seconds per statement name, the tables' sizes."""
    out.unlink(missing_ok=True)
    seconds: dict[str, float] = {}
    with duckdb.connect(str(out)) as conn:
        conn.execute("SET enable_progress_bar = false")
        conn.execute("ATTACH ? AS read_only (READ_ONLY)", [str(embeddings)])
        keys = [k for (k,) in conn.execute("SELECT DISTINCT cache_key FROM read_only.features.embedding_cache").fetchall()]
        if cache_key is None:
            if len(keys) != 1:
                raise SystemExit(f"{embeddings} caches {len(keys)} embedding settings ({keys}); pass --cache-key")
            cache_key = keys[0]
        for name, sql in statements(mind, cache_key):
            started = time.perf_counter()
            conn.execute(sql)
            seconds[name] = seconds.get(name, 0) + time.perf_counter() - started
        conn.execute("DETACH read_only")
        per_day(conn, seconds)
        started = time.perf_counter()
        conn.execute(f"""CREATE VIEW training_examples AS
            SELECT {', '.join([*(f'c.{c}' for c in ID_COLUMNS), *(f'u.{c}' for c in USER_COLUMNS),
                               *(f'n.{c}' for c in NEWS_COLUMNS), *(f'c.{c}' for c in CROSS_COLUMNS)])}
            FROM cross_features c LEFT JOIN user_features u ON u.day = c.date AND u.user_id = c.user_id
            LEFT JOIN news_features n ON n.news_id = c.news_id""")
        seconds["training_examples"] = time.perf_counter() - started
        (examples, columns), (impressions, impression_columns) = [
            conn.execute(f"SELECT (SELECT count(*) FROM {t}), (SELECT count(*) FROM (DESCRIBE {t}))").fetchall()[0]
            for t in ("training_examples", "impressions")
        ]
    return {"steps_s": {k: round(v, 2) for k, v in seconds.items()}, "stages": STAGES, "rows": examples,
            "columns": columns, "impressions": impressions, "impression_columns": impression_columns}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mind", type=Path, required=True, help="folder of MIND split folders")
    parser.add_argument("--embeddings", type=Path, required=True,
                        help="a DuckDB file with features.embedding_cache (the run's database): its vectors are used")
    parser.add_argument("--cache-key", help="the embedding setting to read (needed when the cache holds several)")
    parser.add_argument("--out", type=Path, required=True, help="the DuckDB file to write (replaced)")
    args = parser.parse_args()
    print(json.dumps(run(args.mind, args.embeddings, args.out, args.cache_key)))


if __name__ == "__main__":
    main()
