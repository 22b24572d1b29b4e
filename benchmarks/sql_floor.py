"""A floor for the pipeline's time: silver's columns computed by plain DuckDB SQL straight from the raw
MIND files, with no Dagster, no validation or rejects, no per-day bookkeeping and no Python per row.

    .venv/bin/python benchmarks/sql_floor.py --mind benchmarks/data/small --out /tmp/floor.duckdb

It computes every silver column SQL expresses directly (identifiers, label, the engagement,
temporal and content user features, the news text statistics, and the cross features except
history_similarity, which needs the embeddings) for every day of the files, and writes them as one
wide table, silver_floor. benchmarks/run.py runs it beside the pipeline and reports the ratio.
"""

import argparse
import json
import time
from pathlib import Path

import duckdb

LOOKBACK = 7
CATEGORIES = ("autos", "entertainment", "finance", "foodanddrink", "games", "health", "kids", "lifestyle", "middleeast",
              "movies", "music", "news", "northamerica", "sports", "travel", "tv", "video", "weather")


def _csv(path: Path, columns: list[str]) -> str:
    spec = ", ".join(f"'{c}': 'VARCHAR'" for c in columns)
    return (f"read_csv('{path}', delim='\t', quote='', escape='', header=false, auto_detect=false, "
            f"columns={{{spec}}})")


def statements(mind: Path) -> list[tuple[str, str]]:
    splits = sorted(p for p in mind.iterdir() if p.is_dir() and p.name.startswith("MIND"))
    behaviors = " UNION ALL ".join(
        f"SELECT *, '{p.name.rsplit('_', 1)[1]}' AS split FROM {_csv(p / 'behaviors.tsv', ['impression_id', 'user_id', 'time', 'history', 'impressions'])}"
        for p in splits
    )
    news = " UNION ALL ".join(
        f"SELECT *, {rank} AS split_rank FROM {_csv(p / 'news.tsv', ['news_id', 'category', 'subcategory', 'title', 'abstract', 'url', 'title_entities', 'abstract_entities'])}"
        for rank, p in enumerate(splits)
    )
    day_parts = {"morning": (6, 12), "afternoon": (12, 18), "evening": (18, 24), "night": (0, 6)}
    return [
        ("behaviors", f"""
            CREATE TABLE behaviors AS
            SELECT impression_id::INTEGER AS impression_id, user_id, split, strptime(time, '%m/%d/%Y %I:%M:%S %p') AS ts,
                   ts::DATE AS date, string_split(nullif(trim(history), ''), ' ') AS history,
                   list_transform(string_split(trim(impressions), ' '), lambda t: {{'news_id': split_part(t, '-', 1),
                       'clicked': CASE split_part(t, '-', 2) WHEN '1' THEN true WHEN '0' THEN false END}}) AS impressions
            FROM ({behaviors})"""),
        ("rename", "ALTER TABLE behaviors RENAME COLUMN ts TO time"),
        ("behaviors_counts", """
            CREATE TABLE window_rows AS
            SELECT *, len(impressions) AS impressions_count,
                   CASE WHEN impressions[1].clicked IS NOT NULL THEN len(list_filter(impressions, lambda c: c.clicked)) END AS click_count,
                   click_count / impressions_count AS click_ratio, isodow(time) - 1 AS day_of_week, hour(time) AS hour_of_day,
                   list_transform(list_filter(impressions, lambda c: coalesce(c.clicked, false)), lambda c: c.news_id) AS clicked_news
            FROM behaviors"""),
        ("news", f"""
            CREATE TABLE news AS
            SELECT news_id, category, subcategory, coalesce(title, '') AS title, coalesce(abstract, '') AS abstract,
                   json_array_length(coalesce(nullif(title_entities, ''), '[]')) AS title_entity_count,
                   json_array_length(coalesce(nullif(abstract_entities, ''), '[]')) AS abstract_entity_count
            FROM ({news}) QUALIFY row_number() OVER (PARTITION BY news_id ORDER BY split_rank) = 1"""),
        ("news_features", """
            CREATE TABLE news_features AS
            SELECT news_id, category, subcategory,
                   length(title) AS title_char_count, len(regexp_extract_all(title, '\\S+')) AS title_word_count,
                   length(abstract) AS abstract_char_count, len(regexp_extract_all(abstract, '\\S+')) AS abstract_word_count,
                   trim(title || ' ' || abstract) AS text,
                   CASE WHEN length(text) > 0 THEN len(regexp_extract_all(text, '\\p{Lu}')) / length(text) END AS capital_ratio,
                   CASE WHEN length(text) > 0 THEN len(regexp_extract_all(text, '\\p{Nd}')) / length(text) END AS digit_ratio,
                   title_entity_count, abstract_entity_count, title_entity_count + abstract_entity_count AS total_entity_count
            FROM news"""),
        ("interactions", """
            CREATE TABLE interactions AS
            SELECT date, impression_id, user_id, split, time, unnest(impressions).news_id AS news_id,
                   unnest(impressions).clicked AS clicked, unnest(range(1, len(impressions) + 1)) AS position
            FROM behaviors"""),
        ("active_users", """
            CREATE TABLE active_users AS
            SELECT date AS day, user_id, arg_min(history, time) AS history FROM behaviors GROUP BY ALL"""),
        ("user_features", f"""
            CREATE TABLE user_features AS
            WITH lookback AS (
                SELECT u.day, w.*, lag(w.time) OVER (PARTITION BY u.day, u.user_id ORDER BY w.time) AS previous
                FROM active_users u JOIN window_rows w
                  ON w.user_id = u.user_id AND w.date >= u.day - {LOOKBACK} AND w.date < u.day
            )
            SELECT u.day, u.user_id, count(w.user_id) AS behavior_count,
                   avg(impressions_count) AS impressions_count_mean, min(impressions_count) AS impressions_count_min,
                   max(impressions_count) AS impressions_count_max, coalesce(sum(impressions_count), 0) AS impressions_count_sum,
                   avg(click_count) AS click_count_mean, min(click_count) AS click_count_min, max(click_count) AS click_count_max,
                   coalesce(sum(click_count), 0) AS click_count_sum, avg(click_ratio) AS click_ratio_mean,
                   min(click_ratio) AS click_ratio_min, max(click_ratio) AS click_ratio_max,
                   coalesce(sum(click_count) / nullif(sum(impressions_count) FILTER (click_count IS NOT NULL), 0), 0) AS overall_ctr,
                   len(u.history) AS history_length, min(time) AS first_activity, max(time) AS last_activity,
                   epoch(max(time) - min(time)) / 3600 AS activity_duration_hours,
                   count(DISTINCT day_of_week) AS days_active, mode(day_of_week) AS most_active_day,
                   count(DISTINCT hour_of_day) AS hours_active, mode(hour_of_day) AS most_active_hour,
                   count(w.user_id) / greatest(1, floor(epoch(max(time) - min(time)) / 86400)) AS activity_frequency,
                   avg(epoch(time - previous) / 3600) AS avg_hours_between, min(epoch(time - previous) / 3600) AS min_hours_between,
                   max(epoch(time - previous) / 3600) AS max_hours_between,
                   stddev_pop(epoch(time - previous) / 3600) AS std_hours_between,
                   avg((epoch(time - previous) < 1800)::INT) FILTER (previous IS NOT NULL) AS bursty_session_ratio,
                   epoch(u.day::TIMESTAMP - max(time)) / 86400 AS days_since_last_activity,
                   coalesce(epoch(u.day::TIMESTAMP - max(time)) / 86400 <= 1, false) AS is_recent_active,
                   {", ".join(f"avg((day_of_week = {d})::INT) AS day_{d}_ratio" for d in range(7))},
                   {", ".join(f"avg((hour_of_day >= {lo} AND hour_of_day < {hi})::INT) AS {p}_ratio" for p, (lo, hi) in day_parts.items())},
                   list(clicked_news) AS window_clicks
            FROM active_users u LEFT JOIN lookback w ON w.day = u.day AND w.user_id = u.user_id
            GROUP BY u.day, u.user_id, u.history"""),
        ("content", f"""
            CREATE TABLE content AS
            WITH items AS (
                SELECT u.day, u.user_id, unnest(coalesce(u.history, []) || flatten(coalesce(f.window_clicks, []))) AS news_id
                FROM active_users u JOIN user_features f ON f.day = u.day AND f.user_id = u.user_id
            ), known AS (SELECT i.*, n.category, n.subcategory FROM items i JOIN news n USING (news_id))
            SELECT day, user_id, count(*) AS known_items, mode(category) AS top_category, mode(subcategory) AS top_subcategory,
                   {", ".join(f"avg((category = '{c}')::INT) AS category_ratio_{c}" for c in CATEGORIES)}
            FROM known GROUP BY ALL"""),
        ("shares", """
            CREATE TABLE shares AS
            WITH items AS (
                SELECT u.day, u.user_id, unnest(coalesce(u.history, []) || flatten(coalesce(f.window_clicks, []))) AS news_id
                FROM active_users u JOIN user_features f ON f.day = u.day AND f.user_id = u.user_id
            )
            SELECT i.day, i.user_id, n.category, n.subcategory, count(*) AS items
            FROM items i JOIN news n USING (news_id) GROUP BY ALL"""),
        ("candidate_stats", f"""
            CREATE TABLE candidate_stats AS
            WITH daily AS (
                SELECT date, news_id, count(*) AS shown, count(clicked) AS labelled, count(*) FILTER (clicked) AS clicks,
                       min(time) AS first_shown
                FROM interactions GROUP BY ALL
            ), days AS (SELECT DISTINCT date AS day FROM interactions)
            SELECT d.day, s.news_id, sum(s.shown) FILTER (s.date < d.day) AS shown,
                   sum(s.labelled) FILTER (s.date < d.day) AS labelled, sum(s.clicks) FILTER (s.date < d.day) AS clicks,
                   min(s.first_shown) AS first_shown
            FROM days d JOIN daily s ON s.date BETWEEN d.day - {LOOKBACK} AND d.day GROUP BY ALL"""),
        ("silver_floor", """
            CREATE TABLE silver_floor AS
            WITH prior AS (SELECT day, coalesce(sum(clicks) / nullif(sum(labelled), 0), 0) AS p FROM candidate_stats GROUP BY day),
                 user_items AS (SELECT day, user_id, sum(items) AS known FROM shares GROUP BY ALL),
                 subshares AS (SELECT day, user_id, subcategory, sum(items) AS items FROM shares GROUP BY ALL),
                 catshares AS (SELECT day, user_id, category, sum(items) AS items FROM shares GROUP BY ALL)
            SELECT i.date, i.impression_id, i.user_id, i.news_id, i.time, i.position, i.split, i.clicked,
                   f.* EXCLUDE (day, user_id, window_clicks), c.* EXCLUDE (day, user_id, known_items),
                   n.* EXCLUDE (news_id, text),
                   CASE WHEN ui.known > 0 AND n.category IS NOT NULL THEN coalesce(cs.items, 0) / ui.known END AS user_category_ratio,
                   CASE WHEN ui.known > 0 AND n.category IS NOT NULL THEN coalesce(ss.items, 0) / ui.known END AS user_subcategory_ratio,
                   coalesce(st.shown, 0) AS candidate_impressions, coalesce(st.clicks, 0) AS candidate_clicks,
                   (coalesce(st.clicks, 0) + 20 * pr.p) / (coalesce(st.labelled, 0) + 20) AS candidate_ctr,
                   epoch(i.time - st.first_shown) / 86400 AS article_age_days
            FROM interactions i
            LEFT JOIN user_features f ON f.day = i.date AND f.user_id = i.user_id
            LEFT JOIN content c ON c.day = i.date AND c.user_id = i.user_id
            LEFT JOIN news_features n ON n.news_id = i.news_id
            LEFT JOIN user_items ui ON ui.day = i.date AND ui.user_id = i.user_id
            LEFT JOIN catshares cs ON cs.day = i.date AND cs.user_id = i.user_id AND cs.category = n.category
            LEFT JOIN subshares ss ON ss.day = i.date AND ss.user_id = i.user_id AND ss.subcategory = n.subcategory
            LEFT JOIN candidate_stats st ON st.day = i.date AND st.news_id = i.news_id
            LEFT JOIN prior pr ON pr.day = i.date"""),
    ]


def run(mind: Path, out: Path) -> dict:
    """Runs every statement into a fresh DuckDB file; seconds per statement, the table's size."""
    out.unlink(missing_ok=True)
    seconds = {}
    with duckdb.connect(str(out)) as conn:
        conn.execute("SET enable_progress_bar = false")
        for name, sql in statements(mind):
            started = time.perf_counter()
            conn.execute(sql)
            seconds[name] = round(time.perf_counter() - started, 2)
        rows, columns = conn.execute(
            "SELECT (SELECT count(*) FROM silver_floor), (SELECT count(*) FROM (DESCRIBE silver_floor))"
        ).fetchall()[0]
    return {"steps_s": seconds, "rows": rows, "columns": columns}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mind", type=Path, required=True, help="folder of MIND split folders")
    parser.add_argument("--out", type=Path, required=True, help="the DuckDB file to write (replaced)")
    args = parser.parse_args()
    print(json.dumps(run(args.mind, args.out)))


if __name__ == "__main__":
    main()
