""""Unsynced" is true: a partition is stale exactly when data it reads or its asset's code changed.

Stale status is read as the UI reads it (Dagster's stale-status resolver), after range runs and
one-day runs on the tiny sample.
"""

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import pytest

from news_ai_assets.dagster_internals import DATA_VERSION_TAG
from news_ai_assets.definitions import all_assets
from news_ai_assets_tests.pipeline import PARTITIONED_ASSETS, change_one_line, materialize, stale_partitions

FIRST, LAST = dt.date(2019, 11, 9), dt.date(2019, 11, 13)
DAYS = [FIRST + dt.timedelta(days=i) for i in range((LAST - FIRST).days + 1)]
CHANGED = dt.date(2019, 11, 10)
LOOKBACK = 7


def versions(instance: dg.DagsterInstance, asset: str) -> dict[str, str]:
    key = dg.AssetKey.from_user_string(asset)
    return {day.isoformat(): instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day.isoformat()]), limit=1
    ).records[0].asset_materialization.tags[DATA_VERSION_TAG] for day in DAYS}


def _graph(folder: Path, tiny_mind: Path) -> tuple[Path, Path, dg.DagsterInstance]:
    """A copy of the tiny MIND folder and every daily asset of DAYS materialised from it as one range run."""
    mind = folder / "mind"
    shutil.copytree(tiny_mind, mind)
    database, instance = folder / "graph.duckdb", dg.DagsterInstance.ephemeral()
    materialize(database, mind, FIRST.isoformat(), LAST.isoformat(), instance=instance)
    return database, mind, instance


@pytest.fixture(scope="module")
def graph(tmp_path_factory, tiny_mind) -> tuple[Path, Path, dg.DagsterInstance]:
    """For tests that leave the files as they are."""
    return _graph(tmp_path_factory.mktemp("versions"), tiny_mind)



def test_a_range_run_gives_each_day_its_own_version_and_unchanged_reruns_leave_everything_fresh(graph):
    database, mind, instance = graph
    assert stale_partitions(instance, DAYS) == {}
    in_range = {asset: versions(instance, asset) for asset in PARTITIONED_ASSETS}
    assert all(len(set(by_day.values())) == len(DAYS) for by_day in in_range.values()), in_range

    # One day of bronze alone, then two downstream assets as a shorter range, from the same files.
    materialize(database, mind, CHANGED.isoformat(), selection=["bronze/behaviors"], instance=instance)
    materialize(database, mind, "2019-11-11", "2019-11-12", selection=["features/interactions", "features/user_features"],
                instance=instance)
    assert stale_partitions(instance, DAYS) == {}
    assert {asset: versions(instance, asset) for asset in PARTITIONED_ASSETS} == in_range


def _on(assets: list[str], days: list[dt.date]) -> set[tuple[str, str]]:
    return {(asset, day.isoformat()) for asset in assets for day in days if day in DAYS}


def test_one_changed_raw_line_makes_stale_exactly_the_partitions_that_read_its_day(tmp_path, tiny_mind):
    """Dagster marks the direct readers of a changed partition; what reads those follows once they
    are materialised with new versions, and stops where a re-materialised partition kept its version."""
    database, mind, instance = _graph(tmp_path, tiny_mind)
    window = [CHANGED + dt.timedelta(days=i) for i in range(LOOKBACK + 1)]  # the days whose lookback reads D
    change_one_line(mind, CHANGED)  # a user id: D's impressions change, the articles they show do not
    before, before_news = versions(instance, "bronze/behaviors"), versions(instance, "bronze/news")
    materialize(database, mind, CHANGED.isoformat(), selection=["bronze/behaviors"], instance=instance)
    after = versions(instance, "bronze/behaviors")
    assert {day for day in before if before[day] != after[day]} == {CHANGED.isoformat()}

    stale = stale_partitions(instance, DAYS)
    readers_of_behaviors = (_on(["bronze/news", "features/interactions", "silver/impressions"], [CHANGED])
                            | _on(["features/user_features", "silver/training_examples"], window))
    assert set(stale) == readers_of_behaviors, sorted(set(stale) ^ readers_of_behaviors)
    assert all("new dependency data version: bronze/behaviors[2019-11-10]" in " ".join(causes) for causes in stale.values())

    # bronze/news[D] is written again with the same articles, so its version and its readers stay;
    # interactions[D] changed, so candidate_stats[D] (and silver of D, D+1) now read a new version.
    materialize(database, mind, CHANGED.isoformat(), selection=["bronze/news", "features/interactions"], instance=instance)
    assert versions(instance, "bronze/news")[CHANGED.isoformat()] == before_news[CHANGED.isoformat()]
    stale = stale_partitions(instance, DAYS)
    expected = (readers_of_behaviors - _on(["bronze/news", "features/interactions"], [CHANGED])
                | _on(["features/candidate_stats"], [CHANGED]))
    assert set(stale) == expected, sorted(set(stale) ^ expected)
    # What follows until nothing is stale, as the automation runs it: test_keeping_current.py.


def test_a_changed_code_version_makes_that_asset_stale(graph):
    _, _, instance = graph
    changed = [a.map_asset_specs(lambda spec: spec.replace_attributes(code_version="2"))
               if a.key == dg.AssetKey(["features", "interactions"]) else a for a in all_assets]
    stale = stale_partitions(instance, DAYS, changed)
    assert {asset for asset, _ in stale} >= {"features/interactions"}
    assert all("code version" in " ".join(stale[("features/interactions", day.isoformat())]) for day in DAYS)
    assert not any(asset.startswith("bronze/") for asset, _ in stale)
