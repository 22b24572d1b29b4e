"""Storage: the `Database` seam (database.py) and its two sides, one DuckDB file (duckdb_file.py)
and Delta tables in a folder or bucket (delta_tables.py); the IO managers' partition handler, the
run lock, raw files staged once per version, and the day-by-day row containers assets hand over.
Assets import database.py, tables.py and staging.py only: which side is behind them is
configuration (definitions.py)."""
