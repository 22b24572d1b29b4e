"""Gold layer: evidence that the features work, recomputed whenever silver changes."""

import time
from collections.abc import Iterator

import dagster as dg
import duckdb
import polars as pl

from news_ai_assets.assets.common import DAILY_ASSETS, peak_rss_mib
from news_ai_assets.assets.silver import SILVER
from news_ai_assets.compute.evaluation import (
    MAX_TRAIN_IMPRESSIONS, METRICS, SEED, feature_columns, fit_ranker, scores, split_features, summary,
)
from news_ai_assets.compute.silver import wide_view_sql
from news_ai_assets.settings import SETTINGS
from news_ai_assets.storage.database import Database, materialize_command, require_written

EVALUATION = dg.AssetKey(["gold", "ranker_evaluation"])
SCORE_BATCH_ROWS = 500_000
POPULARITY = "candidate_ctr"  # the baseline's score: the candidate's smoothed CTR over the lookback window


def _split_days(conn, split: str) -> list:
    """The partition days on which the raw files hold impressions of `split` (decided from the data)."""
    try:
        return [day for (day,) in conn.execute(
            "SELECT DISTINCT date FROM bronze.source_days WHERE split = ? AND date BETWEEN ? AND ? ORDER BY date",
            [split, SETTINGS.start_date, SETTINGS.end_date],
        ).fetchall()]
    except duckdb.CatalogException as err:
        raise dg.Failure("bronze.source_days is missing, so the train and dev days are unknown: materialise the daily "
                         f"assets first, for example {materialize_command(DAILY_ASSETS, [SETTINGS.start_date, SETTINGS.end_date])}") from err


def _days(conn, location: str) -> tuple[list, list]:
    train, dev = _split_days(conn, "train"), _split_days(conn, "dev")
    if not train or not dev:
        raise dg.Failure(
            f"The evaluation trains on the train split's days and scores the dev split's, but the raw MIND files hold "
            f"{'no train' if not train else 'train'} and {'no dev' if not dev else 'dev'} impressions between "
            f"{SETTINGS.start_date} and {SETTINGS.end_date}. Configure a MIND folder with both splits."
        )
    require_written(conn, "silver", "cross_features", train + dev, location=location)
    return train, dev


def _in(days: list) -> str:
    return f"date IN ({', '.join(repr(str(d)) for d in days)})"


def _wide_rows(stored: str, days: list) -> str:
    """silver.training_examples' rows of `stored` (cross-feature rows of `days`), with the user and news
    features of those days only: DuckDB does not carry a filter on the view's date across its left
    joins, so through the view every day's features would be hashed."""
    return wide_view_sql(stored, f"(SELECT * FROM features.user_features WHERE {_in(days)})",
                         f"(SELECT * FROM features.news_features WHERE {_in(days)})")


@dg.asset(
    code_version="1",
    key=EVALUATION,
    group_name="gold",
    kinds={"duckdb", "scikitlearn"},
    deps=[SILVER],
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def ranker_evaluation(context: dg.AssetExecutionContext, database: Database) -> pl.DataFrame:
    """Trains a gradient-boosted ranker on silver's train days and reports group AUC, MRR and nDCG@5/10
    on the dev day, beside a popularity-only baseline, so the UI shows whether a feature change helped.
    Deterministic: a fixed sample of train impressions and fixed seeds."""
    started = time.perf_counter()
    with database.connect() as conn:
        train_days, dev_days = _days(conn, database.location())
        features = feature_columns(conn.sql("SELECT * FROM silver.training_examples LIMIT 0").pl().schema)
        columns = ", ".join(["split", "impression_id", "position", "clicked", *features])
        # The sampled impressions' rows are picked before the user and news features are joined on (sorting
        # the wide rows of every train day spilled past the free disk at MIND-large shape).
        train = conn.sql(
            f"""WITH chosen AS (
                    SELECT * FROM (SELECT DISTINCT split, impression_id FROM silver.cross_features
                                   WHERE split = 'train' AND {_in(train_days)})
                    ORDER BY hash(impression_id, {SEED}), impression_id LIMIT {MAX_TRAIN_IMPRESSIONS}),
                picked AS (SELECT * FROM silver.cross_features SEMI JOIN chosen USING (split, impression_id)
                           WHERE split = 'train' AND {_in(train_days)})
                SELECT {columns} FROM ({_wide_rows("picked", train_days)})
                ORDER BY split, impression_id, position"""
        ).pl()
        features, never_present = split_features(train, features)
        context.log.info(f"training on {train.height} rows of {train.n_unique(['split', 'impression_id'])} train impressions, "
                         f"{len(features)} features" + (f"; left out, missing on every train row: {', '.join(never_present)}"
                                                        if never_present else ""))
        model = fit_ranker(train, features)
        trained = time.perf_counter()
        dev_rows = f"(SELECT * FROM silver.cross_features WHERE split = 'dev' AND {_in(dev_days)})"
        dev = conn.sql(f"SELECT {columns} FROM ({_wide_rows(dev_rows, dev_days)})")
        scored = []
        for batch in dev.to_arrow_reader(SCORE_BATCH_ROWS):
            rows = pl.from_arrow(batch)
            scored.append(rows.select("split", "impression_id", "position", "clicked", POPULARITY)
                          .with_columns(scores(model, rows, features)))
    scored = pl.concat(scored)
    results = {
        "ranker (gradient-boosted, all features)": summary(scored),
        f"popularity ({POPULARITY})": summary(scored.with_columns(pl.col(POPULARITY).cast(pl.Float64).alias("score"))),
    }
    table = pl.DataFrame([{"model": name, **values} for name, values in results.items()])
    ranker, popularity = results.values()
    context.add_output_metadata({
        "evaluation": evaluation_markdown(ranker, popularity),
        **{f"ranker_{m}": round(ranker[m], 6) for m in METRICS},
        **{f"popularity_{m}": round(popularity[m], 6) for m in METRICS},
        "group_auc_lift_over_popularity": round(ranker["group_auc"] - popularity["group_auc"], 6),
        "train_days": ", ".join(map(str, train_days)),
        "dev_days": ", ".join(map(str, dev_days)),
        "train_rows": train.height,
        "train_impressions": train.n_unique(["split", "impression_id"]),
        "dev_impressions_evaluated": ranker["impressions"],
        "features": len(features),
        "features_missing_on_every_train_row": ", ".join(never_present) or "none",
        "train_seconds": round(trained - started, 2),
        "seconds": round(time.perf_counter() - started, 2),
        "process_peak_rss_mib": peak_rss_mib(),
    })
    context.log.info(f"dev group AUC: ranker {ranker['group_auc']:.4f}, popularity {popularity['group_auc']:.4f}")
    return table


def evaluation_markdown(ranker: dict, popularity: dict) -> dg.MarkdownMetadataValue:
    """The two models side by side, a metric per row: four narrow columns read whole in the UI's
    metadata panel, where a model per row (its name and six columns) was cut on a laptop screen."""
    lines = ["| metric | ranker | popularity | lift |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {m} | {ranker[m]:.4f} | {popularity[m]:.4f} | {ranker[m] - popularity[m]:+.4f} |" for m in METRICS]
    lines.append(f"| impressions | {ranker['impressions']} | {popularity['impressions']} | |")
    return dg.MetadataValue.md("\n".join(lines))


@dg.multi_asset_check(specs=[
    dg.AssetCheckSpec("metrics_in_range", asset=EVALUATION, blocking=True,
                      description="Both models were scored on dev impressions, every metric within [0, 1]."),
    dg.AssetCheckSpec("ranker_beats_popularity", asset=EVALUATION,
                      description="The ranker's dev group AUC is above the popularity baseline's (a warning: a feature "
                                  "change that loses to popularity needs a look)."),
])
def evaluation_checks(database: Database) -> Iterator[dg.AssetCheckResult]:
    """Both checks in one step, so a run reports them on one line (as the other assets' checks)."""
    with database.connect() as conn:
        rows, impressions, out_of_range = conn.execute(
            f"SELECT count(*), min(impressions), count(*) FILTER (WHERE NOT ({' AND '.join(f'{m} BETWEEN 0 AND 1' for m in METRICS)})) "
            "FROM gold.ranker_evaluation"
        ).fetchone()
        ranker, popularity = (value for (value,) in conn.execute(
            "SELECT group_auc FROM gold.ranker_evaluation ORDER BY model LIKE 'popularity%'").fetchall())
    yield dg.AssetCheckResult(check_name="metrics_in_range", passed=rows == 2 and (impressions or 0) > 0 and out_of_range == 0,
                              metadata={"models": rows, "dev_impressions": impressions or 0, "out_of_range_rows": out_of_range})
    yield dg.AssetCheckResult(check_name="ranker_beats_popularity", passed=ranker > popularity,
                              severity=dg.AssetCheckSeverity.WARN,
                              metadata={"ranker_group_auc": ranker, "popularity_group_auc": popularity,
                                        "lift": ranker - popularity})


gold_checks = [evaluation_checks]
