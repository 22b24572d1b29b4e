"""Configuration read from NEWS_AI_* environment variables (see README, "Configuration").

Every setting is checked for type and range when the definitions load, with a message naming
the variable, so a bad value stops `dagster dev` and the CLI before any run starts.
"""

import datetime as dt
import math
import os
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb

from news_ai_assets.compute.encoder import BACKENDS, DEVICES, PRECISIONS
from news_ai_assets.storage.duckdb_file import NotADuckDBFileError, check_database_file

DEFAULT_START_DATE = "2019-11-09"
DEFAULT_END_DATE = "2019-11-22"
EARLIEST_DATE, LATEST_DATE = dt.date(1970, 1, 1), dt.date(2099, 12, 31)
MAX_LOOKBACK_DAYS = 365
MAX_HISTORY_SIZE = 10_000


class SettingError(ValueError):
    """An environment variable holds a value the pipeline can't use."""


STORAGES = ("duckdb", "delta")


@dataclass(frozen=True)
class Settings:
    mind_dir: str | None  # a folder (absolute path) or s3://BUCKET[/PREFIX]
    mind_mirror: Path  # where raw files in object storage are mirrored (mind/object_store.py)
    storage: str  # duckdb: one file; delta: Delta tables under delta_uri
    duckdb_path: Path
    duckdb_memory_limit: str  # DuckDB's memory_limit while a run holds the file
    delta_uri: str
    start_date: dt.date
    end_date: dt.date  # inclusive: the last partition
    embedding_device: str
    embedding_backend: str
    embedding_precision: str
    embedding_batch_size: int | None  # None: the device's default
    lookback_days: int
    history_size: int  # K: the most recent history articles silver/impressions keeps
    max_missing_cross_share: float

    @property
    def sample_dir(self) -> Path:
        """Generated sample data lives beside the DuckDB file, so one directory holds all we write."""
        return self.duckdb_path.parent / "sample_mind"

    @property
    def backfill_policy(self) -> dg.BackfillPolicy:
        """A DuckDB file has one writer: a backfill is one run that goes day by day. Delta tables
        take many writers: one run per partition, launched side by side (dagster.yaml caps how many)."""
        return dg.BackfillPolicy.multi_run(1) if self.storage == "delta" else dg.BackfillPolicy.single_run()


def _date(name: str, default: str) -> dt.date:
    raw = os.environ.get(name, default)
    try:
        value = dt.date.fromisoformat(raw)
    except ValueError as err:
        raise SettingError(f"{name}={raw!r} is not a date in YYYY-MM-DD form") from err
    if not EARLIEST_DATE <= value <= LATEST_DATE:
        raise SettingError(f"{name}={raw!r} is outside {EARLIEST_DATE} .. {LATEST_DATE}")
    return value


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, default)
    if value not in choices:
        raise SettingError(f"{name}={value!r} is not one of {', '.join(choices)}")
    return value


def _whole_number(name: str, default: str, low: int, high: int) -> int:
    raw = os.environ.get(name, default)
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise SettingError(f"{name}={raw!r} must be a whole number from {low} to {high}")
    return int(raw)


def _share(name: str, default: str) -> float:
    raw = os.environ.get(name, default)
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:  # NaN fails too
        raise SettingError(f"{name}={raw!r} must be a number from 0 to 1")
    return value


def _memory_limit(name: str, default: str) -> str:
    """A size DuckDB's memory_limit accepts ('1GB', '512MiB', '25%'), checked by DuckDB itself."""
    raw = os.environ.get(name) or default
    try:
        duckdb.connect(config={"memory_limit": raw}).close()
    except (duckdb.Error, ValueError) as err:
        raise SettingError(f"{name}={raw!r} is not a memory size DuckDB accepts (e.g. 1GB, 512MB, 25%): {err}") from err
    return raw


def _delta_uri() -> str:
    raw = os.environ.get("NEWS_AI_DELTA_URI") or "data/delta"
    scheme = raw.split("://", 1)[0] if "://" in raw else None
    if scheme not in (None, "file", "s3") or (scheme == "s3" and not raw[len("s3://"):].strip("/")):
        raise SettingError(f"NEWS_AI_DELTA_URI={raw!r} must be a folder, file://PATH or s3://BUCKET[/PREFIX]")
    if scheme and any(mark in raw for mark in "#?"):  # delta-rs would cut the path there: every table in one place
        raise SettingError(f"NEWS_AI_DELTA_URI={raw!r}: in a URI, '#' and '?' end the path; give such a folder as a plain path")
    # a local folder as an absolute path; file:// and s3:// URIs as given
    return raw.rstrip("/") if "://" in raw else str(Path(raw).expanduser().absolute())


def _mind_dir() -> str | None:
    raw = os.environ.get("NEWS_AI_MIND_DIR") or None
    if raw is None:
        return None
    if "://" not in raw:
        return str(Path(raw).expanduser().absolute())
    if not raw.startswith("s3://") or not raw[len("s3://"):].strip("/"):
        raise SettingError(f"NEWS_AI_MIND_DIR={raw!r} must be a folder or s3://BUCKET[/PREFIX]")
    return raw.rstrip("/")


def load_settings() -> Settings:
    start, end = _date("NEWS_AI_START_DATE", DEFAULT_START_DATE), _date("NEWS_AI_END_DATE", DEFAULT_END_DATE)
    if end < start:
        raise SettingError(f"NEWS_AI_END_DATE {end} is before NEWS_AI_START_DATE {start}")
    duckdb_path = Path(os.environ.get("NEWS_AI_DUCKDB_PATH") or "data/news_ai.duckdb").expanduser().absolute()
    try:
        check_database_file(duckdb_path)
    except NotADuckDBFileError as err:
        raise SettingError(f"NEWS_AI_DUCKDB_PATH: {err}") from err
    return Settings(
        mind_dir=_mind_dir(),
        mind_mirror=Path(os.environ.get("NEWS_AI_MIND_MIRROR") or duckdb_path.parent / "mind_mirror").expanduser().absolute(),
        storage=_choice("NEWS_AI_STORAGE", "duckdb", STORAGES),
        duckdb_path=duckdb_path,
        duckdb_memory_limit=_memory_limit("NEWS_AI_DUCKDB_MEMORY_LIMIT", "1GB"),
        delta_uri=_delta_uri(),
        start_date=start,
        end_date=end,
        embedding_device=_choice("NEWS_AI_EMBEDDING_DEVICE", "auto", DEVICES),
        embedding_backend=_choice("NEWS_AI_EMBEDDING_BACKEND", "torch", BACKENDS),
        embedding_precision=_choice("NEWS_AI_EMBEDDING_PRECISION", "fp32", PRECISIONS),
        embedding_batch_size=(
            _whole_number("NEWS_AI_EMBEDDING_BATCH_SIZE", "", 1, 65_536) if os.environ.get("NEWS_AI_EMBEDDING_BATCH_SIZE") else None
        ),
        lookback_days=_whole_number("NEWS_AI_LOOKBACK_DAYS", "7", 1, MAX_LOOKBACK_DAYS),
        history_size=_whole_number("NEWS_AI_HISTORY_SIZE", "50", 1, MAX_HISTORY_SIZE),
        max_missing_cross_share=_share("NEWS_AI_MAX_MISSING_CROSS_SHARE", "0.05"),
    )


SETTINGS = load_settings()

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=SETTINGS.start_date.isoformat(),
    end_date=(SETTINGS.end_date + dt.timedelta(days=1)).isoformat(),
)
