import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from news_ai_assets.compute import reference
from news_ai_assets.mind.reader import discover_splits
from news_ai_assets_tests import pipeline
from news_ai_assets_tests.compare import assert_rows_match
from news_ai_assets_tests.pipeline import read_table

BRONZE = ["bronze/behaviors", "bronze/news", "features/interactions"]
TABLES = ["bronze.behaviors", "bronze.news", "features.interactions"]


def materialize(database: Path, mind_dir: Path, partition: str, last: str | None = None):
    return pipeline.materialize(database, mind_dir, partition, last, selection=BRONZE)


def test_one_partition_matches_the_reference(tmp_path, tiny_mind):
    db = tmp_path / "p.duckdb"
    result = materialize(db, tiny_mind, "2019-11-12")
    expected = [
        r
        for s in discover_splits(tiny_mind)
        for r in reference.parse_behaviors_file(s.path / "behaviors.tsv", s.split)
        if r["date"] == dt.date(2019, 11, 12)
    ]
    assert_rows_match(read_table(db, "bronze.behaviors"), expected, key=["split", "impression_id"])
    assert_rows_match(
        read_table(db, "features.interactions"), reference.interactions(expected),
        key=["split", "impression_id", "news_id"],
    )
    news = read_table(db, "bronze.news")
    referenced = {c["news_id"] for r in expected for c in r["impressions"]} | {n for r in expected for n in r["history"]}
    assert set(news.get_column("news_id")) == referenced  # the generator writes every referenced article
    metadata = result.asset_materializations_for_node("bronze__behaviors")[0].metadata
    assert metadata["dagster/row_count"].value == len(expected)
    assert metadata["source_rejected_lines"].value == 0 and "preview" in metadata


def test_rematerializing_gives_identical_rows(tmp_path, tiny_mind):
    db = tmp_path / "p.duckdb"
    materialize(db, tiny_mind, "2019-11-12")
    first = {t: read_table(db, t) for t in TABLES}
    materialize(db, tiny_mind, "2019-11-12")
    for table in TABLES:
        assert read_table(db, table).equals(first[table]), table


def test_a_range_run_equals_day_by_day_runs(tmp_path, tiny_mind):
    by_range, by_day = tmp_path / "range.duckdb", tmp_path / "days.duckdb"
    materialize(by_range, tiny_mind, "2019-11-14", last="2019-11-17")
    for day in ["2019-11-14", "2019-11-15", "2019-11-16", "2019-11-17"]:
        materialize(by_day, tiny_mind, day)
    for table in TABLES:
        ranged = read_table(by_range, table).sort(pl.all())
        assert ranged.equals(read_table(by_day, table).sort(pl.all())), table
        assert ranged.get_column("date").n_unique() == 4
    assert set(read_table(by_range, "bronze.behaviors").get_column("split")) == {"train", "dev", "test"}


def test_real_rows_count_missing_articles(tmp_path, real_mind):
    db = tmp_path / "p.duckdb"
    result = materialize(db, real_mind, "2019-11-11")
    metadata = result.asset_materializations_for_node("bronze__news")[0].metadata
    missing = metadata["referenced_ids_missing_from_news_tsv"].value
    news = read_table(db, "bronze.news")
    behaviors = read_table(db, "bronze.behaviors")
    referenced = behaviors.select(pl.col("history").list.concat(
        pl.col("impressions").list.eval(pl.element().struct.field("news_id")))).explode("history").unique()
    assert news.height > 0 and missing > 0 and news.height + missing == referenced.height
    assert read_table(db, "features.interactions").height == behaviors.get_column("impressions_count").sum()


def test_rejects_are_stored_and_replaced_per_file(tmp_path, tiny_mind):
    mind = tmp_path / "mind"
    shutil.copytree(tiny_mind, mind)
    with open(mind / "MINDsample_train" / "behaviors.tsv", "ab") as handle:
        handle.write(b"999\tU1\tyesterday\t\tN1-1\n")
    db = tmp_path / "p.duckdb"
    for _ in range(2):
        result = materialize(db, mind, "2019-11-10")
    rejects = read_table(db, "bronze.rejects")
    assert rejects.get_column("reason").to_list() == ["time: not a time M/D/YYYY h:mm:ss AM|PM"]
    metadata = result.asset_materializations_for_node("bronze__behaviors")[0].metadata
    assert metadata["source_rejected_lines"].value == 1
    assert "| time | 1 |" in metadata["source_rejects_by_field"].value


def test_definitions_load():
    from news_ai_assets.definitions import defs

    dg.Definitions.validate_loadable(defs)
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"bronze/behaviors", "bronze/news", "features/interactions"} <= keys
    job = defs.resolve_job_def("mind_features_job")
    assert job.partitions_def.get_partition_keys()[0] == "2019-11-09"
    assert job.partitions_def.get_partition_keys()[-1] == "2019-11-22"


@pytest.mark.slow
def test_cli_materializes_one_partition_and_writes_nowhere_else(tmp_path, tiny_mind):
    """The CLI path users run, with an empty HOME and none of the suite's overrides: nothing (model
    caches, Dagster) writes outside the DuckDB file's folder and DAGSTER_HOME but the converted OpenVINO
    model, in its documented cache (docs/operations.md)."""
    home, work, dagster_home = tmp_path / "home", tmp_path / "work", tmp_path / "dagster_home"
    for folder in (home, work, dagster_home):
        folder.mkdir()
    shutil.copy(Path(__file__).resolve().parents[1] / "dagster.yaml", dagster_home)  # as scripts/demo.sh does
    env = {**os.environ, "HOME": str(home), "DAGSTER_HOME": str(dagster_home), "NEWS_AI_DUCKDB_PATH": str(work / "cli.duckdb"),
           "NEWS_AI_MIND_DIR": str(tiny_mind), "NEWS_AI_EMBEDDING_BACKEND": "openvino"}
    for variable in ("XDG_CACHE_HOME", "HF_HOME", "TRANSFORMERS_CACHE", "NEWS_AI_OPENVINO_CACHE"):
        env.pop(variable, None)
    completed = subprocess.run(
        [Path(sys.executable).parent / "dg", "launch", "-m", "news_ai_assets.definitions",
         "--assets", "bronze/behaviors,bronze/news,features/text_embeddings", "--partition", "2019-11-12"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    warnings = [line for line in completed.stderr.splitlines() if "Warning" in line]
    assert not warnings, warnings
    days = read_table(work / "cli.duckdb", "bronze.behaviors").get_column("date").unique().to_list()
    assert days == [dt.date(2019, 11, 12)]
    cache = home / ".cache" / "news_ai_assets" / "openvino"
    written = [p for p in home.rglob("*") if p.is_file()]
    assert written and all(p.is_relative_to(cache) for p in written), written
    assert {p.name for p in work.iterdir()} <= {"cli.duckdb", "cli.duckdb.wal", "cli.duckdb.lock"}


def test_paths_with_quotes_never_reach_sql_as_text(tmp_path, tiny_mind):
    """Configuration is passed to DuckDB as parameters, so a hostile folder name is just a name."""
    odd = tmp_path / "it's \"MIND\"; DROP TABLE x; --"
    shutil.copytree(tiny_mind, odd / "data")
    behaviors = odd / "data" / "MINDsample_train" / "behaviors.tsv"
    with open(behaviors, "ab") as handle:
        handle.write(b"999\tU1\tyesterday\t\tN1-1\n")
    db = odd / "o'db.duckdb"
    for _ in range(2):  # the second run replaces the file's rejects, matching on its odd name
        materialize(db, odd / "data", "2019-11-12")
    rejects = read_table(db, "bronze.rejects")
    assert rejects.get_column("source_file").to_list() == [str(behaviors)]
    assert read_table(db, "bronze.behaviors").height > 0
