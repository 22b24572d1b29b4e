"""Silver training examples: each candidate of a day's impressions with every feature a model reads.

Rows are features/interactions[D], with the user's features as of the start of D, the
candidate's news features, and cross features. Only the identifiers, the label and the cross
features are computed and stored here (`silver.cross_features`, in (split, impression_id,
position) order); the view `silver.training_examples` adds the user and news features by joining
their tables, so the wide table is never written twice. For a candidate c shown to user u on day
D (W = lookback days):

- user_category_ratio / user_subcategory_ratio: the share of u's content items (history list
  plus articles clicked in D-W..D-1, as for user features) whose category / subcategory is c's.
  0 when u has known items but none of c's kind; NULL when c is missing from news.tsv or u has
  no item with a known category.
- history_similarity: cosine between the mean embedding of u's history articles (those with an
  embedding) and c's embedding; NULL when either is missing.
- history_entity_similarity: the same with the articles' entity_embedding (the mean vector of
  their knowledge-graph entities, see entity_features.py), which is not unit length.
- candidate_impressions, candidate_clicks: times c was shown, and clicked (labelled impressions
  only), in D-W..D-1. candidate_ctr = (clicks + m * p) / (labelled shows + m): smoothed towards
  p, the CTR of all labelled impressions in the window (0 if none), with m = 20.
- article_age_days: days from the first time c was shown in D-W..D, at or before this
  impression's time T, to T (>= 0; a showing later on D does not count, so nothing later leaks in;
  NULL when c was not shown up to T, which never holds for a silver row: it is a showing at T).
  hours_since_first_seen: the same span in hours.
- candidate_impressions_{1h,6h,24h}, candidate_clicks_{1h,6h,24h}: c's shows and clicks in
  labelled impressions at times t with T - window <= t < T, T this impression's time (an
  impression at the same time is not before it; the 24 h window reaches into D-1).

Rows missing a source are counted and keep NULLs; no row is dropped. The computation runs in
chunks of impressions, so a MIND-large day (~14 M rows) streams through bounded memory, and its
floats are computed row by row in a fixed order: the same inputs give the same bytes.
"""

import datetime as dt
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl
import pyarrow as pa
import scipy.sparse

from news_ai_assets.compute.ahead import computed_ahead
from news_ai_assets.compute.interactions import INTERACTION_DESCRIPTIONS
from news_ai_assets.compute.news_features import NEWS_FEATURE_COLUMNS, NEWS_FEATURE_DESCRIPTIONS
from news_ai_assets.compute.user_features import (
    USER_FEATURE_COLUMNS, USER_FEATURE_DESCRIPTIONS, active_users, content_items, lookback_window,
)

PRIOR_WEIGHT = 20
ID_COLUMNS = ["date", "impression_id", "user_id", "news_id", "time", "position", "split", "clicked"]
POPULARITY_WINDOWS = {"1h": 1, "6h": 6, "24h": 24}  # hours before the impression
CHUNKS_IN_FLIGHT = 2  # computed at once on threads while storage inserts the one before
CROSS_COLUMNS = [
    "user_category_ratio", "user_subcategory_ratio", "history_similarity",
    "candidate_impressions", "candidate_clicks", "candidate_ctr", "article_age_days",
    *(f"candidate_{what}_{name}" for name in POPULARITY_WINDOWS for what in ("impressions", "clicks")),
    "hours_since_first_seen", "history_entity_similarity",
]
_NO_CATEGORY = "NULL if the candidate is missing from news.tsv or the user has no item with a known category"
SILVER_DESCRIPTIONS = {
    **NEWS_FEATURE_DESCRIPTIONS,
    **USER_FEATURE_DESCRIPTIONS,
    **INTERACTION_DESCRIPTIONS,
    "user_category_ratio": f"Share of the user's content items in the candidate's category; 0 if none, {_NO_CATEGORY}.",
    "user_subcategory_ratio": f"Share of the user's content items in the candidate's subcategory; 0 if none, {_NO_CATEGORY}.",
    "history_similarity": "Cosine of the mean embedding of the user's history articles and the candidate's embedding; "
                          "NULL if either is missing.",
    "candidate_impressions": "Times the candidate was shown in days D-W .. D-1.",
    "candidate_clicks": "Clicks on the candidate in labelled impressions of days D-W .. D-1.",
    "candidate_ctr": f"(candidate_clicks + {PRIOR_WEIGHT}·p) / (labelled shows + {PRIOR_WEIGHT}), p the window's CTR.",
    "article_age_days": "Days from the candidate's first showing in D-W .. D at or before this impression's time T, to T "
                        "(>= 0).",
    **{f"candidate_{what}_{name}": f"{label} in labelled impressions during the {hours} h before this impression's time T "
                                   "(T - window <= t < T; may reach into D-1)."
       for name, hours in POPULARITY_WINDOWS.items()
       for what, label in (("impressions", "Times the candidate was shown"), ("clicks", "Clicks on the candidate"))},
    "hours_since_first_seen": "Hours from the candidate's first showing in D-W .. D at or before this impression's time T, "
                              "to T (>= 0).",
    "history_entity_similarity": "Cosine of the mean entity_embedding of the user's history articles (those with one) and "
                                 "the candidate's entity_embedding; NULL if either is missing.",
}


# The candidate's first showing at or before the row's time: in the window, or on D up to T.
FIRST_SEEN = pl.min_horizontal(
    "first_shown_before", pl.when(pl.col("first_shown_today") <= pl.col("time")).then(pl.col("first_shown_today"))
)
CANDIDATE_STATS_SCHEMA = {"date": pl.Date, "news_id": pl.String, "shown": pl.Int32, "labelled": pl.Int32,
                          "clicks": pl.Int32, "first_shown": pl.Datetime("us")}
CANDIDATE_STATS_DESCRIPTIONS = {
    "date": "The partition: day D.",
    "news_id": "An article shown as a candidate on D.",
    "shown": "Times it was shown on D (all splits).",
    "labelled": "Times it was shown in labelled impressions on D.",
    "clicks": "Times it was clicked on D.",
    "first_shown": "Time of its first showing on D.",
}


def candidate_stats(interactions: pl.DataFrame) -> pl.DataFrame:
    """Per (date, news_id) of features/interactions: shows, labelled shows, clicks and first showing.
    Silver's window statistics add these up over D-W .. D, so no window day is exploded again."""
    return (
        interactions.group_by("date", "news_id")
        .agg(
            pl.len().alias("shown"),
            pl.col("clicked").is_not_null().sum().alias("labelled"),
            pl.col("clicked").fill_null(False).sum().alias("clicks"),
            pl.col("time").min().alias("first_shown"),
        )
        .cast(CANDIDATE_STATS_SCHEMA)
        .select(list(CANDIDATE_STATS_SCHEMA))
        .sort("date", "news_id")
    )


def _candidate_history(daily: pl.DataFrame, day: dt.date, lookback_days: int) -> tuple[pl.DataFrame, float]:
    """Per article: shows, labelled shows, clicks and first showing in the window; first showing on D."""
    in_window = pl.col("date") < day
    history = (
        daily.filter(pl.col("date").is_between(day - dt.timedelta(days=lookback_days), day))
        .group_by("news_id")
        .agg(
            *[pl.col(c).filter(in_window).sum().cast(pl.Int32) for c in ("shown", "labelled", "clicks")],
            pl.col("first_shown").filter(in_window).min().alias("first_shown_before"),
            pl.col("first_shown").filter(~in_window).min().alias("first_shown_today"),
        )
    )
    labelled = history.get_column("labelled").sum()
    prior = history.get_column("clicks").sum() / labelled if labelled else 0.0
    return history, prior


def _user_preferences(user_rows: pl.DataFrame, users: pl.DataFrame, window: pl.DataFrame, news: pl.DataFrame,
                      codes: dict[str, pl.DataFrame]) -> tuple[pl.DataFrame, ...]:
    """Per user_row (`user_rows`: user_id, user_row, in the order of `users`), its known content items, and its
    (category_code) and (subcategory_code) shares of them for the kinds in `codes` (the day's candidates';
    other kinds count in the total only). Users as rows and kinds as codes: ~8 M history items a MIND-large
    day are grouped by integers, not strings."""
    kinds = news.select("news_id", "category", "subcategory")
    for kind, coded in codes.items():
        kinds = kinds.join(coded, on=kind, how="left")
    items = content_items(
        user_rows.select(pl.col("user_row").alias("user_id"), users.get_column("history")),
        window.join(user_rows, on="user_id").select(pl.col("user_row").alias("user_id"), "clicked_news"),
    )
    known = (items.join(kinds.select("news_id", *[f"{kind}_code" for kind in codes]), on="news_id")
             .select(pl.col("user_id").alias("user_row"), *[f"{kind}_code" for kind in codes]))
    totals = known.group_by("user_row").agg(pl.len().alias("known_items"))
    shares = [
        known.drop_nulls(f"{kind}_code").group_by("user_row", f"{kind}_code").len()
        .join(totals, on="user_row")
        .select("user_row", f"{kind}_code", (pl.col("len") / pl.col("known_items")).alias(f"user_{kind}_ratio"))
        for kind in codes
    ]
    return totals, *shares


class Shares:
    """Users' shares of one kind (category or subcategory) in a users x kinds table, for the kinds
    of the day's candidates only (float32, as stored: 200 MB for 250k users and 200 subcategories),
    looked up by (user row, kind code). A join of each chunk on (user_id, kind) rebuilt the hash
    table of the day's ~4 M (user, kind) pairs per chunk: 15 of a MIND-large day's 55 s of compute."""

    def __init__(self, shares: pl.DataFrame, kind: str, users: int, kinds: int):
        self.kind, self.count = kind, kinds
        self.table = np.full(users * self.count, np.nan, dtype=np.float32)
        self.table[self._keys(shares)] = shares.get_column(f"user_{kind}_ratio").cast(pl.Float32).to_numpy()

    def _keys(self, rows: pl.DataFrame) -> np.ndarray:
        """Each row's place in the table; -1 where its user or kind is unknown."""
        key = pl.col("user_row").cast(pl.Int64) * self.count + pl.col(f"{self.kind}_code").cast(pl.Int64)
        return rows.select(key.fill_null(-1)).to_series().to_numpy()

    def of(self, rows: pl.DataFrame) -> pl.Series:
        """The share for each row's user_row and {kind}_code; null where the user has none of that kind."""
        keys = self._keys(rows)
        values = np.full(len(keys), np.nan, dtype=np.float32)
        known = keys >= 0  # the table is empty on a day whose candidates have no known kind
        values[known] = self.table[keys[known]]
        return pl.Series(f"user_{self.kind}_ratio", values, nan_to_null=True)  # a share is never NaN (known items >= 1)


def _matrix(embeddings: pl.Series) -> np.ndarray:
    """Vectors (a list or fixed-size array column) as a float32 matrix, one row each."""
    if isinstance(embeddings.dtype, pl.List):
        embeddings = embeddings.list.to_array(int(embeddings.list.len().max() or 0))
    return np.asarray(embeddings.to_numpy(), dtype=np.float32).reshape(len(embeddings), embeddings.dtype.size)


def _history_means(users: pl.DataFrame, index: pl.DataFrame, vectors: np.ndarray) -> np.ndarray:
    """Row i: the mean embedding of user i's history articles that have one (zeros when none)."""
    pairs = (
        users.with_row_index("user_row")
        .select("user_row", pl.col("history").alias("news_id"))
        .explode("news_id")
        .join(index, on="news_id", how="inner", maintain_order="left")
    )
    user_rows = pairs.get_column("user_row").to_numpy()
    counts = np.bincount(user_rows, minlength=users.height)
    weights = (1.0 / counts[user_rows]).astype(np.float32)
    averaging = scipy.sparse.csr_matrix(
        (weights, (user_rows, pairs.get_column("embedding_row").to_numpy())), shape=(users.height, len(vectors))
    )
    return np.asarray(averaging @ vectors, dtype=np.float32)


def _row_norms(matrix: np.ndarray, block_rows: int = 8_192) -> np.ndarray:
    """np.linalg.norm(matrix, axis=1), the same bits, a block of rows at a time: at once it squares the
    whole matrix into a fresh temporary (400 MB for a MIND-large day's history means, 1 s of page zeroing)."""
    return np.concatenate([np.linalg.norm(matrix[start : start + block_rows], axis=1)
                           for start in range(0, len(matrix), block_rows)] or [np.zeros(0, dtype=matrix.dtype)])


SIMILARITY_BATCH = 2_048  # rows: the gathered vectors (3 MB) stay in cache; 2.4x faster than 32k-row batches


class UserVectors:
    """The day's article vectors, each user's history mean of them, and the norms the cosines
    divide by (computed once a day: per chunk they were a third of a MIND-large day's silver time).
    unit: the article vectors are L2-normalised (text embeddings), so only the means' norms count."""

    def __init__(self, users: pl.DataFrame, vectors: pl.DataFrame, column: str, unit: bool):
        vectors = vectors.filter(pl.col(column).is_not_null()).unique("news_id").sort("news_id")
        self.vectors = _matrix(vectors.get_column(column))
        self.index = vectors.select("news_id", pl.int_range(pl.len(), dtype=pl.Int64).alias(f"{column}_row"))
        self.means = _history_means(users, self.index.rename({f"{column}_row": "embedding_row"}), self.vectors)
        self.mean_norms = _row_norms(self.means)
        self.vector_norms = None if unit else _row_norms(self.vectors)

    def similarity(self, user_rows: np.ndarray, vector_rows: np.ndarray) -> np.ndarray:
        """Cosine per row; NaN where a side is missing or zero (made NULL by the caller). Row by row,
        so the result doesn't depend on how rows are batched."""
        out = np.full(len(user_rows), np.nan, dtype=np.float32)
        valid = np.flatnonzero((user_rows >= 0) & (vector_rows >= 0))
        for start in range(0, len(valid), SIMILARITY_BATCH):
            rows = valid[start : start + SIMILARITY_BATCH]
            users, articles = user_rows[rows], vector_rows[rows]
            dots = np.einsum("ij,ij->i", self.means[users], self.vectors[articles])
            norms = self.mean_norms[users] if self.vector_norms is None else self.mean_norms[users] * self.vector_norms[articles]
            with np.errstate(invalid="ignore", divide="ignore"):
                cosine = np.where(norms > 0, dots / norms, np.nan)
            out[rows] = np.clip(cosine, -1.0, 1.0)
        return out


class RecentShows:
    """Labelled shows of D-1 and D, sorted by (article, time), with running click counts: how many
    shows and clicks of an article fall in [T - window, T) is two binary searches."""

    def __init__(self, shows: pl.DataFrame, articles: pl.DataFrame, day: dt.date):
        self.origin = dt.datetime.combine(day - dt.timedelta(days=1), dt.time())
        self.codes = articles.select("news_id").unique().with_row_index("article_code")
        self.span = 3 * 86_400_000_000  # microseconds: D-1 .. D with room for T - 24 h
        assert self.codes.height * self.span < 2**63, "too many articles in a day for 64-bit keys"
        events = shows.join(self.codes, on="news_id").select(
            self._key(pl.col("article_code"), pl.col("time")).alias("key"), pl.col("clicked").cast(pl.Int64)
        ).sort("key")
        self.keys = events.get_column("key").to_numpy()
        self.clicks = np.concatenate([[0], np.cumsum(events.get_column("clicked").to_numpy())])

    def _key(self, code: pl.Expr, time: pl.Expr) -> pl.Expr:
        return code.cast(pl.Int64) * self.span + (time - pl.lit(self.origin)).dt.total_microseconds()

    def counts(self, rows: pl.DataFrame) -> list[pl.Series]:
        """Per row of `rows` (news_id, time): shows and clicks in each window before its time.
        Worked out with the rows sorted by key (the searches and click lookups then walk the shows
        in order), each result put back in the rows' order once."""
        coded = rows.select("news_id", "time").join(self.codes, on="news_id", how="left", maintain_order="left")
        end = coded.select(self._key(pl.col("article_code"), pl.col("time"))).to_series()
        order = end.arg_sort().to_numpy()  # Polars sorts on every core: 3x NumPy's argsort on a MIND-large day
        needles = end.to_numpy()[order]

        def unsorted(name: str, values: np.ndarray) -> pl.Series:
            result = np.empty(len(values), dtype=np.int32)
            result[order] = values
            return pl.Series(name, result)

        before_end = np.searchsorted(self.keys, needles, side="left")
        out = []
        for name, hours in POPULARITY_WINDOWS.items():
            start = np.searchsorted(self.keys, needles - hours * 3_600_000_000, side="left")
            out += [unsorted(f"candidate_impressions_{name}", before_end - start),
                    unsorted(f"candidate_clicks_{name}", self.clicks[before_end] - self.clicks[start])]
        return out


def silver_for_day(
    interactions: pl.DataFrame, behaviors: pl.DataFrame, news: pl.DataFrame, embeddings: pl.DataFrame,
    entity_embeddings: pl.DataFrame, daily_candidates: pl.DataFrame, recent_shows: pl.DataFrame, day: dt.date,
    lookback_days: int, chunk_rows: int = 500_000,
) -> Iterator[pl.DataFrame]:
    """Silver's stored rows (identifiers, label, cross features) of `day` in chunks of about `chunk_rows`.

    interactions, embeddings: those tables for `day`; entity_embeddings: news_id, entity_embedding of `day`.
    recent_shows: news_id, time, clicked of the labelled interactions of D-1 and D.
    behaviors: bronze behaviors of days D-W .. D (history read for D only, clicked_news for D-W .. D-1).
    news: news_id, category, subcategory of D-W .. D.
    daily_candidates: candidate_stats of D-W .. D.
    """
    rows = interactions.filter(pl.col("date") == day).select(ID_COLUMNS).sort("split", "impression_id", "position")
    day_articles = rows.select("news_id").unique()
    with ThreadPoolExecutor(1, thread_name_prefix="recent_shows") as pool:
        # For the whole day at once (per chunk, every chunk walked all the shows: 11 of a MIND-large day's 55 s),
        # on a second core while the users' preferences and vectors are worked out (NumPy, SciPy and Polars
        # release the GIL): 13 instead of 17 s to the first chunk of a MIND-large day, its 2 cores busy.
        recent = pool.submit(lambda: pl.DataFrame(RecentShows(recent_shows, day_articles, day).counts(rows)))
        users = active_users(behaviors, day)
        user_rows = users.select("user_id", pl.int_range(pl.len(), dtype=pl.Int64).alias("user_row"))
        window = lookback_window(behaviors, day, lookback_days)
        categories = news.select("news_id", "category", "subcategory").unique("news_id")
        articles = day_articles.join(categories, on="news_id", how="left")
        codes = {kind: articles.select(kind).drop_nulls().unique().sort(kind).with_row_index(f"{kind}_code")
                 for kind in ("category", "subcategory")}
        known_items, category_share, subcategory_share = _user_preferences(user_rows, users, window, categories, codes)
        candidates, prior = _candidate_history(daily_candidates, day, lookback_days)
        texts = UserVectors(users, embeddings.filter(pl.col("date") == day), "embedding", unit=True)
        entities = UserVectors(users, entity_embeddings, "entity_embedding", unit=False)
        # What a row needs of its user and of its article, joined once per day, not once per chunk.
        per_user = user_rows.join(known_items, on="user_row", how="left")
        shares = [Shares(share, kind, users.height, codes[kind].height)
                  for share, kind in ((category_share, "category"), (subcategory_share, "subcategory"))]
        per_article = (
            articles
            .join(codes["category"], on="category", how="left")
            .join(codes["subcategory"], on="subcategory", how="left")
            .join(candidates, on="news_id", how="left")
            .join(texts.index, on="news_id", how="left")
            .join(entities.index, on="news_id", how="left")
        )
        recent = recent.result()
    has_preferences = (pl.col("known_items") > 0) & pl.col("category").is_not_null()

    def chunk_at(start: int) -> pl.DataFrame:
        chunk = (
            rows.slice(start, chunk_rows)
            .join(per_user, on="user_id", how="left", maintain_order="left")
            .join(per_article, on="news_id", how="left", maintain_order="left")
        )
        chunk = chunk.with_columns(*(share.of(chunk) for share in shares))
        chunk_users = chunk.get_column("user_row").fill_null(-1).to_numpy()
        return chunk.with_columns(
            *[
                pl.when(has_preferences).then(pl.col(c).fill_null(0.0)).cast(pl.Float32).alias(c)
                for c in ("user_category_ratio", "user_subcategory_ratio")
            ],
            pl.Series("history_similarity",
                      texts.similarity(chunk_users, chunk.get_column("embedding_row").fill_null(-1).to_numpy()))
            .fill_nan(None),
            pl.col("shown").fill_null(0).alias("candidate_impressions"),
            pl.col("clicks").fill_null(0).alias("candidate_clicks"),
            ((pl.col("clicks").fill_null(0) + PRIOR_WEIGHT * prior) / (pl.col("labelled").fill_null(0) + PRIOR_WEIGHT))
            .cast(pl.Float32).alias("candidate_ctr"),
            ((pl.col("time") - FIRST_SEEN).dt.total_microseconds() / 86_400_000_000).cast(pl.Float32).alias("article_age_days"),
            ((pl.col("time") - FIRST_SEEN).dt.total_microseconds() / 3_600_000_000)
            .cast(pl.Float32).alias("hours_since_first_seen"),
            *recent.slice(start, chunk_rows).get_columns(),
            pl.Series("history_entity_similarity",
                      entities.similarity(chunk_users, chunk.get_column("entity_embedding_row").fill_null(-1).to_numpy()))
            .fill_nan(None),
        ).select(*ID_COLUMNS, *CROSS_COLUMNS)

    # Chunks are independent: two computed at once (the gathers and dot products release the GIL) while
    # storage inserts the one before. A MIND-large day's chunks alone: 10.4-12.4 s one at a time, 6.0 s two.
    yield from computed_ahead(chunk_at, range(0, max(rows.height, 1), chunk_rows), CHUNKS_IN_FLIGHT)


def rows_as_stream(chunks: Iterator[pl.DataFrame]) -> pa.RecordBatchReader:
    """Chunks of one schema as one Arrow stream, for storage to insert as they are computed."""
    first = next(chunks).to_arrow()

    def batches():
        yield from first.to_batches()
        for chunk in chunks:
            yield from chunk.to_arrow().cast(first.schema).to_batches()

    return pa.RecordBatchReader.from_batches(first.schema, batches())


# What the wide table joins on of the user and news features (their keys are silver's own).
JOINED_USER_COLUMNS = [c for c in USER_FEATURE_COLUMNS if c not in ("date", "user_id")]
JOINED_NEWS_COLUMNS = [c for c in NEWS_FEATURE_COLUMNS if c not in ("date", "news_id")]


def wide_view_sql(stored: str, user_features: str, news_features: str) -> str:
    """The wide silver table over the stored cross features: user and news features joined on."""
    columns = [*(f"c.{c}" for c in ID_COLUMNS), *(f"u.{c}" for c in JOINED_USER_COLUMNS),
               *(f"n.{c}" for c in JOINED_NEWS_COLUMNS), *(f"c.{c}" for c in CROSS_COLUMNS)]
    return (
        f"SELECT {', '.join(columns)} FROM {stored} c "
        f"LEFT JOIN {user_features} u ON u.date = c.date AND u.user_id = c.user_id "
        f"LEFT JOIN {news_features} n ON n.date = c.date AND n.news_id = c.news_id"
    )
