"""Raw files are parsed once per file version; a day's bronze partition is a filter of the staged rows."""

import datetime as dt
import os
import shutil

import polars as pl

from news_ai_assets_tests.pipeline import materialize, read_table

BRONZE = ["bronze/behaviors", "bronze/news"]


def _parsed_in_run(result, node: str = "bronze__behaviors") -> int:
    return result.asset_materializations_for_node(node)[0].metadata["source_files_parsed_in_this_run"].value


def test_each_file_version_is_parsed_once(tmp_path, tiny_mind):
    mind, db = tmp_path / "mind", tmp_path / "s.duckdb"
    shutil.copytree(tiny_mind, mind)
    assert _parsed_in_run(materialize(db, mind, "2019-11-12", selection=BRONZE)) == 3
    assert _parsed_in_run(materialize(db, mind, "2019-11-13", selection=BRONZE)) == 0  # another day: a filter

    train = mind / "MINDsample_train" / "behaviors.tsv"
    os.utime(train, ns=(train.stat().st_atime_ns, train.stat().st_mtime_ns + 10**9))  # touched, same content
    assert _parsed_in_run(materialize(db, mind, "2019-11-13", selection=BRONZE)) == 0

    with open(train, "ab") as handle:  # changed: re-staged, and its rejects are the new file's
        handle.write(b"99999\tU9\t11/13/2019 9:00:00 AM\tN1\tN2-1\n999\tU1\tyesterday\t\tN1-1\n")
    result = materialize(db, mind, "2019-11-13", selection=BRONZE)
    assert _parsed_in_run(result) == 1
    behaviors = read_table(db, "bronze.behaviors")
    assert behaviors.filter(pl.col("impression_id") == 99999).get_column("date").to_list() == [dt.date(2019, 11, 13)]
    rejects = read_table(db, "bronze.rejects")
    assert rejects.select("source_file", "reason").rows() == [(str(train), "time: not a time M/D/YYYY h:mm:ss AM|PM")]
    assert result.asset_materializations_for_node("bronze__behaviors")[0].metadata["source_rejected_lines"].value == 1
    staged = read_table(db, "bronze.staged_files").filter(pl.col("kind") == "behaviors").sort("split")
    assert staged.get_column("split").to_list() == ["dev", "test", "train"] and staged.get_column("rejects").sum() == 1


def test_a_day_equals_the_same_day_parsed_alone(tmp_path, tiny_mind):
    """Staged once for the whole range, or once per run of one day: the same rows."""
    ranged, single = tmp_path / "r.duckdb", tmp_path / "s.duckdb"
    materialize(ranged, tiny_mind, "2019-11-14", "2019-11-16", selection=BRONZE)
    materialize(single, tiny_mind, "2019-11-15", selection=BRONZE)
    for table, key in (("bronze.behaviors", ["split", "impression_id"]), ("bronze.news", ["news_id"])):
        day = read_table(ranged, table).filter(pl.col("date") == pl.date(2019, 11, 15)).sort(key)
        assert day.equals(read_table(single, table).sort(key)), table
