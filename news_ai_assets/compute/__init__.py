"""Pure feature logic over Polars/DuckDB: no Dagster here, so it can be tested and reused directly."""
