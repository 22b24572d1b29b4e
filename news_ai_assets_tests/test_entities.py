"""Entity vectors and entity features: the reader's accounting of every line, the features against
the reference, and a split without entity_embedding.vec (the real-row subset has none)."""

import datetime as dt
import shutil

import polars as pl
import pytest

from news_ai_assets.compute import reference
from news_ai_assets.compute.entity_features import entity_features
from news_ai_assets.mind.entities import DIMENSION, VectorFile, read_vectors
from news_ai_assets.storage.duckdb_file import connect
from news_ai_assets_tests.compare import assert_rows_match
from news_ai_assets_tests.pipeline import assert_checks_passed, failure_messages, materialize, read_table


def _line(wikidata_id: str, value: float, end: str = "\n") -> bytes:
    return (wikidata_id + "".join(f"\t{value + k / 1000:.6f}" for k in range(DIMENSION)) + end).encode()


VALUE = "values: a value is not a decimal number finite as a 32-bit float"


def test_every_line_is_a_vector_a_counted_reject_or_blank(tmp_path):
    good = _line("Q1", 0.1) + _line("Q2", 0.2, "\t\n") + _line("Q3", 0.3, "\r\n") + b"\n  \n"
    duplicate = _line("Q1", 0.1)  # the same line again: a counted repeat
    bad = {
        _line("Q4", 0.4).replace(b"\t0.400000", b"", 1): f"line: expected an id and {DIMENSION} values",
        _line("X5", 0.5): "id: not Q followed by digits",
        _line("Q6", 0.6).replace(b"0.601000", b"nan"): VALUE,
        _line("Q7", 0.7).replace(b"0.701000", b"1e400"): VALUE,
        _line("Q8", 0.8).replace(b"0.801000", b"abc"): VALUE,
        _line("Q11", 0.8).replace(b"0.801000", b"0x10"): VALUE,  # Polars would read it
        b"Q9\t\xff\xfe\n": "line: invalid UTF-8",
    }
    conflicting = _line("Q10", 0.1) + _line("Q10", 0.2)
    path = tmp_path / "entity_embedding.vec"
    path.write_bytes(good + duplicate + b"".join(bad) + conflicting)
    read = read_vectors([VectorFile("train", path, "entity")])
    assert read.vectors.get_column("wikidata_id").to_list() == ["Q1", "Q2", "Q3"]
    assert read.vectors.get_column("vector").to_list()[1][:2] == pytest.approx([0.2, 0.201])
    rejects = read.rejects.sort("line")
    assert rejects.get_column("reason").to_list() == [
        "line: the same id and vector as an earlier line", *bad.values(), *["id: conflicting lines share one id"] * 2]
    assert rejects.get_column("line").to_list() == list(range(6, 16))  # 3 good lines and 2 blank first
    assert read.lines == 3 + 1 + len(bad) + 2  # non-blank: 3 good, the repeat, 7 malformed, 2 conflicting
    assert "\\xff\\xfe" in rejects.filter(pl.col("reason") == "line: invalid UTF-8").item(0, "raw_line")


def test_an_id_in_several_splits_is_kept_once_and_disagreement_is_counted(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    (tmp_path / "a" / "e.vec").write_bytes(_line("Q1", 0.1) + _line("Q2", 0.2))
    (tmp_path / "b" / "e.vec").write_bytes(_line("Q1", 0.1) + _line("Q2", 0.9) + _line("Q3", 0.3))
    read = read_vectors([VectorFile("train", tmp_path / "a" / "e.vec", "entity"),
                         VectorFile("dev", tmp_path / "b" / "e.vec", "entity")])
    assert read.vectors.get_column("wikidata_id").to_list() == ["Q1", "Q2", "Q3"]
    assert read.vectors.get_column("vector").to_list()[1][0] == pytest.approx(0.2)  # the earliest split's
    assert read.conflicting_ids == 1 and read.rejects.height == 0


def test_entity_features_match_the_reference_on_the_generated_sample(tmp_path, tiny_mind):
    """With a third of the vectors removed, so that articles have entities with and without one."""
    train = tiny_mind / "MINDsample_train"
    vectors = reference.read_vector_file(train / "entity_embedding.vec")
    kept = {k: v for i, (k, v) in enumerate(sorted(vectors.items())) if i % 3}
    partial = tmp_path / "entity_embedding.vec"
    partial.write_text("".join(k + "".join(f"\t{x:.6f}" for x in v) + "\n" for k, v in kept.items()))
    articles = reference.parse_news_file(train / "news.tsv")
    entities = pl.List(pl.Struct({"wikidata_id": pl.String}))
    frame = pl.DataFrame(
        [{"article_key": k, **{f: [{"wikidata_id": e["wikidata_id"]} for e in a[f]] for f in ("title_entities", "abstract_entities")}}
         for k, a in articles.items()],
        schema={"article_key": pl.String, "title_entities": entities, "abstract_entities": entities},
    )
    got = entity_features(frame, read_vectors([VectorFile("train", partial, "entity")]).vectors, "source")
    expected = [{"article_key": k, **reference.entity_features(a, kept)} for k, a in articles.items()]
    assert_rows_match(got, expected, key=["article_key"])
    share = got.get_column("entity_vector_share")
    assert share.drop_nulls().min() < 1 and share.drop_nulls().max() > 0 and share.null_count() > 0
    assert got.get_column("abstract_entity_embedding").drop_nulls().len() > 0


def test_without_entity_files_the_features_say_so_and_invent_nothing(tmp_path, real_mind):
    db = tmp_path / "r.duckdb"
    selection = ["bronze/behaviors", "bronze/news", "features/entity_features"]
    result = materialize(db, real_mind, "2019-11-09", "2019-11-10", selection=selection)
    features = read_table(db, "features.entity_features")
    with_entities = features.filter(pl.col("entity_count") > 0)
    assert with_entities.height > 0 and features.get_column("entity_embedding").null_count() == features.height
    assert with_entities.get_column("entity_vector_share").unique().to_list() == [0.0]
    events = result.asset_materializations_for_node("features__entity_features")
    assert "entity_embedding.vec" in events[0].metadata["source_entity_files_missing"].value
    per_day = {e.partition: e.metadata["entities_without_vector"].value for e in events}
    for day, missing in per_day.items():
        on_day = with_entities.filter(pl.col("date") == dt.date.fromisoformat(day))
        assert missing == on_day.get_column("entity_count").sum() > 0
    assert_checks_passed(result, selection, days=2)


def test_an_empty_vector_file_gives_no_vectors_and_no_rejects(tmp_path):
    path = tmp_path / "entity_embedding.vec"
    path.write_bytes(b"")
    read = read_vectors([VectorFile("train", path, "entity")])
    assert (read.vectors.height, read.rejects.height, read.lines) == (0, 0, 0)


@pytest.mark.parametrize("unusable", ["dangling link", "folder"])
def test_a_vector_file_that_cannot_be_read_stops_the_run_before_it_writes(tmp_path, tiny_mind, unusable):
    """A dangling link (an unmounted disk) or a folder where entity_embedding.vec should be is not
    an absent file: taking it for one would leave the split's entities without vectors, quietly.
    The MIND folder is named like a glob pattern, and is read as itself."""
    mind = tmp_path / "mind[v1]"
    shutil.copytree(tiny_mind, mind)
    bad = mind / "MINDsample_dev" / "entity_embedding.vec"
    bad.unlink()
    if unusable == "folder":
        bad.mkdir()
    else:
        bad.symlink_to(tmp_path / "unmounted" / "entity_embedding.vec")
    db = tmp_path / "e.duckdb"
    result = materialize(db, mind, "2019-11-09", selection=["bronze/behaviors", "bronze/news", "features/entity_features"],
                         raise_on_error=False)
    message = " ".join(failure_messages(result))
    assert not result.success and str(bad) in message and ("does not exist" in message if unusable == "dangling link" else "not a regular file" in message)
    with connect(db, read_only=True) as conn:
        tables = {t for (t,) in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert not tables & {"entity_feature_days", "article_entity_features", "entity_features"}
