"""Content-addressed embedding cache: a text is embedded once per model setting, ever.

The cache is a stored table (features.embedding_cache) that only grows, keyed by the
encoder's cache key (model, backend, precision, truncation) and the SHA-256 of the text.
"""

import hashlib

import duckdb
import numpy as np
import polars as pl

from news_ai_assets.compute.news_features import combined_text

CACHE_TABLE = ("features", "embedding_cache")
CACHE_KEY = ["cache_key", "text_hash"]
EMBEDDING_DESCRIPTIONS = {
    "date": "The partition: day D, whose impressions show or list the article.",
    "news_id": "MIND article id.",
    "text_hash": "SHA-256 of the embedded text (title + \" \" + abstract, stripped): the cache key with the model setting.",
    "embedding": "L2-normalised sentence embedding of the text (all-MiniLM-L6-v2 by default: 384 floats).",
}
TEXT_FIELDS = {
    "title_abstract": combined_text(pl.col("title"), pl.col("abstract")),
    "title": pl.col("title").str.strip_chars(),
}


def article_texts(news: pl.DataFrame, text_fields: str = "title_abstract") -> pl.DataFrame:
    """date, news_id, text, text_hash for each article row."""
    texts = news.select("date", "news_id", TEXT_FIELDS[text_fields].alias("text"))
    hashes = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts.get_column("text")]
    return texts.with_columns(pl.Series("text_hash", hashes, dtype=pl.String))


def cache_rows(cache_key: str, hashes: list[str], vectors: np.ndarray) -> pl.DataFrame:
    """Rows of the cache for `vectors` (one per hash), embedded with the setting `cache_key`."""
    return pl.DataFrame(
        {"cache_key": [cache_key] * len(hashes), "text_hash": hashes, "embedding": vectors.tolist()},
        schema={"cache_key": pl.String, "text_hash": pl.String, "embedding": pl.List(pl.Float32)},
    )


def embedding_dimension(conn: duckdb.DuckDBPyConnection, cache_key: str) -> int:
    """The length of the cached vectors of this setting (0 when none is cached)."""
    try:
        return conn.execute(f"SELECT coalesce(max(len(embedding)), 0) FROM {'.'.join(CACHE_TABLE)} WHERE cache_key = ?",
                            [cache_key]).fetchall()[0][0]
    except duckdb.CatalogException:
        return 0
