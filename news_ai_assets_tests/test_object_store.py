"""Raw MIND in object storage (NEWS_AI_MIND_DIR=s3://bucket/prefix), on the S3 emulator: each object is
read once per version into a local mirror and staged like a local file; what is missing is named."""

import datetime as dt
import hashlib
import json
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor

import boto3
import dagster as dg
import polars as pl
import pytest

from benchmarks.servers import upload_splits
from news_ai_assets.automation import mind_files_sensor
from news_ai_assets.mind.object_store import VERSION_SUFFIX, S3Mirror
from news_ai_assets.mind.reader import MindInputError
from news_ai_assets.resources import MindSource
from news_ai_assets.settings import daily_partitions
from news_ai_assets_tests.pipeline import change_one_line, materialize, read_table

BRONZE = ["bronze/behaviors", "bronze/news"]


def _delete(uri: str, folder: str) -> None:
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    client = boto3.client("s3")
    for item in client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/{folder}/")["Contents"]:
        client.delete_object(Bucket=bucket, Key=item["Key"])


class _Downloads(logging.Handler):
    """The log's download lines."""

    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        if record.getMessage().startswith("downloading"):
            self.lines.append(record.getMessage())


def _sync(mirror: S3Mirror) -> list[str]:
    log, downloads = logging.getLogger(f"mirror-test-{id(mirror)}"), _Downloads()  # one per sync: syncs run at once
    log.addHandler(downloads)
    log.setLevel(logging.INFO)
    try:
        mirror.sync(log)
    finally:
        log.removeHandler(downloads)
    return downloads.lines


def test_objects_are_mirrored_once_per_version(tmp_path, tiny_mind, s3_bucket):
    uri = f"{s3_bucket}/mind"
    upload_splits(tiny_mind, uri)
    mirror = S3Mirror(uri, tmp_path / "mirror")
    files = sorted(tiny_mind.glob("MIND*/*"))  # behaviors, news and entity vectors of three splits
    assert len(_sync(mirror)) == len(files) == 9
    for path in files:
        local = tmp_path / "mirror" / path.parent.name / path.name
        assert local.read_bytes() == path.read_bytes()
        record = json.loads(local.with_name(local.name + VERSION_SUFFIX).read_text())
        assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert record["uri"] == f"{uri}/{path.parent.name}/{path.name}"
    assert _sync(mirror) == []  # nothing changed: nothing read

    news = tiny_mind / "MINDsample_dev" / "news.tsv"
    replaced = tmp_path / "news.tsv"
    replaced.write_bytes(news.read_bytes().replace(b"\tsports\t", b"\tnews\t", 1))
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    boto3.client("s3").upload_file(str(replaced), bucket, f"{prefix}/MINDsample_dev/news.tsv")
    lines = _sync(mirror)
    assert len(lines) == 1 and f"{uri}/MINDsample_dev/news.tsv" in lines[0]
    assert (tmp_path / "mirror" / "MINDsample_dev" / "news.tsv").read_bytes() == replaced.read_bytes()

    (tmp_path / "mirror" / "notes.txt").write_text("not the mirror's")  # what the mirror did not write stays
    (tmp_path / "mirror" / "MINDsample_dev" / "README").write_text("not the mirror's")
    _delete(uri, "MINDsample_test")  # the mirror holds what the bucket lists, no more of its own
    assert _sync(mirror) == [] and sorted(p.name for p in (tmp_path / "mirror").iterdir()) == [
        "MINDsample_dev", "MINDsample_train", "notes.txt"]
    assert (tmp_path / "mirror" / "MINDsample_dev" / "README").exists()


def test_runs_syncing_at_once_download_each_object_once(tmp_path, tiny_mind, s3_bucket):
    """Runs starting together (a backfill's first wave) take turns on each object: one downloads it,
    the others find it, and no file is replaced under a run reading it."""
    uri = f"{s3_bucket}/mind"
    upload_splits(tiny_mind, uri)
    with ThreadPoolExecutor(4) as pool:
        downloads = list(pool.map(_sync, [S3Mirror(uri, tmp_path / "mirror") for _ in range(4)]))
    assert sorted(line.split()[1] for lines in downloads for line in lines) == sorted(
        f"{uri}/{path.parent.name}/{path.name}" for path in tiny_mind.glob("MIND*/*"))


def test_what_is_missing_or_replaced_is_named(tmp_path, tiny_mind, s3_bucket):
    with pytest.raises(MindInputError, match="s3://nowhere/mind cannot be listed"):
        S3Mirror("s3://nowhere/mind", tmp_path / "m0").sync()
    with pytest.raises(MindInputError, match=f"{s3_bucket}/empty holds no MIND split folder"):
        S3Mirror(f"{s3_bucket}/empty", tmp_path / "m1").sync()

    uri = f"{s3_bucket}/mind"
    upload_splits(tiny_mind, uri)
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    client = boto3.client("s3")
    client.delete_object(Bucket=bucket, Key=f"{prefix}/MINDsample_dev/news.tsv")
    with pytest.raises(MindInputError, match=f"MIND split folder {uri}/MINDsample_dev has no news.tsv"):
        S3Mirror(uri, tmp_path / "m2").sync()
    assert not (tmp_path / "m2").exists(), "nothing is mirrored before every split is known to be whole"

    # Replaced between the listing and the read: the download is refused, never a mix of two versions.
    mirror = S3Mirror(uri, tmp_path / "m3")
    client.upload_file(str(tiny_mind / "MINDsample_dev" / "news.tsv"), bucket, f"{prefix}/MINDsample_dev/news.tsv")
    version = mirror.listing(client)["MINDsample_train"]["behaviors.tsv"]
    client.put_object(Bucket=bucket, Key=version.key, Body=b"replaced")
    target = tmp_path / "m3" / "behaviors.tsv"
    target.parent.mkdir()
    with pytest.raises(MindInputError, match="replaced while being read"):
        mirror._mirror(client, version, target, None)
    assert sorted(p.name for p in target.parent.iterdir()) == [".behaviors.tsv.lock"], "no partial file is left"


def _parsed_in_run(result) -> int:
    return result.asset_materializations_for_node("bronze__behaviors")[0].metadata["source_files_parsed_in_this_run"].value


def test_bronze_from_object_storage_equals_bronze_from_a_folder(tmp_path, tiny_mind, s3_bucket):
    """The same rows and rejects as from the local folder; an object replaced between runs is staged
    again, an unchanged one is not; a split removed from the bucket stops the run before it writes."""
    mind = tmp_path / "mind"
    shutil.copytree(tiny_mind, mind)
    train = mind / "MINDsample_train" / "behaviors.tsv"
    with open(train, "ab") as handle:  # one malformed line: rejects are accounted for as for a file
        handle.write(b"999\tU1\tyesterday\t\tN1-1\n")
    uri = f"{s3_bucket}/mind"
    upload_splits(mind, uri)
    local, remote = tmp_path / "local" / "l.duckdb", tmp_path / "remote" / "r.duckdb"
    materialize(local, mind, "2019-11-12", selection=BRONZE)
    assert _parsed_in_run(materialize(remote, uri, "2019-11-12", selection=BRONZE)) == 3
    for table, key in (("bronze.behaviors", ["split", "impression_id"]), ("bronze.news", ["news_id"])):
        assert read_table(remote, table).sort(key).equals(read_table(local, table).sort(key)), table
    rejects = read_table(remote, "bronze.rejects")
    assert rejects.select("line", "reason").rows() == [(rejects.get_column("line")[0], "time: not a time M/D/YYYY h:mm:ss AM|PM")]
    assert rejects.get_column("source_file").to_list() == [str(remote.parent / "mind_mirror" / "MINDsample_train" / "behaviors.tsv")]

    assert _parsed_in_run(materialize(remote, uri, "2019-11-13", selection=BRONZE)) == 0  # nothing changed

    with open(train, "ab") as handle:
        handle.write(b"99999\tU9\t11/13/2019 9:00:00 AM\tN1\tN2-1\n")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    boto3.client("s3").upload_file(str(train), bucket, f"{prefix}/MINDsample_train/behaviors.tsv")
    assert _parsed_in_run(materialize(remote, uri, "2019-11-13", selection=BRONZE)) == 1
    day = read_table(remote, "bronze.behaviors").filter(pl.col("date") == pl.date(2019, 11, 13))
    assert 99999 in day.get_column("impression_id").to_list()

    before = read_table(remote, "bronze.behaviors")
    _delete(uri, "MINDsample_test")
    result = materialize(remote, uri, "2019-11-13", selection=BRONZE, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "no longer has the split(s) test" in str(failure.event_specific_data.error)
    assert read_table(remote, "bronze.behaviors").equals(before), "the failed run wrote nothing"


def test_the_raw_file_sensor_watches_the_bucket(tmp_path, tiny_mind, s3_bucket):
    """A line changed in an object requests its day, as a line changed in a local file does."""
    mind, uri, instance = tmp_path / "mind", f"{s3_bucket}/mind", dg.DagsterInstance.ephemeral()
    shutil.copytree(tiny_mind, mind)
    upload_splits(mind, uri)
    days = daily_partitions.get_partition_keys()
    materialize(tmp_path / "db.duckdb", uri, days[0], days[-1], selection=["bronze/behaviors"], instance=instance)

    def tick(cursor: str | None):
        source = MindSource(mind_dir=uri, mirror_dir=str(tmp_path / "sensor_mirror"), sample_dir=str(tmp_path / "unused"))
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"mind": source}) as context:
            return mind_files_sensor(context)

    first = tick(None)
    assert first.run_requests == []
    change_one_line(mind, dt.date(2019, 11, 10))
    upload_splits(mind, uri)  # every object written again: only the one whose content changed counts
    result = tick(first.cursor)
    assert [r.partition_key for r in result.run_requests] == ["2019-11-10"]
    assert "MINDsample_train/behaviors.tsv" in result.run_requests[0].tags["news_ai/changed_files"]


def test_a_run_checks_the_listing_at_its_start_and_downloads_only_in_the_steps_that_read(tmp_path, tiny_mind, s3_bucket):
    """The resource's start checks what the bucket lists and downloads nothing: a run of steps that read no
    raw file (silver on a fresh machine) must not copy the raw files first."""
    uri = f"{s3_bucket}/mind"
    upload_splits(tiny_mind, uri)
    source = MindSource(mind_dir=uri, mirror_dir=str(tmp_path / "mirror"), sample_dir=str(tmp_path / "unused"))
    source.setup_for_execution(dg.build_init_resource_context())
    assert not (tmp_path / "mirror").exists()
    assert [split.split for split in source.split_dirs(logging.getLogger("test"))] == ["train", "dev", "test"]
    missing = MindSource(mind_dir=f"{s3_bucket}/nothing", mirror_dir=str(tmp_path / "m2"), sample_dir=str(tmp_path / "u"))
    with pytest.raises(MindInputError, match=f"{s3_bucket}/nothing holds no MIND split folder"):
        missing.setup_for_execution(dg.build_init_resource_context())
