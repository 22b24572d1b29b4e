"""Per-impression model inputs, as neural news recommenders (NRMS, NAML, LSTUR) read them.

One row per impression: the user's most recent K history articles in MIND's order (oldest first,
so the list's last K), the candidates in the order shown with their labels, and every article as
integer ids from vocabularies that only grow (an id, once given, never changes). Id 0 is padding
and articles absent from news.tsv (their category and subcategory ids are 0 too).
"""

import polars as pl

VOCABULARIES = ("news", "category", "subcategory")
VOCABULARY_DESCRIPTIONS = {
    "date": "The partition: day D, whose articles use these tokens.",
    "vocabulary": "news (article ids), category or subcategory.",
    "token": "The news id, category or subcategory.",
    "id": "Its integer id, 1, 2, ... in the order first seen; never changes. 0 is padding and unknown.",
}
IMPRESSION_DESCRIPTIONS = {
    "date": "The partition: the impression's day.",
    "split": "MIND split: train, dev or test.",
    "impression_id": "MIND impression id; (split, impression_id) identifies an impression.",
    "user_id": "MIND user id.",
    "time": "Time of the impression (naive, as MIND gives it).",
    "history": "The user's K most recent history articles (NEWS_AI_HISTORY_SIZE), oldest first: the list's last K.",
    "history_length": "Length of the history list before truncation.",
    "candidates": "Candidate news ids in the order shown.",
    "labels": "1 if the candidate was clicked, else 0, aligned with candidates; NULL on the unlabelled test split.",
    "history_index": "Vocabulary id of each history article (0: absent from news.tsv).",
    "history_category_index": "Category id of each history article (0: absent from news.tsv).",
    "history_subcategory_index": "Subcategory id of each history article (0: absent from news.tsv).",
    "candidate_index": "Vocabulary id of each candidate (0: absent from news.tsv).",
    "candidate_category_index": "Category id of each candidate (0: absent from news.tsv).",
    "candidate_subcategory_index": "Subcategory id of each candidate (0: absent from news.tsv).",
}


def vocabulary_tokens(articles: pl.DataFrame) -> dict[str, pl.Series]:
    """What a day's articles (news_id, category, subcategory) bring to each vocabulary."""
    return {name: articles.get_column("news_id" if name == "news" else name).unique().sort() for name in VOCABULARIES}


def article_ids(articles: pl.DataFrame, ids: pl.DataFrame) -> pl.DataFrame:
    """Per article: news_index, category_index and subcategory_index, from vocabulary rows (vocabulary, token, id)."""
    def of(vocabulary: str, column: str) -> pl.DataFrame:
        return ids.filter(pl.col("vocabulary") == vocabulary).select(pl.col("token").alias(column), pl.col("id").alias(f"{vocabulary}_index"))

    return (
        articles.select("news_id", "category", "subcategory").unique("news_id")
        .join(of("news", "news_id"), on="news_id", how="left")
        .join(of("category", "category"), on="category", how="left")
        .join(of("subcategory", "subcategory"), on="subcategory", how="left")
        .select("news_id", *(pl.col(f"{v}_index").fill_null(0).cast(pl.Int32) for v in VOCABULARIES))
    )


def impressions_for_day(behaviors: pl.DataFrame, articles: pl.DataFrame, history_size: int) -> pl.DataFrame:
    """One row per impression of `behaviors` (bronze rows of a day), in (split, impression_id) order.

    articles: article_ids() of the day's articles (histories and candidates).
    """
    def indexed(column: str, vocabulary: str) -> pl.Expr:
        mapping = articles.get_column(f"{vocabulary}_index")
        return pl.col(column).list.eval(
            pl.element().replace_strict(articles.get_column("news_id"), mapping, default=0, return_dtype=pl.Int32)
        )

    rows = behaviors.select(
        "date", "split", "impression_id", "user_id", "time",
        pl.col("history").list.tail(history_size).alias("history"),
        pl.col("history").list.len().cast(pl.Int32).alias("history_length"),
        pl.col("impressions").list.eval(pl.element().struct.field("news_id")).alias("candidates"),
        pl.when(pl.col("click_count").is_not_null())
        .then(pl.col("impressions").list.eval(pl.element().struct.field("clicked").cast(pl.Int8)))
        .alias("labels"),
    ).sort("split", "impression_id")
    return rows.with_columns(
        *(indexed(side, vocabulary).alias(f"{name}_{'index' if vocabulary == 'news' else vocabulary + '_index'}")
          for side, name in (("history", "history"), ("candidates", "candidate")) for vocabulary in VOCABULARIES)
    ).select(list(IMPRESSION_DESCRIPTIONS))
