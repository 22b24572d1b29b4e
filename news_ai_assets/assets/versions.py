"""Per-partition data versions, so that "Unsynced" in the UI means that a partition's input data or
its asset's code changed, and nothing else.

Dagster marks a partition stale when a partition it reads got another data version since it was
materialised, or when its asset's `code_version` changed. Left to itself it gives each
materialisation a new version (nothing tells it that a re-run from the same files wrote the same
rows), so after any re-run everything downstream read as stale. Each partition's version is:

- bronze/behaviors[D]: the content of day D's lines in every split's behaviors.tsv (staging
  records it per file and day; the raw-file sensor computes it the same way from the files);
- bronze/news[D]: what it wrote: each article of the day with the MD5 of its news.tsv line;
- every other asset: its code version, the configuration its rows depend on (the embedding
  model; for entity features, the vectors of the entities the day's articles name), and the
  current versions of exactly the upstream partitions that D reads through its partition mappings.
  The computations are deterministic functions of those (the reference tests hold them to it), so
  equal inputs give equal rows.

A range run computes them per partition, as a one-day run would (dagster_internals records them
on each partition's own materialisation).
"""

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping

import dagster as dg
import polars as pl

from news_ai_assets.assets.common import latest_materializations, partition_days
from news_ai_assets.dagster_internals import DATA_VERSION_TAG, set_partition_data_versions
from news_ai_assets.settings import daily_partitions


def digest(parts: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def behaviors_day_version(contents: Mapping[str, str]) -> str:
    """bronze/behaviors[D] from the content of D's lines in each split's file (split -> content)."""
    return digest(["bronze/behaviors", *(f"{split}={content}" for split, content in sorted(contents.items()))])


def rows_version(rows: pl.DataFrame, columns: list[str]) -> str:
    """The version of rows that `columns` identify completely, whatever their order."""
    lines = rows.select(pl.concat_str([pl.col(c).cast(pl.String) for c in columns], separator="\t")).to_series()
    return digest(["rows", *sorted(lines.to_list())])


def upstream_days(mapping: dg.PartitionMapping | None, day: dt.date) -> list[dt.date]:
    """The days of a daily upstream asset that partition `day` reads: the mapping's window, or the
    day itself, less days outside the partitions (the lookback before the first one)."""
    start, end = (mapping.start_offset, mapping.end_offset) if isinstance(mapping, dg.TimeWindowPartitionMapping) else (0, 0)
    days = [day + dt.timedelta(days=offset) for offset in range(start, end + 1)]
    return [d for d in days if daily_partitions.has_partition_key(d.isoformat())]


def latest_data_versions(instance: dg.DagsterInstance, key: dg.AssetKey, days: Iterable[dt.date]) -> dict[dt.date, str]:
    """The data version of each day's latest materialisation of `key` ("none" for a day never materialised)."""
    days = list(days)
    latest = latest_materializations(instance, key, [day.isoformat() for day in days])
    tags = {day: (latest[day.isoformat()].asset_materialization.tags or {}) if day.isoformat() in latest else {} for day in days}
    return {day: tags[day].get(DATA_VERSION_TAG, "none") for day in days}


def record_versions(context: dg.AssetExecutionContext, versions: Mapping[dt.date, str]) -> None:
    """The data version of each partition of the run, for its materialisation."""
    set_partition_data_versions(context, {day.isoformat(): version for day, version in versions.items()})


def record_input_versions(context: dg.AssetExecutionContext, configuration: Mapping[str, object] | None = None,
                          days: list[dt.date] | None = None) -> None:
    """Each partition's (or each of `days`') version from the asset's code version, `configuration`
    and the current versions of the upstream partitions it reads."""
    assets_def, days = context.assets_def, days or partition_days(context)
    inputs = sorted(assets_def.keys_by_input_name.values(), key=lambda k: k.to_user_string())
    mappings = {key: assets_def.get_partition_mapping(key) for key in inputs}
    wanted = {key: sorted({d for day in days for d in upstream_days(mappings[key], day)}) for key in inputs}
    current = {key: latest_data_versions(context.instance, key, wanted[key]) for key in inputs}
    head = [f"code={assets_def.code_versions_by_key[context.asset_key]}",
            *(f"{name}={value}" for name, value in sorted((configuration or {}).items()))]
    record_versions(context, {
        day: digest([*head, *(f"{key.to_user_string()}[{d}]={current[key][d]}"
                              for key in inputs for d in upstream_days(mappings[key], day))])
        for day in days
    })
