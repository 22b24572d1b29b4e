"""Per-article text statistics and entity counts, as Polars string expressions.

Definitions (the tests' reference computes them character by character in Python):
- char counts are Unicode code points; words are maximal runs of non-whitespace;
  sentences are runs of `.`, `!` or `?` followed by whitespace or the end, plus one for
  trailing text without a terminator (an empty text has 0).
- Ratios are over `text` = title + " " + abstract (stripped): capital = uppercase letters
  (Unicode Lu), digit = decimal digits (Nd), special = anything that is not a letter, not a
  number and not a space. avg_word_length is the mean word length; unique_word_ratio is
  distinct lower-cased words / words. A text without characters or words gives NULL ratios.
- Entity counts are the lengths of the parsed entity lists.
"""

import polars as pl

WORD = r"\S+"
SENTENCE_END = r"[.!?]+(\s|$)"


def _sentences(text: pl.Expr) -> pl.Expr:
    stripped = text.str.strip_chars()
    ended = stripped.str.count_matches(SENTENCE_END)
    trailing = (stripped.str.len_chars() > 0) & ~stripped.str.contains(r"[.!?]$")
    return (ended + trailing.cast(pl.UInt32)).cast(pl.Int32)


def _share(pattern: str, text: pl.Expr, chars: pl.Expr) -> pl.Expr:
    return pl.when(chars > 0).then(text.str.count_matches(pattern) / chars)


def combined_text(title: pl.Expr, abstract: pl.Expr) -> pl.Expr:
    """The article text both the statistics and the embeddings read: title + " " + abstract."""
    return pl.concat_str([title, abstract], separator=" ").str.strip_chars()


_TEXT = 'the stripped text title + " " + abstract'
NEWS_FEATURE_DESCRIPTIONS = {
    "date": "The partition: day D, whose impressions show or list the article.",
    "news_id": "MIND article id.",
    "category": "MIND category of the article.",
    "subcategory": "MIND subcategory of the article.",
    **{
        column: text
        for field in ("title", "abstract")
        for column, text in (
            (f"{field}_char_count", f"Unicode code points in the {field}."),
            (f"{field}_word_count", f"Runs of non-whitespace in the {field}."),
            (f"{field}_sentence_count", f"Runs of . ! ? followed by a space or the end in the {field}, plus one for "
             "trailing text without one."),
        )
    },
    "capital_ratio": f"Uppercase letters / characters of {_TEXT}; NULL for an empty text.",
    "digit_ratio": f"Decimal digits / characters of {_TEXT}; NULL for an empty text.",
    "special_char_ratio": f"Characters neither letter, number nor space / characters of {_TEXT}; NULL for an empty text.",
    "avg_word_length": f"Mean characters per word of {_TEXT}; NULL without words.",
    "unique_word_ratio": f"Distinct lower-cased words / words of {_TEXT}; NULL without words.",
    "title_entity_count": "Entities MIND lists for the title.",
    "abstract_entity_count": "Entities MIND lists for the abstract.",
    "total_entity_count": "title_entity_count + abstract_entity_count.",
}


NEWS_FEATURE_COLUMNS = list(NEWS_FEATURE_DESCRIPTIONS)


def news_features(news: pl.DataFrame) -> pl.DataFrame:
    """One row per (date, news_id) of bronze/news (with its article_key, when the input has one)."""
    text = combined_text(pl.col("title"), pl.col("abstract"))
    words = text.str.extract_all(WORD)
    chars = text.str.len_chars()
    return news.select(
        "date",
        "news_id",
        *(["article_key"] if "article_key" in news.columns else []),
        "category",
        "subcategory",
        *[
            expr
            for field in ("title", "abstract")
            for expr in (
                pl.col(field).str.len_chars().cast(pl.Int32).alias(f"{field}_char_count"),
                pl.col(field).str.count_matches(WORD).cast(pl.Int32).alias(f"{field}_word_count"),
                _sentences(pl.col(field)).alias(f"{field}_sentence_count"),
            )
        ],
        _share(r"\p{Lu}", text, chars).cast(pl.Float32).alias("capital_ratio"),
        _share(r"\p{Nd}", text, chars).cast(pl.Float32).alias("digit_ratio"),
        _share(r"[^\p{L}\p{N} ]", text, chars).cast(pl.Float32).alias("special_char_ratio"),
        words.list.eval(pl.element().str.len_chars()).list.mean().cast(pl.Float32).alias("avg_word_length"),
        pl.when(words.list.len() > 0)
        .then(words.list.eval(pl.element().str.to_lowercase()).list.n_unique() / words.list.len())
        .cast(pl.Float32)
        .alias("unique_word_ratio"),
        pl.col("title_entities").list.len().cast(pl.Int32).alias("title_entity_count"),
        pl.col("abstract_entities").list.len().cast(pl.Int32).alias("abstract_entity_count"),
        (pl.col("title_entities").list.len() + pl.col("abstract_entities").list.len())
        .cast(pl.Int32)
        .alias("total_entity_count"),
    )
