"""The raw-file sensor turns a new or changed MIND file into runs for exactly the days it changed."""

import datetime as dt
import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from news_ai_assets.automation import mind_files_sensor
from news_ai_assets.mind.reader import MindInputError
from news_ai_assets.resources import MindSource
from news_ai_assets.settings import daily_partitions
from news_ai_assets_tests.pipeline import change_one_line, materialize

DAYS = daily_partitions.get_partition_keys()


def _watched(tmp_path: Path, tiny_mind: Path, last: str) -> tuple[Path, dg.DagsterInstance]:
    """A copy of the tiny MIND folder with bronze/behaviors materialised from it up to `last`."""
    mind = tmp_path / "mind"
    shutil.copytree(tiny_mind, mind)
    instance = dg.DagsterInstance.ephemeral()
    materialize(tmp_path / "db.duckdb", mind, DAYS[0], last, selection=["bronze/behaviors"], instance=instance)
    return mind, instance


@pytest.fixture
def watched(tmp_path, tiny_mind) -> tuple[Path, dg.DagsterInstance]:
    return _watched(tmp_path, tiny_mind, DAYS[-1])


def tick(mind: Path, instance: dg.DagsterInstance, cursor: str | None = None):
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={
        "mind": MindSource(mind_dir=str(mind), sample_dir=str(mind / "unused"))
    }) as context:
        return mind_files_sensor(context), context


def test_the_first_tick_requests_the_days_never_materialised_and_leaves_the_rest(tmp_path, tiny_mind):
    mind, instance = _watched(tmp_path, tiny_mind, "2019-11-13")
    result, _ = tick(mind, instance)
    requested = sorted(r.partition_key for r in result.run_requests)
    assert requested == [day for day in DAYS if day > "2019-11-13"]
    assert all(r.asset_selection == [dg.AssetKey(["bronze", "behaviors"])] for r in result.run_requests)
    again, _ = tick(mind, instance, result.cursor)
    assert again.run_requests == [] and "changed" in again.skip_reason.skip_message


def test_a_changed_line_requests_its_day_once_with_a_time_limit(watched):
    mind, instance = watched
    cursor = tick(mind, instance)[0].cursor
    change_one_line(mind, dt.date(2019, 11, 10))
    result, _ = tick(mind, instance, cursor)
    assert [r.partition_key for r in result.run_requests] == ["2019-11-10"]
    request = result.run_requests[0]
    assert request.run_key.startswith("bronze/behaviors 2019-11-10 ")
    assert "MINDsample_train/behaviors.tsv" in request.tags["news_ai/changed_files"]
    assert int(request.tags["dagster/max_runtime"]) >= 600 and "impressions" in request.tags["news_ai/max_runtime_basis"]
    # Touched but not changed: nothing new.
    path = mind / "MINDsample_train" / "behaviors.tsv"
    path.touch()
    assert tick(mind, instance, result.cursor)[0].run_requests == []


def test_a_day_outside_the_partitions_is_reported(watched):
    mind, instance = watched
    cursor = tick(mind, instance)[0].cursor
    path = mind / "MINDsample_test" / "behaviors.tsv"
    line = path.read_text().splitlines()[0].split("\t")
    line[0], line[2] = "999999", "11/30/2019 9:00:00 AM"
    path.write_text(path.read_text() + "\t".join(line) + "\n")
    result, _ = tick(mind, instance, cursor)
    assert result.run_requests == []
    assert "outside the partitions: 2019-11-30" in result.skip_reason.skip_message


def test_a_changed_news_file_requests_bronze_news_on_every_day(watched):
    mind, instance = watched
    cursor = tick(mind, instance)[0].cursor
    path = mind / "MINDsample_dev" / "news.tsv"
    lines = path.read_text().splitlines(keepends=True)
    fields = lines[0].split("\t")
    fields[3] = fields[3] + " (corrected)"
    path.write_text("".join(["\t".join(fields), *lines[1:]]))
    result, _ = tick(mind, instance, cursor)
    [request] = result.run_requests
    assert request.asset_selection == [dg.AssetKey(["bronze", "news"])]
    assert (request.tags["dagster/asset_partition_range_start"], request.tags["dagster/asset_partition_range_end"]) == (DAYS[0], DAYS[-1])
    assert json.loads(result.cursor)[str(path)]["sha256"] != json.loads(cursor)[str(path)]["sha256"]


def test_a_split_folder_gone_fails_the_tick_naming_it(watched):
    mind, instance = watched
    cursor = tick(mind, instance)[0].cursor
    shutil.rmtree(mind / "MINDsample_dev")
    with pytest.raises(dg.Failure, match="MINDsample_dev/behaviors.tsv.*no longer exist"):
        tick(mind, instance, cursor)


def test_a_folder_that_is_gone_or_a_file_behind_a_dangling_link_fails_the_tick_naming_it(watched, tmp_path):
    mind, instance = watched
    with pytest.raises(dg.DagsterResourceFunctionError) as gone:  # MindSource refuses it as the tick starts
        tick(tmp_path / "no such folder", instance)
    assert isinstance(gone.value.__cause__, MindInputError) and "no such folder does not exist" in str(gone.value.__cause__)
    cursor = tick(mind, instance)[0].cursor
    for name in ("behaviors.tsv", "entity_embedding.vec"):
        path = mind / "MINDsample_dev" / name
        kept = path.with_suffix(".kept")
        path.rename(kept)
        path.symlink_to(tmp_path / "unmounted" / name)
        with pytest.raises(MindInputError, match=f"MINDsample_dev.*{name}"):
            tick(mind, instance, cursor)
        path.unlink()
        kept.rename(path)
    assert tick(mind, instance, cursor)[0].run_requests == []


def test_nothing_to_watch_is_said_when_no_folder_is_set_and_no_sample_was_generated(tmp_path):
    with dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(),
                                 resources={"mind": MindSource(sample_dir=str(tmp_path / "sample"))}) as context:
        result = mind_files_sensor(context)
    assert "NEWS_AI_MIND_DIR is not set" in result.skip_message


def test_a_folder_with_glob_characters_in_its_name_is_read_as_named(tmp_path, tiny_mind):
    odd = tmp_path / "mind [v1]*"
    shutil.copytree(tiny_mind, odd)
    instance = dg.DagsterInstance.ephemeral()
    materialize(tmp_path / "db.duckdb", odd, DAYS[0], DAYS[-1], selection=["bronze/behaviors"], instance=instance)
    assert tick(odd, instance)[0].run_requests == []
