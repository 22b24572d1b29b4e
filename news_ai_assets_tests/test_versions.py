""""Unsynced" is true: a partition is stale exactly when data it reads or its asset's code changed.

Stale status is read as the UI reads it (Dagster's stale-status resolver), after range runs and
one-day runs on the tiny sample.
"""

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from news_ai_assets.assets.versions import upstream_days
from news_ai_assets.dagster_internals import DATA_VERSION_TAG
from news_ai_assets.definitions import all_assets
from news_ai_assets_tests.pipeline import PARTITIONED_ASSETS, change_one_line, materialize, read_table, stale_partitions
from news_ai_assets_tests.test_mind_files_sensor import tick

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


def _readers(upstream: str, days: set[str]) -> set[tuple[str, str]]:
    """The partitions of DAYS that read `upstream` on one of `days`, through each asset's partition mapping."""
    key = dg.AssetKey.from_user_string(upstream)
    return {(asset.key.to_user_string(), day.isoformat()) for asset in all_assets
            if isinstance(asset, dg.AssetsDefinition) and key in asset.keys_by_input_name.values() for day in DAYS
            if {d.isoformat() for d in upstream_days(asset.get_partition_mapping(key), day)} & days}


def _run_what_the_sensor_requests(graph: tuple[Path, Path, dg.DagsterInstance], asset: str, change) -> tuple[set, set]:
    """`change(mind)` applied to the graph's files, then the run the raw-file sensor requests (over DAYS:
    the days the graph holds); the days whose `asset` version changed, and the partitions that show
    Unsynced after it."""
    database, mind, instance = graph
    cursor = tick(mind, instance)[0].cursor
    changed_file = change(mind)
    [request] = tick(mind, instance, cursor)[0].run_requests
    assert request.asset_selection == [dg.AssetKey.from_user_string(asset)]
    assert request.tags["news_ai/changed_files"].endswith(changed_file)
    before = versions(instance, asset)
    materialize(database, mind, FIRST.isoformat(), LAST.isoformat(), selection=[asset], instance=instance)
    after = versions(instance, asset)
    return {day for day in before if before[day] != after[day]}, set(stale_partitions(instance, DAYS))


def _rewrite(paths, first_field: str, rewrite) -> None:
    """Each line of the files whose first field is `first_field` through `rewrite` (fields -> fields)."""
    for path in paths:
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join("\t".join(rewrite(line.rstrip("\n").split("\t"))) + "\n"
                                if line.split("\t")[0] == first_field else line for line in lines))


def _days_holding(database: Path) -> pl.DataFrame:
    """news_id -> the days of DAYS whose bronze/news holds it, for articles held on some days only."""
    by_article = read_table(database, "bronze.news").group_by("news_id").agg(pl.col("date").cast(pl.String).sort())
    return by_article.filter(pl.col("date").list.len() < len(DAYS)).sort("news_id")


def test_a_changed_article_gives_new_versions_to_exactly_the_days_that_hold_it(tmp_path, tiny_mind):
    """README, Keeping current: a changed news.tsv re-derives bronze/news for every day, and only the
    days whose articles changed get new versions; what reads the others stays fresh."""
    graph = _graph(tmp_path, tiny_mind)
    news_id, days = _days_holding(graph[0]).row(0)

    def correct_its_title(mind: Path) -> str:
        _rewrite(mind.glob("*/news.tsv"), news_id, lambda fields: [*fields[:3], fields[3] + " (corrected)", *fields[4:]])
        return "news.tsv"

    changed, stale = _run_what_the_sensor_requests(graph, "bronze/news", correct_its_title)
    assert changed == set(days) and 0 < len(changed) < len(DAYS), (changed, days)
    assert stale == _readers("bronze/news", changed), sorted(stale ^ _readers("bronze/news", changed))


def test_a_changed_entity_vector_gives_new_versions_to_exactly_the_days_whose_articles_name_it(tmp_path, tiny_mind):
    """Likewise for a line of entity_embedding.vec: entity features of every day are re-derived, and only
    the days whose articles name that entity get new versions. Every entity of the tiny sample is named
    every day, so one article held on some days only first names an entity of its own (Q999999)."""
    mind, news_only = tmp_path / "own_entity", tmp_path / "news.duckdb"
    shutil.copytree(tiny_mind, mind)
    materialize(news_only, mind, FIRST.isoformat(), LAST.isoformat(), selection=["bronze/behaviors", "bronze/news"])
    news_id, days = _days_holding(news_only).row(0)
    entity = ('{"Label": "Own", "Type": "P", "WikidataId": "Q999999", "Confidence": 1.0, "OccurrenceOffsets": [0], '
              '"SurfaceForms": ["x"]}')
    _rewrite(mind.glob("*/news.tsv"), news_id, lambda fields: [*fields[:6], f"[{entity}]", *fields[7:]])
    with (mind / "MINDsample_train" / "entity_embedding.vec").open("a") as vectors:
        vectors.write("\t".join(["Q999999", *["0.1"] * 100]) + "\n")
    graph = _graph(tmp_path, mind)

    def change_its_vector(mind: Path) -> str:
        _rewrite(mind.glob("*/entity_embedding.vec"), "Q999999", lambda fields: [fields[0], "0.5", *fields[2:]])
        return "entity_embedding.vec"

    changed, stale = _run_what_the_sensor_requests(graph, "features/entity_features", change_its_vector)
    assert changed == set(days) and 0 < len(changed) < len(DAYS), (changed, days)
    assert stale == _readers("features/entity_features", changed), sorted(stale ^ _readers("features/entity_features", changed))


def test_a_changed_code_version_makes_that_asset_stale(graph):
    _, _, instance = graph
    changed = [a.map_asset_specs(lambda spec: spec.replace_attributes(code_version="2"))
               if a.key == dg.AssetKey(["features", "interactions"]) else a for a in all_assets]
    stale = stale_partitions(instance, DAYS, changed)
    assert {asset for asset, _ in stale} >= {"features/interactions"}
    assert all("code version" in " ".join(stale[("features/interactions", day.isoformat())]) for day in DAYS)
    assert not any(asset.startswith("bronze/") for asset, _ in stale)
