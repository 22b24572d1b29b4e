"""Does a feature change help a model? A small ranker trained on the train days, scored on the dev day.

Metrics are MIND's, per impression, then averaged over the impressions that have both a clicked and
an unclicked candidate (the others have no ranking to judge):
- group AUC: the AUC of the candidates' scores against their labels (ties count half);
- MRR: sum over clicked candidates of 1 / rank, divided by the number clicked;
- nDCG@k: DCG@k / ideal DCG@k, DCG@k = sum over the top k of (2^label - 1) / log2(rank + 1).
Ranks order candidates by score, highest first; equal scores keep the order they were shown in.
"""

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:  # scikit-learn is imported where a ranker is trained: at import it cost every run ~1 s
    from sklearn.ensemble import HistGradientBoostingClassifier

SEED = 0
MAX_TRAIN_IMPRESSIONS = 20_000  # a sample of the train days' impressions, the same every run
METRICS = ["group_auc", "mrr", "ndcg_5", "ndcg_10"]
IDENTIFIERS = {"date", "impression_id", "user_id", "news_id", "time", "position", "split", "clicked"}


def feature_columns(schema: pl.Schema) -> list[str]:
    """The numeric columns of silver's wide table a ranker reads: every feature, no identifier."""
    return [name for name, type_ in schema.items() if name not in IDENTIFIERS and (type_.is_numeric() or type_ == pl.Boolean)]


def _gain(label: str) -> pl.Expr:
    return (2 ** pl.col(label) - 1) / (pl.col("rank") + 1).log(2)


def impression_metrics(scored: pl.DataFrame) -> pl.DataFrame:
    """Per impression (split, impression_id) with a clicked and an unclicked candidate: the metrics of
    `score` against `clicked`, candidates ranked by score (highest first, then by position)."""
    ranked = (
        scored.select("split", "impression_id", "position", pl.col("clicked").cast(pl.Int64).alias("label"), "score")
        .sort("split", "impression_id", pl.col("score"), "position", descending=[False, False, True, False])
        .with_columns(
            pl.int_range(1, pl.len() + 1).over("split", "impression_id").alias("rank"),
            pl.col("score").rank("average").over("split", "impression_id").alias("score_rank"),
            pl.col("label").sort(descending=True).over("split", "impression_id").alias("ideal_label"),
        )
    )
    per_impression = ranked.group_by("split", "impression_id").agg(
        pl.col("label").sum().alias("clicked"),
        pl.len().alias("candidates"),
        pl.col("score_rank").filter(pl.col("label") == 1).sum().alias("positive_rank_sum"),
        (pl.col("label") / pl.col("rank")).sum().alias("reciprocal_ranks"),
        *(_gain("label").filter(pl.col("rank") <= k).sum().alias(f"dcg_{k}") for k in (5, 10)),
        *(_gain("ideal_label").filter(pl.col("rank") <= k).sum().alias(f"ideal_dcg_{k}") for k in (5, 10)),
    ).filter((pl.col("clicked") > 0) & (pl.col("clicked") < pl.col("candidates")))
    negatives = pl.col("candidates") - pl.col("clicked")
    return per_impression.select(
        "split", "impression_id",
        ((pl.col("positive_rank_sum") - pl.col("clicked") * (pl.col("clicked") + 1) / 2) / (pl.col("clicked") * negatives))
        .alias("group_auc"),
        (pl.col("reciprocal_ranks") / pl.col("clicked")).alias("mrr"),
        *((pl.col(f"dcg_{k}") / pl.col(f"ideal_dcg_{k}")).alias(f"ndcg_{k}") for k in (5, 10)),
    ).sort("split", "impression_id")


def summary(scored: pl.DataFrame) -> dict[str, float]:
    """The mean of each metric over the impressions that have one, and how many they are."""
    metrics = impression_metrics(scored)
    return {"impressions": metrics.height, **{m: float(metrics.get_column(m).mean() or 0.0) for m in METRICS}}


def split_features(train: pl.DataFrame, features: list[str]) -> tuple[list[str], list[str]]:
    """`features` that have a value on some training row, and those missing on every one (a range whose
    train days have no lookback day, say): a ranker learns nothing from the latter, and scikit-learn's
    binning fails on a column with no value ("window shape cannot be larger than input array shape")."""
    counts = train.select(pl.col(features).is_not_null().sum()).row(0, named=True) if features else {}
    return [f for f in features if counts[f]], [f for f in features if not counts[f]]


def fit_ranker(train: pl.DataFrame, features: list[str]) -> "HistGradientBoostingClassifier":
    """A gradient-boosted classifier of clicked on `features` (NULL is missing, which it handles), fixed seed."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    if not features:
        raise ValueError(f"no feature has a value on any of the {train.height} train rows: there is nothing to train the "
                         "ranker on (do the train days have features? see silver's checks)")
    model = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.1, max_leaf_nodes=31, early_stopping=False,
                                           random_state=SEED)
    return model.fit(_matrix(train, features), train.get_column("clicked").cast(pl.Int8).to_numpy())


def _matrix(rows: pl.DataFrame, features: list[str]) -> np.ndarray:
    return rows.select(pl.col(features).cast(pl.Float64)).to_numpy()


def scores(model: "HistGradientBoostingClassifier", rows: pl.DataFrame, features: list[str]) -> pl.Series:
    return pl.Series("score", model.predict_proba(_matrix(rows, features))[:, 1])
