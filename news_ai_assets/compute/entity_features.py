"""Entity features per article version, from MIND's knowledge-graph entity vectors.

An article's entities are the entries of its title_entities and abstract_entities lists (news.tsv),
each identified by its WikidataId. For an article:
- title_entity_embedding / abstract_entity_embedding: the mean vector of that field's entities
  that have one in entity_embedding.vec; NULL when none has.
- entity_embedding: the mean vector of all its entities (title and abstract entries) that have one.
- entity_count: title and abstract entries; entities_with_vector: those of them that have a vector;
  entity_vector_share = entities_with_vector / entity_count, NULL when the article has no entity.
No vector is invented: an entity without one is counted, never filled in.
"""

import hashlib

import numpy as np
import polars as pl
import scipy.sparse

from news_ai_assets.mind.entities import DIMENSION

FIELDS = {"title": "title_entities", "abstract": "abstract_entities"}
VECTOR = pl.List(pl.Float32)
ENTITY_FEATURE_SCHEMA = {
    "article_key": pl.String, "entity_source": pl.String, "entity_count": pl.Int32, "entities_with_vector": pl.Int32,
    "entity_vector_share": pl.Float32, "title_entity_embedding": VECTOR, "abstract_entity_embedding": VECTOR,
    "entity_embedding": VECTOR,
}
ENTITY_FEATURE_DESCRIPTIONS = {
    "date": "The partition: day D.",
    "news_id": "MIND article id.",
    "article_key": "The article version (MD5 of its news.tsv line).",
    "entity_source": "SHA-256 of the entity_embedding.vec files the vectors come from.",
    "entity_count": "Entities MIND lists for the title and the abstract.",
    "entities_with_vector": "Those of them that have a vector in entity_embedding.vec.",
    "entity_vector_share": "entities_with_vector / entity_count; NULL when the article has no entity.",
    "title_entity_embedding": "Mean vector of the title's entities that have one (100 floats); NULL when none has.",
    "abstract_entity_embedding": "Mean vector of the abstract's entities that have one; NULL when none has.",
    "entity_embedding": "Mean vector of all the article's entities that have one; NULL when none has.",
}


def _means(name: str, groups: np.ndarray, vector_rows: np.ndarray, vectors: np.ndarray, n: int) -> pl.Series:
    """Row i: the mean of vectors[vector_rows[groups == i]] (in float64), or NULL when group i has none."""
    counts = np.bincount(groups, minlength=n)
    weights = 1.0 / counts[groups]
    averaging = scipy.sparse.csr_matrix((weights, (groups, vector_rows)), shape=(n, len(vectors)))
    means = np.asarray(averaging @ vectors.astype(np.float64), dtype=np.float32).reshape(n, DIMENSION)
    return pl.select(pl.when(pl.Series(counts > 0)).then(pl.Series(means).arr.to_list()).alias(name)).to_series().cast(VECTOR)


def named_vectors_version(articles: pl.DataFrame, vectors: pl.DataFrame) -> str:
    """A digest of the vectors of the entities `articles` name (an entity without one by its absence):
    the articles' features depend on the vector files through these alone, so a changed line of
    another entity leaves it as it was."""
    named = pl.concat([
        articles.select(pl.col(column).list.eval(pl.element().struct.field("wikidata_id")).explode().alias("wikidata_id"))
        for column in FIELDS.values()
    ]).drop_nulls().unique()
    found = vectors.join(named, on="wikidata_id", how="semi").sort("wikidata_id")
    digest = hashlib.sha256("\n".join(found.get_column("wikidata_id").to_list()).encode())
    digest.update(np.asarray(found.get_column("vector").to_numpy(), dtype=np.float32).tobytes())
    return digest.hexdigest()[:24]


def entity_features(articles: pl.DataFrame, vectors: pl.DataFrame, entity_source: str) -> pl.DataFrame:
    """One row per article of `articles` (article_key, title_entities, abstract_entities), keyed by
    (article_key, entity_source). vectors: wikidata_id, vector (FLOAT[100]), each id once."""
    articles = articles.unique("article_key", keep="first").sort("article_key")
    index = vectors.select("wikidata_id").with_row_index("vector_row")
    matrix = np.asarray(vectors.get_column("vector").to_numpy(), dtype=np.float32).reshape(vectors.height, DIMENSION)
    mentions = pl.concat([
        articles.with_row_index("article_row").select(
            "article_row", pl.lit(field).alias("field"), pl.col(column).list.eval(pl.element().struct.field("wikidata_id")).alias("wikidata_id")
        ).explode("wikidata_id").drop_nulls("wikidata_id")
        for field, column in FIELDS.items()
    ]).join(index, on="wikidata_id", how="left", maintain_order="left")
    counts = mentions.group_by("article_row").agg(pl.len().alias("entity_count"),
                                                  pl.col("vector_row").is_not_null().sum().alias("entities_with_vector"))
    found = mentions.drop_nulls("vector_row")

    def means(name: str, rows: pl.DataFrame) -> pl.Series:
        return _means(name, rows.get_column("article_row").to_numpy(), rows.get_column("vector_row").to_numpy(), matrix,
                      articles.height)

    return articles.with_row_index("article_row").select("article_row", "article_key").join(
        counts, on="article_row", how="left", maintain_order="left"
    ).select(
        "article_key",
        pl.lit(entity_source).alias("entity_source"),
        pl.col("entity_count").fill_null(0),
        pl.col("entities_with_vector").fill_null(0),
        (pl.col("entities_with_vector") / pl.col("entity_count")).alias("entity_vector_share"),
        *(means(f"{field}_entity_embedding", found.filter(pl.col("field") == field)) for field in FIELDS),
        means("entity_embedding", found),
    ).cast(ENTITY_FEATURE_SCHEMA)
