import datetime as dt
import filecmp

import polars as pl
import pytest

from news_ai_assets.compute import reference
from news_ai_assets.mind import sample
from news_ai_assets.mind.reader import discover_splits, read_behaviors, read_news


@pytest.fixture(scope="module")
def demo_mind(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    sample.generate(root, "demo")
    return root


def test_generation_is_deterministic(tmp_path, tiny_mind):
    sample.generate(tmp_path, "tiny")
    for split in ["train", "dev", "test"]:
        for name in ["behaviors.tsv", "news.tsv", "entity_embedding.vec"]:
            assert filecmp.cmp(tmp_path / f"MINDsample_{split}" / name, tiny_mind / f"MINDsample_{split}" / name, shallow=False)


def test_a_window_of_days_holds_those_days_at_the_scales_density(tmp_path):
    sample.generate(tmp_path, "tiny", days=4, first_day=dt.date(2019, 11, 13))
    behaviors, rejects, _ = read_behaviors(discover_splits(tmp_path), dt.date(2019, 11, 9), dt.date(2019, 11, 23))
    per_day = dict(behaviors.group_by("date", "split").len().select("date", pl.struct("split", "len")).iter_rows())
    tiny = sample.SCALES["tiny"].impressions  # each day as dense as in the whole calendar: train 180 / 6 days
    assert rejects.height == 0 and per_day == {
        dt.date(2019, 11, 13): {"split": "train", "len": tiny["train"] // 6},
        dt.date(2019, 11, 14): {"split": "train", "len": tiny["train"] // 6},
        dt.date(2019, 11, 15): {"split": "dev", "len": tiny["dev"]},
        dt.date(2019, 11, 16): {"split": "test", "len": tiny["test"] // 7},
    }
    with pytest.raises(ValueError, match="nothing to generate"):  # a window past the calendar writes nothing silently
        sample.generate(tmp_path / "after", "tiny", days=2, first_day=dt.date(2019, 12, 1))
    assert not (tmp_path / "after").exists()


def test_demo_has_mind_like_shapes(demo_mind):
    splits = discover_splits(demo_mind)
    behaviors, rejects, _ = read_behaviors(splits, dt.date(2019, 11, 9), dt.date(2019, 11, 23))
    assert rejects.height == 0
    assert sorted(behaviors.get_column("date").unique()) == [dt.date(2019, 11, d) for d in range(9, 23)]
    labelled = behaviors.filter(pl.col("split") != "test")
    stats = labelled.select(
        candidates=pl.col("impressions_count").mean(),
        clicks=pl.col("click_count").mean(),
        ctr=pl.col("click_count").sum() / pl.col("impressions_count").sum(),
        min_clicks=pl.col("click_count").min(),
    ).row(0, named=True)
    assert 32 <= stats["candidates"] <= 42 and 1.3 <= stats["clicks"] <= 1.7
    assert 0.03 <= stats["ctr"] <= 0.05 and stats["min_clicks"] >= 1
    histories = behaviors.get_column("history_length")
    assert 15 <= histories.median() <= 23 and histories.max() > 100 and (histories == 0).sum() > 0
    test = behaviors.filter(pl.col("split") == "test")
    assert test.height > 0 and test.get_column("click_count").null_count() == test.height
    repeat_users = behaviors.group_by("user_id").agg(pl.col("date").n_unique()).filter(pl.col("date") > 1)
    assert repeat_users.height > 100
    hours = behaviors.group_by("hour_of_day").len()
    assert hours.get_column("len").max() > 3 * hours.get_column("len").min()  # a daily pattern

    news, news_rejects, _ = read_news(splits)
    assert news_rejects.height == 0
    assert news.get_column("category").n_unique() == 18
    assert 0.02 <= (news.get_column("abstract") == "").mean() <= 0.09
    assert news.filter(pl.col("title").str.starts_with('"')).height > 0
    assert news.filter(pl.col("title_entities").list.len() > 0).height > news.height / 3
    assert news.filter(pl.col("title_entities").list.len() > 1).height > news.height / 10
    assert news.filter(pl.col("abstract_entities").list.len() > 0).height > news.height / 3
    assert news.filter(pl.col("title").str.contains("[0-9]") & pl.col("abstract").str.contains("[,:?!]")).height > news.height / 5


def test_every_category_and_most_but_not_all_entity_vectors_in_each_split(tiny_mind):
    for split in ["train", "dev", "test"]:
        folder = tiny_mind / f"MINDsample_{split}"
        news = reference.parse_news_file(folder / "news.tsv")
        assert len({row["category"] for row in news.values()}) == 18, split
        named = {e["wikidata_id"] for row in news.values() for e in row["title_entities"] + row["abstract_entities"]}
        covered = named & reference.read_vector_file(folder / "entity_embedding.vec").keys()
        assert 0.75 * len(named) <= len(covered) < len(named), split


def test_every_split_has_all_three_files(tiny_mind):
    for split in ["train", "dev", "test"]:
        names = {p.name for p in (tiny_mind / f"MINDsample_{split}").iterdir()}
        assert names == {"behaviors.tsv", "news.tsv", "entity_embedding.vec"}


def test_command_line(tmp_path):
    sample.main(["--scale", "tiny", "--out", str(tmp_path)])
    assert (tmp_path / "MINDsample_dev" / "behaviors.tsv").stat().st_size > 0


def test_a_window_of_days_keeps_each_days_density(tmp_path, demo_mind):
    # The benchmark's window: the first N days only, each with the impressions it has in the whole scale.
    sample.main(["--scale", "demo", "--days", "7", "--out", str(tmp_path)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MINDsample_dev", "MINDsample_train"]
    per_day = {}
    for root in (tmp_path, demo_mind):
        behaviors, rejects, _ = read_behaviors(discover_splits(root), dt.date(2019, 11, 9), dt.date(2019, 11, 23))
        assert rejects.height == 0
        per_day[root] = dict(behaviors.group_by("date").len().iter_rows())
    window = [dt.date(2019, 11, d) for d in range(9, 16)]
    assert per_day[tmp_path] == {day: per_day[demo_mind][day] for day in window}
