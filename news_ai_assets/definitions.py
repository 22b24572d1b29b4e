"""The Dagster code location: `dagster dev` and `dagster asset materialize -m news_ai_assets.definitions`."""

import datetime as dt

import dagster as dg

from news_ai_assets.assets import bronze, features, silver
from news_ai_assets.resources import EmbeddingModel, MindSource
from news_ai_assets.settings import SETTINGS, daily_partitions
from news_ai_assets.storage import DuckDBDatabase, DuckDBPolarsIOManager

all_assets = dg.load_assets_from_modules([bronze, features, silver])
all_checks = [*bronze.bronze_checks, *features.feature_checks, *silver.silver_checks]

mind_features_job = dg.define_asset_job(
    "mind_features_job",
    selection=dg.AssetSelection.all(),
    description="Every asset of the graph for the selected day(s).",
)


@dg.schedule(job=mind_features_job, cron_schedule="0 3 * * *", execution_timezone="UTC")
def mind_features_job_schedule(context: dg.ScheduleEvaluationContext):
    """Daily at 03:00 UTC, the day that just ended (the latest complete partition)."""
    day = (context.scheduled_execution_time - dt.timedelta(days=1)).date().isoformat()
    if not daily_partitions.has_partition_key(day):
        return dg.SkipReason(
            f"{day} is not a partition ({SETTINGS.start_date} .. {SETTINGS.end_date}); set NEWS_AI_START_DATE / "
            "NEWS_AI_END_DATE to a range that includes it"
        )
    return dg.RunRequest(partition_key=day)


defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[mind_features_job],
    schedules=[mind_features_job_schedule],
    resources={
        "io_manager": DuckDBPolarsIOManager(database=str(SETTINGS.duckdb_path)),
        "duckdb_database": DuckDBDatabase(database=str(SETTINGS.duckdb_path)),
        "embedding_model": EmbeddingModel(
            device=SETTINGS.embedding_device,
            backend=SETTINGS.embedding_backend,
            precision=SETTINGS.embedding_precision,
            batch_size=SETTINGS.embedding_batch_size,
        ),
        "mind": MindSource(
            mind_dir=str(SETTINGS.mind_dir) if SETTINGS.mind_dir else None,
            sample_dir=str(SETTINGS.sample_dir),
        ),
    },
    # One process per run: the embedding model loads once, and the run holds the DuckDB file throughout.
    executor=dg.in_process_executor,
)
