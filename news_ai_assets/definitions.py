"""The Dagster code location: `dg dev -w workspace.yaml` and `dg launch -m news_ai_assets.definitions`."""

import datetime as dt

import dagster as dg

from news_ai_assets.assets import bronze, entities, features, gold, impressions, silver
from news_ai_assets.assets.common import DAILY_ASSETS
from news_ai_assets.automation import carry_changes_downstream, impressions_on, mind_files_sensor, run_time_limit
from news_ai_assets.resources import EmbeddingModel, MindSource
from news_ai_assets.run_console import LOGGER_CONFIG, RUN_LOGGERS
from news_ai_assets.settings import SETTINGS, daily_partitions
from news_ai_assets.storage.database import Database
from news_ai_assets.storage.duckdb_file import DuckDBDatabase, DuckDBPolarsIOManager

all_assets = dg.load_assets_from_modules([bronze, features, entities, silver, impressions, gold])
all_checks = [*bronze.bronze_checks, *features.feature_checks, *entities.entity_checks, *silver.silver_checks,
              *impressions.impression_checks, *gold.gold_checks]

mind_features_job = dg.define_asset_job(
    "mind_features_job",
    selection=dg.AssetSelection.from_string(DAILY_ASSETS),
    description="Every daily asset of the graph for the selected day(s) (the evaluation, which reads the train and "
                "dev days, is materialised apart).",
    config=LOGGER_CONFIG,
)
all_assets_job = dg.define_asset_job(
    "all_assets_job",
    selection=dg.AssetSelection.all(),
    description="Every asset, the evaluation included: over the default range, what the demo runs.",
    config=LOGGER_CONFIG,
)


@dg.schedule(job=mind_features_job, cron_schedule="0 3 * * *", execution_timezone="UTC")
def mind_features_job_schedule(context: dg.ScheduleEvaluationContext, mind: MindSource):
    """Daily at 03:00 UTC, the day that just ended (the latest complete partition), with a time
    limit from its impressions (automation.run_time_limit)."""
    day = (context.scheduled_execution_time - dt.timedelta(days=1)).date()
    if not daily_partitions.has_partition_key(day.isoformat()):
        return dg.SkipReason(
            f"{day} is not a partition ({SETTINGS.start_date} .. {SETTINGS.end_date}); set NEWS_AI_START_DATE / "
            "NEWS_AI_END_DATE to a range that includes it"
        )
    folder = mind.watched_folder()
    return dg.RunRequest(partition_key=day.isoformat(),
                         tags=run_time_limit({day: impressions_on(folder, day) if folder else 0}))


def storage_resources() -> dict[str, dg.ConfigurableResource]:
    """The IO manager and the database for NEWS_AI_STORAGE: one DuckDB file, or Delta tables."""
    if SETTINGS.storage == "delta":
        # Imported here: dagster_deltalake and deltalake take 0.3 s to import, in every run's process.
        from dagster_deltalake import LocalConfig, S3Config

        from news_ai_assets.storage.delta_tables import DeltaDatabase, DeltaPolarsIOManager

        location = (S3Config() if SETTINGS.delta_uri.startswith("s3://") else LocalConfig())
        return {"io_manager": DeltaPolarsIOManager(root_uri=SETTINGS.delta_uri, storage_options=location),
                "database": DeltaDatabase(uri=SETTINGS.delta_uri)}
    duckdb = {"database": str(SETTINGS.duckdb_path), "memory_limit": SETTINGS.duckdb_memory_limit}
    return {"io_manager": DuckDBPolarsIOManager(**duckdb), "database": DuckDBDatabase(**duckdb)}


def database() -> Database:
    """The configured storage, for programs beside the pipeline (summary, tests, benchmarks)."""
    return storage_resources()["database"]


defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[mind_features_job, all_assets_job],
    schedules=[mind_features_job_schedule],
    sensors=[mind_files_sensor, carry_changes_downstream],
    resources={
        **storage_resources(),
        "embedding_model": EmbeddingModel(
            device=SETTINGS.embedding_device,
            backend=SETTINGS.embedding_backend,
            precision=SETTINGS.embedding_precision,
            batch_size=SETTINGS.embedding_batch_size,
        ),
        "mind": MindSource(
            mind_dir=SETTINGS.mind_dir,
            mirror_dir=str(SETTINGS.mind_mirror),
            sample_dir=str(SETTINGS.sample_dir),
        ),
    },
    # A line per step in the terminal, the full event log in a file (run_console.py).
    loggers=RUN_LOGGERS,
    # One process per run: the embedding model loads once, and a run on DuckDB holds the file throughout.
    executor=dg.in_process_executor,
)
