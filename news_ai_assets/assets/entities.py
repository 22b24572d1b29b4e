"""Entity features: each article's knowledge-graph entities as vectors, from MIND's entity_embedding.vec."""

import dagster as dg
import polars as pl

from news_ai_assets.assets.bronze import NEWS
from news_ai_assets.assets.common import (
    SqlCheck, column_schema, counts_table, day_metadata, measured, no_rows_where, partition_days, preview, reported_days,
    run_metadata, sql_checks, stored_as, timed,
)
from news_ai_assets.assets.versions import record_input_versions
from news_ai_assets.compute.entity_features import ENTITY_FEATURE_DESCRIPTIONS
from news_ai_assets.compute.entity_features import entity_features as compute_entity_features
from news_ai_assets.compute.entity_features import named_vectors_version
from news_ai_assets.mind.entities import Vectors, read_vectors, vector_files
from news_ai_assets.resources import MindSource
from news_ai_assets.storage.database import Database, Replacement
from news_ai_assets.storage.tables import DayRows, StoredDays

ENTITY_FEATURES = dg.AssetKey(["features", "entity_features"])
ARTICLE_ENTITY_FEATURES = ("features", "article_entity_features")  # per article version and vector files, once
ENTITY_FEATURES_VIEW = (
    "SELECT d.date, d.news_id, f.* FROM features.entity_feature_days d "
    "JOIN features.article_entity_features f USING (article_key, entity_source)"
)


def _read(context: dg.AssetExecutionContext, database: Database, mind: MindSource) -> tuple[dict[str, Vectors], dict]:
    """Every split's entity and relation vectors, their rejects stored in bronze.rejects (per file,
    replacing that file's earlier ones), and the run's metadata about them."""
    splits, read, facts = mind.split_dirs(context.log), {}, {}
    with database.connect() as conn:
        for kind in ("entity", "relation"):
            files, missing = vector_files(splits, kind)
            if missing and kind == "entity":
                context.log.warning(
                    f"No entity_embedding.vec in {', '.join(missing)}: entities without a vector in another split are "
                    "counted as missing (entities_with_vector, entity_vector_share), never given one"
                )
            with timed(context, f"run_read_{kind}_vectors") as timing:
                read[kind] = read_vectors(files)
            rejects = read[kind].rejects
            for file in files:
                conn.register("vector_rejects", rejects.filter(pl.col("source_file") == str(file.path)).to_arrow())
                database.replace_each(conn, [Replacement("bronze", "rejects", "SELECT * FROM vector_rejects", (),
                                                         "source_file", str(file.path))],
                                      f"recording the rejected lines of {file.path} failed.")
            if rejects.height:
                context.log.warning(f"{rejects.height} malformed {kind} vector lines rejected; see bronze.rejects")
            facts.update({
                f"source_{kind}_files": ", ".join(str(f.path) for f in files) or "none",
                f"source_{kind}_files_missing": ", ".join(missing) or "none",
                f"source_{kind}_vectors": read[kind].vectors.height,
                f"source_{kind}_lines": read[kind].lines,
                f"source_{kind}_rejected_lines": rejects.height,
                f"source_{kind}_ids_conflicting_between_splits": read[kind].conflicting_ids,
                **timing,
            })
            if rejects.height:
                facts[f"source_{kind}_rejects_by_reason"] = counts_table(rejects, "reason")
    facts["entity_source"] = read["entity"].source
    return read, facts


@dg.asset(
    code_version="1",
    key=ENTITY_FEATURES,
    group_name="features",
    kinds={"duckdb", "polars"},
    ins={"news": dg.AssetIn(NEWS, metadata={"columns": ["date", "news_id", "article_key", "title_entities", "abstract_entities"]})},
    **stored_as("entity_feature_days", ENTITY_FEATURES_VIEW),
)
def entity_features(context: dg.AssetExecutionContext, news: StoredDays, mind: MindSource, database: Database) -> DayRows:
    """Per article of bronze/news[D]: the mean vectors of its title and abstract entities, and the
    share of its entities that have a vector. An article version's features are stored once per
    version of the vector files (features.article_entity_features); a day stores its articles."""
    vectors, facts = _read(context, database, mind)
    source = facts["entity_source"]
    run_metadata(context, facts)

    def days():
        for day in partition_days(context):
            with measured("compute") as timing:
                articles = news.read(day)
                features = compute_entity_features(articles, vectors["entity"].vectors, source)
                added = database.add_new_rows(*ARTICLE_ENTITY_FEATURES, features, ["article_key", "entity_source"])
            record_input_versions(context, {"entity_vectors": named_vectors_version(articles, vectors["entity"].vectors)},
                                  days=[day])
            counts = features.select(pl.col("entity_count").sum(), pl.col("entities_with_vector").sum()).row(0)
            shown = articles.select("date", "news_id", "article_key").join(features, on="article_key").drop("entity_source")
            day_metadata(context, day, {
                "articles": articles.height,
                "articles_with_entities": int((features.get_column("entity_count") > 0).sum()),
                "articles_with_an_entity_vector": features.get_column("entity_embedding").is_not_null().sum(),
                "entities": counts[0] or 0,
                "entities_without_vector": (counts[0] or 0) - (counts[1] or 0),
                "article_versions_computed_here": added,
                **timing,
                "preview": preview(shown.with_columns(pl.col("^.*embedding$").list.head(3))),
            })
            if day == partition_days(context)[0]:
                context.add_asset_metadata({"dagster/column_schema": column_schema(
                    pl.Schema({"date": pl.Date, "news_id": pl.String, **features.schema}), ENTITY_FEATURE_DESCRIPTIONS)})
            yield day, articles.select("date", "news_id", "article_key", pl.lit(source).alias("entity_source"))

    return reported_days(context, days())


_TABLE = "features.entity_features"
entity_checks = [sql_checks(ENTITY_FEATURES, [
    SqlCheck("counts_consistent", "entities_with_vector <= entity_count; the share is their ratio, NULL without entities.",
             no_rows_where(_TABLE, "entities_with_vector > entity_count OR (entity_count = 0) <> (entity_vector_share IS NULL) "
                                   "OR abs(entity_vector_share - entities_with_vector / entity_count) > 1e-6", "inconsistent_rows")),
    SqlCheck("vectors_finite", "Every entity vector has 100 finite values, and exists exactly when an entity has a vector.",
             no_rows_where(_TABLE, "(entity_embedding IS NULL) <> (entities_with_vector = 0) OR len(entity_embedding) <> 100 "
                                   "OR NOT list_bool_and(list_transform(entity_embedding, lambda x: isfinite(x)))", "bad_rows")),
])]
