"""gold/ranker_evaluation: MIND's metrics against a slow reference, and the asset as users run it."""

import math
import shutil

import numpy as np
import polars as pl
import pytest

from news_ai_assets import summary
from news_ai_assets.compute import reference
from news_ai_assets.compute.evaluation import (
    MAX_TRAIN_IMPRESSIONS, METRICS, fit_ranker, impression_metrics, scores, split_features,
)
from news_ai_assets.compute.evaluation import summary as summary_of
from news_ai_assets.storage.duckdb_file import DuckDBDatabase
from news_ai_assets_tests.pipeline import PARTITIONED_ASSETS, evaluate, failure_messages, materialize, read_table


def test_metrics_match_the_reference_with_ties_and_one_class_impressions():
    rng = np.random.default_rng(11)
    rows = []
    for impression in range(300):
        size = int(rng.integers(1, 25))
        clicked = rng.random(size) < rng.uniform(0, 0.5)
        scores = np.round(rng.random(size), int(rng.integers(0, 3)))  # few decimals: many equal scores
        rows += [{"split": "dev", "impression_id": impression, "position": p + 1, "clicked": bool(c), "score": float(s)}
                 for p, (c, s) in enumerate(zip(clicked, scores))]
    scored = pl.DataFrame(rows)
    got = impression_metrics(scored)
    expected = {}
    for impression, group in scored.group_by("impression_id"):
        values = reference.ranking_metrics(group.to_dicts())
        if values is not None:
            expected[impression[0]] = values
    assert sorted(got.get_column("impression_id").to_list()) == sorted(expected)
    assert 0 < len(expected) < 300  # some impressions have one class only and are left out
    for row in got.iter_rows(named=True):
        for metric in METRICS:
            assert row[metric] == pytest.approx(expected[row["impression_id"]][metric], abs=1e-6), (row, metric)


def test_the_averages_over_impressions_on_a_fixed_dataset():
    """Worked by hand: impression 1 ranks its click first of three, impression 2 last of four, 3 and 4
    have one class only and count nowhere. Each impression weighs the same, whatever its size."""
    rows = [(1, 1, True, 0.9), (1, 2, False, 0.5), (1, 3, False, 0.1),
            (2, 1, True, 0.2), (2, 2, False, 0.8), (2, 3, False, 0.4), (2, 4, False, 0.3),
            (3, 1, False, 0.7), (3, 2, False, 0.3),
            (4, 1, True, 0.6)]
    scored = pl.DataFrame(rows, schema=["impression_id", "position", "clicked", "score"], orient="row") \
        .with_columns(pl.lit("dev").alias("split"))
    ndcg = (1 + 1 / math.log2(5)) / 2  # the click at rank 4: gain 1 / log2(4 + 1), ideal 1
    assert summary_of(scored) == pytest.approx({"impressions": 2, "group_auc": (1 + 0) / 2, "mrr": (1 + 1 / 4) / 2,
                                                "ndcg_5": ndcg, "ndcg_10": ndcg}, abs=1e-12)


def reference_summary(rows: pl.DataFrame, score: pl.Series) -> dict:
    """The mean of MIND's metrics over the impressions that have both classes, one impression at a time."""
    by_impression: dict[tuple, list[dict]] = {}
    for row, value in zip(rows.iter_rows(named=True), score.to_list()):
        by_impression.setdefault((row["split"], row["impression_id"]), []).append({**row, "score": value})
    metrics = [m for m in map(reference.ranking_metrics, by_impression.values()) if m is not None]
    return {"impressions": len(metrics), **{name: sum(m[name] for m in metrics) / len(metrics) for name in METRICS}}


@pytest.fixture(scope="module")
def graph(tmp_path_factory, tiny_graph):
    """The partitioned graph for the train days and the dev day of the tiny sample (a copy to write gold to)."""
    db = tmp_path_factory.mktemp("gold") / "g.duckdb"
    shutil.copy(tiny_graph, db)
    return db


def test_a_feature_missing_on_every_train_row_is_left_out_and_named():
    # a range whose train days have no day before them: the window features have no value on any train row
    rng = np.random.default_rng(0)
    train = pl.DataFrame({"clicked": rng.random(300) < 0.3, "ctr": rng.random(300),
                          "behavior_count": pl.Series([None] * 300, dtype=pl.Int32), "gap": [None, *rng.random(299)]})
    features, missing = split_features(train, ["ctr", "behavior_count", "gap"])
    assert (features, missing) == (["ctr", "gap"], ["behavior_count"])
    assert scores(fit_ranker(train, features), train, features).is_between(0, 1).all()
    with pytest.raises(ValueError, match="no feature has a value on any of the 300 train rows"):
        fit_ranker(train, split_features(train, ["behavior_count"])[0])


def test_the_evaluation_reports_the_ranker_and_the_popularity_baseline(graph, tiny_mind):
    first = evaluate(graph, tiny_mind)
    table = read_table(graph, "gold.ranker_evaluation")
    assert table.get_column("model").to_list() == ["ranker (gradient-boosted, all features)", "popularity (candidate_ctr)"]
    assert table.select(pl.col(METRICS).is_between(0, 1).all()).row(0) == (True,) * len(METRICS)
    silver = read_table(graph, "silver.training_examples").filter(pl.col("split") == "dev")
    both_classes = silver.group_by("impression_id").agg(pl.col("clicked").n_unique() == 2).get_column("clicked").sum()
    metadata = first.asset_materializations_for_node("gold__ranker_evaluation")[0].metadata
    assert metadata["dev_impressions_evaluated"].value == both_classes == table.item(0, "impressions") > 0
    assert metadata["dev_days"].value == "2019-11-15" and metadata["train_days"].value.startswith("2019-11-09")
    group_auc = table.get_column("group_auc")
    assert f"| group_auc | {group_auc[0]:.4f} | {group_auc[1]:.4f} | {group_auc[0] - group_auc[1]:+.4f} |" in metadata["evaluation"].value
    assert metadata["ranker_group_auc"].value == pytest.approx(table.item(0, "group_auc"), abs=1e-6)
    evaluate(graph, tiny_mind)
    assert read_table(graph, "gold.ranker_evaluation").equals(table)  # deterministic, to the last bit
    assert summary.evaluation(DuckDBDatabase(database=str(graph))).equals(table)  # what the demo prints last


def test_the_evaluation_fails_naming_the_dev_day_it_lacks(tmp_path, tiny_mind):
    db = tmp_path / "g.duckdb"
    materialize(db, tiny_mind, "2019-11-09", "2019-11-14", selection=PARTITIONED_ASSETS)
    result = evaluate(db, tiny_mind, raise_on_error=False)
    assert not result.success
    assert any("has never been materialised" in m and "for 2019-11-15" in m for m in failure_messages(result))


def test_on_the_real_rows_without_a_dev_split_the_evaluation_says_so(tmp_path, real_mind):
    db = tmp_path / "r.duckdb"
    materialize(db, real_mind, "2019-11-09", "2019-11-10", raise_on_error=False)  # its silver share check fails
    result = evaluate(db, real_mind, raise_on_error=False)
    assert not result.success
    assert any("hold train and no dev impressions" in m for m in failure_messages(result))


def test_the_table_equals_a_slow_reference_over_silvers_rows(graph, tiny_mind):
    """The popularity row from the dev rows' candidate_ctr, the ranker's from a model fitted on every
    train row of silver with every numeric feature; both averaged one impression at a time."""
    evaluate(graph, tiny_mind)
    table = {row["model"]: row for row in read_table(graph, "gold.ranker_evaluation").iter_rows(named=True)}
    silver = read_table(graph, "silver.training_examples").sort("split", "impression_id", "position")
    train, dev = silver.filter(pl.col("split") == "train"), silver.filter(pl.col("split") == "dev")
    identifiers = ["date", "impression_id", "user_id", "news_id", "time", "position", "split", "clicked"]
    features = [c for c, t in silver.schema.items() if c not in identifiers and (t.is_numeric() or t == pl.Boolean)]
    assert "candidate_ctr" in features and "history_similarity" in features and "overall_ctr" in features
    assert train.n_unique(["split", "impression_id"]) < MAX_TRAIN_IMPRESSIONS  # the sample is every train impression
    expected = {
        "ranker (gradient-boosted, all features)": reference_summary(dev, scores(fit_ranker(train, features), dev, features)),
        "popularity (candidate_ctr)": reference_summary(dev, dev.get_column("candidate_ctr").cast(pl.Float64)),
    }
    assert set(table) == set(expected)
    for model, want in expected.items():
        got = {name: table[model][name] for name in want}
        assert got == pytest.approx(want, abs=1e-6) and want["impressions"] > 0, model


def test_on_a_database_without_the_daily_assets_the_evaluation_says_what_to_run(tmp_path, tiny_mind):
    result = evaluate(tmp_path / "empty.duckdb", tiny_mind, raise_on_error=False)
    assert not result.success
    assert any("bronze.source_days is missing" in m and "--assets '* and not group:gold'" in m
               for m in failure_messages(result))
