"""Configuration read from NEWS_AI_* environment variables (see README, "Configuration")."""

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

DEFAULT_START_DATE = "2019-11-09"
DEFAULT_END_DATE = "2019-11-22"


@dataclass(frozen=True)
class Settings:
    mind_dir: Path | None
    duckdb_path: Path
    start_date: dt.date
    end_date: dt.date  # inclusive: the last partition
    embedding_device: str
    embedding_backend: str
    embedding_precision: str
    lookback_days: int
    max_missing_cross_share: float

    @property
    def sample_dir(self) -> Path:
        """Generated sample data lives beside the DuckDB file, so one directory holds all we write."""
        return self.duckdb_path.parent / "sample_mind"


def _date(name: str, default: str) -> dt.date:
    raw = os.environ.get(name, default)
    try:
        return dt.date.fromisoformat(raw)
    except ValueError as err:
        raise ValueError(f"{name}={raw!r} is not a date in YYYY-MM-DD form") from err


def load_settings() -> Settings:
    mind_dir = os.environ.get("NEWS_AI_MIND_DIR") or None
    start, end = _date("NEWS_AI_START_DATE", DEFAULT_START_DATE), _date("NEWS_AI_END_DATE", DEFAULT_END_DATE)
    if end < start:
        raise ValueError(f"NEWS_AI_END_DATE {end} is before NEWS_AI_START_DATE {start}")
    lookback = os.environ.get("NEWS_AI_LOOKBACK_DAYS", "7")
    if not lookback.isdigit() or int(lookback) < 1:
        raise ValueError(f"NEWS_AI_LOOKBACK_DAYS={lookback!r} must be a positive whole number of days")
    max_missing = os.environ.get("NEWS_AI_MAX_MISSING_CROSS_SHARE", "0.05")
    try:
        max_missing_share = float(max_missing)
    except ValueError as err:
        raise ValueError(f"NEWS_AI_MAX_MISSING_CROSS_SHARE={max_missing!r} must be a number in [0, 1]") from err
    return Settings(
        mind_dir=Path(mind_dir).expanduser().resolve() if mind_dir else None,
        duckdb_path=Path(os.environ.get("NEWS_AI_DUCKDB_PATH", "data/news_ai.duckdb")).expanduser().resolve(),
        start_date=start,
        end_date=end,
        embedding_device=os.environ.get("NEWS_AI_EMBEDDING_DEVICE", "auto"),
        embedding_backend=os.environ.get("NEWS_AI_EMBEDDING_BACKEND", "torch"),
        embedding_precision=os.environ.get("NEWS_AI_EMBEDDING_PRECISION", "fp32"),
        lookback_days=int(lookback),
        max_missing_cross_share=max_missing_share,
    )


SETTINGS = load_settings()

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=SETTINGS.start_date.isoformat(),
    end_date=(SETTINGS.end_date + dt.timedelta(days=1)).isoformat(),
)
