import datetime as dt

import polars as pl

from news_ai_assets.compute import reference
from news_ai_assets.compute.news_features import news_features
from news_ai_assets.mind.reader import discover_splits, read_news
from news_ai_assets_tests.compare import assert_rows_match


def _check(news: pl.DataFrame) -> pl.DataFrame:
    news = news.with_columns(pl.lit(dt.date(2019, 11, 12)).alias("date"))
    fast = news_features(news)
    assert_rows_match(fast, [reference.news_features(r) for r in news.iter_rows(named=True)], key=["news_id"], tol=1e-6)
    return fast


def test_real_news_match_reference(real_mind):
    fast = _check(read_news(discover_splits(real_mind))[0])
    assert fast.filter(pl.col("abstract_char_count") == 0).height > 0


def test_generated_news_match_reference(tiny_mind):
    _check(read_news(discover_splits(tiny_mind))[0])


def test_edge_cases_match_reference():
    rows = [
        ("N1", "", ""), ("N2", "Wait... what?! Yes.", ""), ("N3", "No end", "Two. Parts"), ("N4", "ÉTÉ 2019 🎄 — café", "x"),
        ("N5", '"Quoted," he said', "  spaced   out  "), ("N6", "...", "!"),
    ]
    news = pl.DataFrame(
        {
            "news_id": [r[0] for r in rows], "category": "news", "subcategory": "newsus",
            "title": [r[1] for r in rows], "abstract": [r[2] for r in rows],
            "title_entities": [[{"label": "x"}]] * len(rows), "abstract_entities": [[]] * len(rows),
        }
    )
    fast = _check(news)
    empty = fast.row(0, named=True)
    assert empty["capital_ratio"] is None and empty["title_sentence_count"] == 0
    assert fast.filter(pl.col("news_id") == "N2").get_column("title_sentence_count").item() == 3
