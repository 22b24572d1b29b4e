"""Content-addressed embedding cache: a text is embedded once per model setting, ever.

The cache lives in the pipeline's DuckDB file (features.embedding_cache), keyed by the
encoder's cache key (model, backend, precision, truncation) and the SHA-256 of the text.
"""

import hashlib

import duckdb
import numpy as np
import polars as pl

from news_ai_assets.compute.news_features import combined_text

CACHE_SCHEMA, CACHE_TABLE = "features", "embedding_cache"
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


def ensure_cache(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {CACHE_SCHEMA}")
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {CACHE_SCHEMA}.{CACHE_TABLE} "
        "(cache_key VARCHAR NOT NULL, text_hash VARCHAR NOT NULL, embedding FLOAT[] NOT NULL, "
        "PRIMARY KEY (cache_key, text_hash))"
    )


def cached_hashes(conn: duckdb.DuckDBPyConnection, cache_key: str, hashes: pl.Series) -> pl.DataFrame:
    """text_hash of those of `hashes` already embedded with this setting."""
    conn.register("wanted_hashes", pl.DataFrame({"text_hash": hashes.unique()}).to_arrow())
    try:
        return conn.sql(
            f"SELECT c.text_hash FROM {CACHE_SCHEMA}.{CACHE_TABLE} c JOIN wanted_hashes w USING (text_hash) "
            "WHERE c.cache_key = $key ORDER BY c.text_hash",
            params={"key": cache_key},
        ).pl()
    finally:
        conn.unregister("wanted_hashes")


def store_vectors(conn: duckdb.DuckDBPyConnection, cache_key: str, hashes: list[str], vectors: np.ndarray) -> None:
    """Adds vectors to the cache (one transaction); hashes already cached are left as they are."""
    rows = pl.DataFrame({"text_hash": hashes, "embedding": vectors.tolist()}, schema_overrides={"embedding": pl.List(pl.Float32)})
    conn.register("new_vectors", rows.to_arrow())
    try:
        conn.execute(
            f"INSERT INTO {CACHE_SCHEMA}.{CACHE_TABLE} SELECT $key, text_hash, embedding FROM new_vectors "
            "ON CONFLICT DO NOTHING",
            {"key": cache_key},
        )
    finally:
        conn.unregister("new_vectors")
