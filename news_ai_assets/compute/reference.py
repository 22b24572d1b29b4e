"""Slow, obviously correct reference implementations, written straight from the definitions.

One line, one impression, one user at a time, in plain Python, the standard library only. The tests
hold the fast code in this folder to it; the benchmark times its per-user code as the per-row baseline.
"""

import datetime as dt
import hashlib
import json
import math
import re
import struct
import unicodedata
from pathlib import Path

from news_ai_assets.mind import grammar


def grammar_lines(data: bytes) -> tuple[list[bytes], int]:
    """A TSV file's non-blank lines and how many are blank: "\\r\\n", "\\r" and "\\n" each end a line."""
    lines = re.split(rb"\r\n|\r|\n", data)
    if lines and lines[-1] == b"":
        lines.pop()  # the terminator of the last line
    return [line for line in lines if line], sum(1 for line in lines if not line)


def _matches(field: grammar.Field, text: str) -> bool:
    return re.fullmatch(field.pattern, text) is not None


def behaviors_line(text: str, split: str) -> tuple[str | None, dict | None]:
    """(the reject reason, None) or (None, the bronze row) that a behaviors.tsv line means, field by
    field in the grammar's order (mind/grammar.py)."""
    fields = text.split("\t")
    if len(fields) != len(grammar.BEHAVIOR_FIELDS):
        return grammar.field_count_problem(len(grammar.BEHAVIOR_FIELDS), len(fields) > len(grammar.BEHAVIOR_FIELDS)), None
    id_field, user_field, time_field, history_field, impressions_field = grammar.BEHAVIOR_FIELDS
    impression_id, user_id, time, history, impressions = fields
    if impression_key(text) is None:
        return f"impression_id: {id_field.problem}", None
    if not _matches(user_field, user_id):
        return f"user_id: {user_field.problem}", None
    if not _matches(time_field, time):
        return f"time: {time_field.problem}", None
    try:
        when = dt.datetime.strptime(time, grammar.TIME_FORMAT)
    except ValueError:
        return f"time: {grammar.TIME_NOT_A_DAY}", None
    if not grammar.YEARS[0] <= when.year <= grammar.YEARS[1]:
        return f"time: {grammar.TIME_OUT_OF_RANGE}", None
    if not _matches(history_field, history):
        return f"history: {history_field.problem}", None
    shown = impressions.strip(" ")
    if shown == "":
        return f"impressions: {grammar.NO_IMPRESSIONS}", None
    tokens = shown.split(" ")
    labelled = re.fullmatch(grammar.LABELLED_IMPRESSIONS, shown) is not None
    if not _matches(impressions_field, impressions):
        mixed = re.fullmatch(grammar.ANY_IMPRESSION_TOKENS, impressions)
        return f"impressions: {grammar.MIXED_LABELS if mixed else impressions_field.problem}", None
    if split in grammar.LABELLED_SPLITS and not labelled:
        return f"impressions: {grammar.UNLABELLED_IN_LABELLED_SPLIT}", None
    candidates = [{"news_id": t.split("-")[0], "clicked": {"1": True, "0": False}.get(t.partition("-")[2])} for t in tokens]
    if len({c["news_id"] for c in candidates}) < len(candidates):
        return f"impressions: {grammar.REPEATED_CANDIDATE}", None
    listed = history.strip(" ").split(" ") if history.strip(" ") else []
    clicks = sum(1 for c in candidates if c["clicked"]) if labelled else None
    return None, {
        "date": when.date(), "impression_id": int(impression_id), "user_id": user_id, "time": when, "split": split,
        "history": listed, "impressions": candidates, "history_length": len(listed),
        "impressions_count": len(candidates), "click_count": clicks,
        "clicked_news": [c["news_id"] for c in candidates if c["clicked"]],
        "click_ratio": clicks / len(candidates) if labelled else None,
        "day_of_week": when.weekday(), "hour_of_day": when.hour,
    }


def impression_key(text: str) -> int | None:
    """The impression id of a behaviors.tsv line when its first field is one, else None."""
    first = text.split("\t")[0]
    if re.fullmatch(grammar.BEHAVIOR_FIELDS[0].pattern, first) and 1 <= int(first) <= grammar.MAX_IMPRESSION_ID:
        return int(first)
    return None


def _float32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def news_line(text: str) -> tuple[str | None, dict | None]:
    """(the reject reason, None) or (None, the parsed row) that a news.tsv line means."""
    fields = text.split("\t")
    if len(fields) != len(grammar.NEWS_FIELDS):
        return grammar.field_count_problem(len(grammar.NEWS_FIELDS), len(fields) > len(grammar.NEWS_FIELDS)), None
    values = dict(zip((f.name for f in grammar.NEWS_FIELDS), fields))
    for field in grammar.NEWS_FIELDS:
        if field.name in grammar.ENTITY_FIELDS:
            if problem := grammar.entity_list_problem(values[field.name]):
                return f"{field.name}: {problem}", None
        elif not _matches(field, values[field.name]):
            return f"{field.name}: {field.problem}", None

    def entities(text: str) -> list[dict]:
        return [
            {"label": e["Label"], "type": e["Type"], "wikidata_id": e["WikidataId"], "confidence": _float32(e["Confidence"]),
             "occurrence_offsets": e["OccurrenceOffsets"], "surface_forms": e["SurfaceForms"]}
            for e in json.loads(text or "[]")
        ]

    return None, {**values, **{f: entities(values[f]) for f in grammar.ENTITY_FIELDS},
                  "article_key": hashlib.md5(text.encode("utf-8")).hexdigest()}


def vector_line(line: bytes, kind: str) -> tuple[str | None, tuple[str, list[float]] | None]:
    """(the reject reason, None) or (None, (id, vector)) that a non-blank line of a .vec file means."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return grammar.INVALID_UTF8, None
    fields = text.rstrip(" \t\r").split("\t")
    if len(fields) != grammar.VECTOR_DIMENSION + 1:
        return f"line: {grammar.VECTOR_FIELD_COUNT_PROBLEM}", None
    if not re.fullmatch(grammar.VECTOR_IDS[kind], fields[0]):
        return grammar.vector_id_problem(kind), None
    vector = []
    for value in fields[1:]:
        try:
            if not re.fullmatch(grammar.VECTOR_VALUE, value) or not math.isfinite(number := _float32(float(value))):
                return f"values: {grammar.VECTOR_VALUE_PROBLEM}", None
        except OverflowError:
            return f"values: {grammar.VECTOR_VALUE_PROBLEM}", None
        vector.append(number)
    return None, (fields[0], vector)


def parse_behaviors_file(path: Path, split: str) -> list[dict]:
    """Every well-formed line of a behaviors.tsv, as dicts shaped like a bronze/behaviors row."""
    lines, _ = grammar_lines(path.read_bytes())
    return [row for line in lines if (row := behaviors_line(line.decode("utf-8"), split)[1]) is not None]


def parse_news_file(path: Path) -> dict[str, dict]:
    """news_id -> parsed row of a news.tsv (its first well-formed line)."""
    news = {}
    for line in grammar_lines(path.read_bytes())[0]:
        if (row := news_line(line.decode("utf-8"))[1]) is not None:
            news.setdefault(row["news_id"], row)
    return news


def interactions(behavior_rows: list[dict]) -> list[dict]:
    out = []
    for row in behavior_rows:
        for position, candidate in enumerate(row["impressions"], start=1):
            out.append(
                {
                    "date": row["date"], "impression_id": row["impression_id"], "user_id": row["user_id"],
                    "news_id": candidate["news_id"], "time": row["time"], "position": position,
                    "clicked": candidate["clicked"], "split": row["split"],
                }
            )
    return out


VOCABULARY = (
    "autos", "entertainment", "finance", "foodanddrink", "games", "health", "kids", "lifestyle",
    "middleeast", "movies", "music", "news", "northamerica", "sports", "travel", "tv", "video", "weather",
)


def _mean(values):
    return sum(values) / len(values) if values else None


def _pstd(values):
    if not values:
        return None
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


def _most_frequent(values):
    """Most frequent value; ties to the smallest. None for no values."""
    if not values:
        return None
    counts = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def user_features(behavior_rows: list[dict], categories: dict[str, tuple[str, str]], day: dt.date, lookback: int):
    """user_id -> feature dict, straight from the definitions in compute/user_features.py."""
    day_start = dt.datetime.combine(day, dt.time())
    today = sorted((r for r in behavior_rows if r["date"] == day),
                   key=lambda r: (r["user_id"], r["time"], r["split"], r["impression_id"]))
    users = {}
    for r in today:
        users.setdefault(r["user_id"], r["history"])
    out = {}
    for user, history in users.items():
        rows = [r for r in behavior_rows
                if r["user_id"] == user and day - dt.timedelta(days=lookback) <= r["date"] < day]
        labelled = [r for r in rows if r["click_count"] is not None]
        f = {"user_id": user, "date": day, "behavior_count": len(rows), "history_length": len(history)}
        imps = [r["impressions_count"] for r in rows]
        clicks = [r["click_count"] for r in labelled]
        ratios = [r["click_ratio"] for r in labelled]
        f.update(
            impressions_count_mean=_mean(imps), impressions_count_min=min(imps, default=None),
            impressions_count_max=max(imps, default=None), impressions_count_sum=sum(imps),
            click_count_mean=_mean(clicks), click_count_min=min(clicks, default=None),
            click_count_max=max(clicks, default=None), click_count_sum=sum(clicks),
            click_ratio_mean=_mean(ratios), click_ratio_min=min(ratios, default=None),
            click_ratio_max=max(ratios, default=None),
        )
        labelled_imps = sum(r["impressions_count"] for r in labelled)
        f["overall_ctr"] = sum(clicks) / labelled_imps if labelled_imps else 0.0

        times = sorted(r["time"] for r in rows)
        hours = lambda a, b: (b - a).total_seconds() / 3600  # noqa: E731
        gaps = [hours(a, b) for a, b in zip(times, times[1:])]
        f["first_activity"] = times[0] if times else None
        f["last_activity"] = times[-1] if times else None
        f["activity_duration_hours"] = hours(times[0], times[-1]) if times else None
        f["days_active"] = len({r["day_of_week"] for r in rows})
        f["most_active_day"] = _most_frequent([r["day_of_week"] for r in rows])
        f["hours_active"] = len({r["hour_of_day"] for r in rows})
        f["most_active_hour"] = _most_frequent([r["hour_of_day"] for r in rows])
        whole_days = math.floor(f["activity_duration_hours"] / 24) if times else 0
        f["activity_frequency"] = len(rows) / max(1, whole_days)
        f["avg_hours_between"] = _mean(gaps)
        f["min_hours_between"] = min(gaps, default=None)
        f["max_hours_between"] = max(gaps, default=None)
        f["std_hours_between"] = _pstd(gaps)
        f["bursty_session_ratio"] = sum(g < 0.5 for g in gaps) / len(gaps) if gaps else None
        f["days_since_last_activity"] = hours(times[-1], day_start) / 24 if times else None
        f["is_recent_active"] = bool(times) and f["days_since_last_activity"] <= 1
        for d in range(7):
            f[f"day_{d}_ratio"] = sum(r["day_of_week"] == d for r in rows) / len(rows) if rows else None
        for part, (lo, hi) in {"morning": (6, 12), "afternoon": (12, 18), "evening": (18, 24), "night": (0, 6)}.items():
            f[f"{part}_ratio"] = sum(lo <= r["hour_of_day"] < hi for r in rows) / len(rows) if rows else None

        items = list(history) + [c["news_id"] for r in rows for c in r["impressions"] if c["clicked"]]
        known = [categories[i] for i in items if i in categories]
        f["total_content_interactions"] = len(items)
        cats = [c for c, _ in known]
        if cats:
            counts = {c: cats.count(c) for c in set(cats)}
            f["category_diversity"] = -sum(n / len(cats) * math.log2(n / len(cats)) for n in counts.values())
        else:
            f["category_diversity"] = None
        f["top_category"] = _most_frequent(cats)
        f["top_subcategory"] = _most_frequent([s for _, s in known])
        for c in VOCABULARY:
            f[f"category_ratio_{c}"] = cats.count(c) / len(cats) if cats else None
        f["category_ratio_other"] = sum(c not in VOCABULARY for c in cats) / len(cats) if cats else None

        for n in (7, 14, 30):
            recent = [r for r in labelled if (day - r["date"]).days <= min(n, lookback)]
            shown = sum(r["impressions_count"] for r in recent)
            f[f"ctr_{n}d"] = sum(r["click_count"] for r in recent) / shown if shown else 0.0
        dates = sorted({r["date"] for r in rows})
        day_gaps = [(b - a).days for a, b in zip(dates, dates[1:])]
        f["engagement_consistency"] = 1 / (1 + _pstd(day_gaps)) if day_gaps else None
        weights = [0.85 ** (day - r["date"]).days for r in labelled]
        shown = sum(w * r["impressions_count"] for w, r in zip(weights, labelled))
        f["recency_weighted_ctr"] = sum(w * r["click_count"] for w, r in zip(weights, labelled)) / shown if shown else 0.0
        out[user] = f
    return out


def _sentence_count(text: str) -> int:
    text = text.strip()
    count, i = 0, 0
    while i < len(text):
        if text[i] in ".!?":
            while i < len(text) and text[i] in ".!?":
                i += 1
            if i == len(text) or text[i].isspace():
                count += 1
        else:
            i += 1
    return count + (1 if text and text[-1] not in ".!?" else 0)


def news_features(row: dict) -> dict:
    """One article's statistics, character by character."""
    text = (row["title"] + " " + row["abstract"]).strip()
    words = text.split()
    chars = len(text)
    category = lambda c: unicodedata.category(c)  # noqa: E731
    out = {"news_id": row["news_id"], "category": row["category"], "subcategory": row["subcategory"]}
    for field in ("title", "abstract"):
        out[f"{field}_char_count"] = len(row[field])
        out[f"{field}_word_count"] = len(row[field].split())
        out[f"{field}_sentence_count"] = _sentence_count(row[field])
    out["capital_ratio"] = sum(category(c) == "Lu" for c in text) / chars if chars else None
    out["digit_ratio"] = sum(category(c) == "Nd" for c in text) / chars if chars else None
    out["special_char_ratio"] = (
        sum(category(c)[0] not in "LN" and c != " " for c in text) / chars if chars else None
    )
    out["avg_word_length"] = sum(len(w) for w in words) / len(words) if words else None
    out["unique_word_ratio"] = len({w.lower() for w in words}) / len(words) if words else None
    out["title_entity_count"] = len(row["title_entities"])
    out["abstract_entity_count"] = len(row["abstract_entities"])
    out["total_entity_count"] = len(row["title_entities"]) + len(row["abstract_entities"])
    return out


def _cosine_of_mean(history: list[list[float]], vector: list[float] | None) -> float | None:
    """Cosine between the mean of `history` and `vector`; None when either is missing or zero."""
    if not history or vector is None:
        return None
    mean = [sum(v[k] for v in history) / len(history) for k in range(len(history[0]))]
    norms = math.sqrt(sum(x * x for x in mean)) * math.sqrt(sum(x * x for x in vector))
    return max(-1.0, min(1.0, sum(a * b for a, b in zip(mean, vector)) / norms)) if norms > 0 else None


def silver_rows(
    interactions: list[dict], user_features: dict, news_features: dict, embeddings: dict,
    behavior_rows: list[dict], categories: dict[str, tuple[str, str]], day: dt.date, lookback: int,
    entity_vectors: dict,
) -> list[dict]:
    """Silver rows of `day`, one candidate at a time, from the definitions in compute/silver.py.

    user_features: user_id -> row; news_features: news_id -> row; embeddings, entity_vectors:
    news_id -> vector (articles with one).
    """
    start = day - dt.timedelta(days=lookback)
    window = [r for r in behavior_rows if start <= r["date"] < day]
    today = sorted((r for r in behavior_rows if r["date"] == day),
                   key=lambda r: (r["user_id"], r["time"], r["split"], r["impression_id"]))
    histories = {}
    for r in today:
        histories.setdefault(r["user_id"], r["history"])
    labelled_shows = sum(r["impressions_count"] for r in window if r["click_count"] is not None)
    prior = sum(r["click_count"] for r in window if r["click_count"] is not None) / labelled_shows if labelled_shows else 0.0

    out = []
    for row in interactions:
        user, news = row["user_id"], row["news_id"]
        items = list(histories[user]) + [c["news_id"] for r in window if r["user_id"] == user
                                         for c in r["impressions"] if c["clicked"]]
        known = [categories[i] for i in items if i in categories]
        cat = news_features.get(news, {}).get("category")
        sub = news_features.get(news, {}).get("subcategory")
        similarity = _cosine_of_mean([embeddings[i] for i in histories[user] if i in embeddings], embeddings.get(news))
        shows = [(r, c) for r in window for c in r["impressions"] if c["news_id"] == news]
        labelled = [(r, c) for r, c in shows if r["click_count"] is not None]
        clicks = sum(1 for _, c in labelled if c["clicked"])
        first_shown = min((r["time"] for r in window + today for c in r["impressions"]
                           if c["news_id"] == news and r["time"] <= row["time"]), default=None)
        age = (row["time"] - first_shown).total_seconds() if first_shown is not None else None
        recent = {}
        for name, hours in (("1h", 1), ("6h", 6), ("24h", 24)):
            shown = [c for r in behavior_rows if r["click_count"] is not None
                     and row["time"] - dt.timedelta(hours=hours) <= r["time"] < row["time"]
                     for c in r["impressions"] if c["news_id"] == news]
            recent[f"candidate_impressions_{name}"] = len(shown)
            recent[f"candidate_clicks_{name}"] = sum(1 for c in shown if c["clicked"])
        out.append(
            {
                **row,
                **{k: v for k, v in user_features[user].items() if k not in ("date", "user_id")},
                **{k: v for k, v in news_features.get(news, {}).items() if k not in ("date", "news_id")},
                "user_category_ratio": sum(c == cat for c, _ in known) / len(known) if known and cat is not None else None,
                "user_subcategory_ratio": sum(s == sub for _, s in known) / len(known) if known and cat is not None else None,
                "history_similarity": similarity,
                "candidate_impressions": len(shows),
                "candidate_clicks": clicks,
                "candidate_ctr": (clicks + 20 * prior) / (len(labelled) + 20),
                "article_age_days": age / 86400 if age is not None else None,
                "hours_since_first_seen": age / 3600 if age is not None else None,
                **recent,
                "history_entity_similarity": _cosine_of_mean(
                    [entity_vectors[i] for i in histories[user] if i in entity_vectors], entity_vectors.get(news)),
            }
        )
    return out


def vocabulary_ids(days: list[dict[str, dict]]) -> dict[str, dict[str, int]]:
    """Ids as the vocabularies give them: day after day (each day's articles, news_id -> row), the
    tokens not seen before get the next ids in sorted order, from 1."""
    ids: dict[str, dict[str, int]] = {"news": {}, "category": {}, "subcategory": {}}
    for articles in days:
        for vocabulary, tokens in ids.items():
            seen = {news_id if vocabulary == "news" else row[vocabulary] for news_id, row in articles.items()}
            for token in sorted(seen - tokens.keys()):
                tokens[token] = len(tokens) + 1
    return ids


def impressions(behavior_rows: list[dict], articles: dict[str, dict], ids: dict[str, dict[str, int]], day: dt.date,
                history_size: int) -> list[dict]:
    """silver/impressions rows of `day`; articles: news_id -> row of the day's articles."""

    def index(news_id: str, vocabulary: str) -> int:
        if news_id not in articles:
            return 0
        return ids[vocabulary][news_id if vocabulary == "news" else articles[news_id][vocabulary]]

    out = []
    for row in behavior_rows:
        if row["date"] != day:
            continue
        history = row["history"][len(row["history"]) - history_size:] if len(row["history"]) > history_size else row["history"]
        candidates = [c["news_id"] for c in row["impressions"]]
        labelled = row["click_count"] is not None
        out.append({
            "date": day, "split": row["split"], "impression_id": row["impression_id"], "user_id": row["user_id"],
            "time": row["time"], "history": history, "history_length": len(row["history"]),
            "candidates": candidates, "labels": [int(c["clicked"]) for c in row["impressions"]] if labelled else None,
            **{f"history{'' if v == 'news' else '_' + v}_index": [index(n, v) for n in history] for v in ids},
            **{f"candidate{'' if v == 'news' else '_' + v}_index": [index(n, v) for n in candidates] for v in ids},
        })
    return out


def entity_features(article: dict, vectors: dict[str, list[float]]) -> dict:
    """Entity features of one parsed news.tsv row (parse_news_file), from the definitions in
    compute/entity_features.py; vectors: WikidataId -> vector."""

    def mean(found: list[list[float]]) -> list[float] | None:
        return [sum(v[k] for v in found) / len(found) for k in range(len(found[0]))] if found else None

    title = [e["wikidata_id"] for e in article["title_entities"]]
    abstract = [e["wikidata_id"] for e in article["abstract_entities"]]
    found = [vectors[e] for e in title + abstract if e in vectors]
    return {
        "entity_count": len(title + abstract),
        "entities_with_vector": len(found),
        "entity_vector_share": len(found) / len(title + abstract) if title + abstract else None,
        "title_entity_embedding": mean([vectors[e] for e in title if e in vectors]),
        "abstract_entity_embedding": mean([vectors[e] for e in abstract if e in vectors]),
        "entity_embedding": mean(found),
    }


def read_vector_file(path: Path, kind: str = "entity") -> dict[str, list[float]]:
    """Id -> vector of the well-formed lines of a .vec file (the first line of an id wins)."""
    vectors = {}
    for line in path.read_bytes().split(b"\n"):
        if line.strip(b" \t\r") and (parsed := vector_line(line, kind)[1]) is not None:
            vectors.setdefault(*parsed)
    return vectors


def ranking_metrics(candidates: list[dict]) -> dict | None:
    """MIND's per-impression metrics of one impression's candidates ({position, clicked, score});
    None when it has no clicked or no unclicked candidate."""
    labels = [int(c["clicked"]) for c in sorted(candidates, key=lambda c: (-c["score"], c["position"]))]
    positives = [c["score"] for c in candidates if c["clicked"]]
    negatives = [c["score"] for c in candidates if not c["clicked"]]
    if not positives or not negatives:
        return None

    def dcg(ranked: list[int], k: int) -> float:
        return sum((2**label - 1) / math.log2(i + 2) for i, label in enumerate(ranked[:k]))

    pairs = [1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives]
    return {
        "group_auc": sum(pairs) / len(pairs),
        "mrr": sum(label / (i + 1) for i, label in enumerate(labels)) / sum(labels),
        "ndcg_5": dcg(labels, 5) / dcg(sorted(labels, reverse=True), 5),
        "ndcg_10": dcg(labels, 10) / dcg(sorted(labels, reverse=True), 10),
    }
