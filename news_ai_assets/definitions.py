"""The Dagster code location: `dagster dev` and `dagster asset materialize -m news_ai_assets.definitions`."""

import dagster as dg

from news_ai_assets.assets import bronze, features, silver
from news_ai_assets.resources import EmbeddingModel, MindSource
from news_ai_assets.settings import SETTINGS, daily_partitions
from news_ai_assets.storage import DuckDBDatabase, DuckDBPolarsIOManager

all_assets = dg.load_assets_from_modules([bronze, features, silver])
all_checks = [*features.feature_checks, *silver.silver_checks]

mind_features_job = dg.define_asset_job(
    "mind_features_job",
    selection=dg.AssetSelection.all(),
    partitions_def=daily_partitions,
    description="Every asset of the graph for the selected day(s).",
)

# Daily at 03:00 for the day that just ended (the latest complete partition).
daily_schedule = dg.build_schedule_from_partitioned_job(mind_features_job, hour_of_day=3)

defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[mind_features_job],
    schedules=[daily_schedule],
    resources={
        "io_manager": DuckDBPolarsIOManager(database=str(SETTINGS.duckdb_path)),
        "duckdb_database": DuckDBDatabase(database=str(SETTINGS.duckdb_path)),
        "embedding_model": EmbeddingModel(
            device=SETTINGS.embedding_device,
            backend=SETTINGS.embedding_backend,
            precision=SETTINGS.embedding_precision,
        ),
        "mind": MindSource(
            mind_dir=str(SETTINGS.mind_dir) if SETTINGS.mind_dir else None,
            sample_dir=str(SETTINGS.sample_dir),
        ),
    },
    # One process per run: no lock fights between steps, and the embedding model loads once.
    executor=dg.in_process_executor,
)
