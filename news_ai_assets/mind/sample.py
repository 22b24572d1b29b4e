"""Deterministic MIND-format sample data, so every command works on a machine without MIND.

Shapes follow the published MIND statistics: 18 categories at MIND-like frequencies,
~37 candidates and ~1.5 clicks per impression (~4% CTR, at least one click per
labelled impression), heavy-tailed histories with a median near 19, a daily hour
pattern, ~5% empty abstracts, repeat users across days and an unlabelled test split.
Behaviours are generated and written in chunks, so MIND-large sizes stream through
a few hundred MB of memory.

    python -m news_ai_assets.mind.sample --scale small --out data/mind_small
"""

import argparse
import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

log = logging.getLogger(__name__)

SPLIT_DAYS = {
    "train": [dt.date(2019, 11, d) for d in range(9, 15)],
    "dev": [dt.date(2019, 11, 15)],
    "test": [dt.date(2019, 11, d) for d in range(16, 23)],
}

# (category, share of articles in MIND-small news.tsv, subcategories)
CATEGORIES = [
    ("news", 0.3076, ["newsus", "newspolitics", "newscrime", "newsworld", "newsscienceandtechnology"]),
    ("sports", 0.2830, ["football_nfl", "basketball_nba", "baseball_mlb", "soccer", "more_sports"]),
    ("finance", 0.0606, ["finance-companies", "markets", "personalfinance"]),
    ("foodanddrink", 0.0497, ["recipes", "restaurantsandnews", "foodnews"]),
    ("lifestyle", 0.0483, ["lifestylebuzz", "lifestyleroyals", "shop-holidays"]),
    ("travel", 0.0458, ["travelnews", "traveltripideas"]),
    ("video", 0.0403, ["news", "viral"]),
    ("weather", 0.0399, ["weathertopstories", "weather-news"]),
    ("health", 0.0368, ["medical", "wellness", "weightloss"]),
    ("autos", 0.0320, ["autosnews", "autosenthusiasts"]),
    ("tv", 0.0173, ["tvnews", "tv-celebrity"]),
    ("music", 0.0150, ["musicnews", "music-celebrity"]),
    ("movies", 0.0118, ["movienews", "movies-celebrity"]),
    ("entertainment", 0.0114, ["entertainment-celebrity", "celebrity"]),
    ("kids", 0.0003, ["kids"]),
    ("middleeast", 0.0001, ["middleeast"]),
    ("northamerica", 0.0001, ["northamerica"]),
    ("games", 0.0001, ["games"]),
]

TOPIC_WORDS = {
    "news": "police officials court state city county report election vote president governor law school fire",
    "sports": "game team season coach win loss player score playoff league quarterback trade injury fans",
    "finance": "stock market shares investors company earnings price bank rates economy deal sales",
    "foodanddrink": "recipe dinner chicken pie restaurant chef menu dessert holiday cheese easy meal",
    "lifestyle": "home royal family style gift holiday couple photos baby wedding dog life",
    "travel": "trip hotel city beach flight airport cruise park island destination road",
    "video": "watch video caught camera moment viral clip footage",
    "weather": "storm snow rain winds forecast cold temperatures weekend warning freeze",
    "health": "study doctors cancer risk heart diet sleep symptoms patients disease",
    "autos": "car truck ford tesla engine model electric recall driver speed",
    "tv": "show episode season finale star series host network",
    "music": "album song singer tour concert band awards",
    "movies": "film movie box office trailer director cast sequel",
    "entertainment": "celebrity star actor actress red carpet photos",
    "kids": "kids children toys games family",
    "middleeast": "region talks leaders",
    "northamerica": "canada mexico border",
    "games": "game players console release",
}
COMMON_WORDS = (
    "the a of to in for on with at by from new after over says year first could about "
    "more just people how why what this here most best its their week day time world"
).split()
# Knowledge-graph entities per category (label, type); every entity has a WikidataId Q<1000 + index>.
CATEGORY_ENTITIES = {
    "news": [("Donald Trump", "P"), ("Congress", "O"), ("California", "G"), ("Texas", "G"), ("FBI", "O"),
             ("New York City", "G"), ("Supreme Court", "O"), ("Chicago", "G")],
    "sports": [("National Football League", "O"), ("Dallas Cowboys", "O"), ("LeBron James", "P"),
               ("Los Angeles Lakers", "O"), ("Tom Brady", "P"), ("New England Patriots", "O"), ("NCAA", "O")],
    "finance": [("Federal Reserve", "O"), ("Amazon (company)", "O"), ("Wall Street", "G"), ("Apple Inc.", "O"),
                ("Walmart", "O")],
    "foodanddrink": [("Thanksgiving", "O"), ("McDonald's", "O"), ("Starbucks", "O"), ("Costco", "O")],
    "lifestyle": [("Prince Harry", "P"), ("Meghan, Duchess of Sussex", "P"), ("Queen Elizabeth II", "P"),
                  ("Christmas", "O")],
    "travel": [("Walt Disney World", "G"), ("Hawaii", "G"), ("Las Vegas", "G"), ("Delta Air Lines", "O")],
    "video": [("YouTube", "O"), ("Instagram", "O")],
    "weather": [("National Weather Service", "O"), ("Great Lakes", "G"), ("Colorado", "G")],
    "health": [("Centers for Disease Control and Prevention", "O"), ("Mayo Clinic", "O"), ("Cancer", "O")],
    "autos": [("Tesla, Inc.", "O"), ("Ford Motor Company", "O"), ("General Motors", "O"), ("Toyota", "O")],
    "tv": [("Netflix", "O"), ("The Voice", "O"), ("HBO", "O")],
    "music": [("Taylor Swift", "P"), ("Country Music Association Awards", "O"), ("Kanye West", "P")],
    "movies": [("Marvel Studios", "O"), ("Star Wars", "O"), ("Frozen II", "O")],
    "entertainment": [("Kim Kardashian", "P"), ("Jennifer Aniston", "P")],
    "kids": [("LEGO", "O")],
    "middleeast": [("Saudi Arabia", "G")],
    "northamerica": [("Canada", "G")],
    "games": [("PlayStation 4", "O")],
}
ENTITIES = [(label, kind, category) for category, pool in CATEGORY_ENTITIES.items() for label, kind in pool]
ENTITIES_OF = {category: [k for k, e in enumerate(ENTITIES) if e[2] == category] for category in CATEGORY_ENTITIES}
ENTITY_VECTOR_SHARE = 0.9  # of the entities a split names, those its entity_embedding.vec covers (MIND: most, not all)
HOUR_WEIGHTS = np.array(
    [2, 1.5, 1, 1, 1, 1.5, 3, 5, 6, 6.5, 6, 5.5, 6, 5.5, 5, 5, 5, 5.5, 6, 6.5, 6, 5, 4, 3]
)


@dataclass(frozen=True)
class Scale:
    users: int
    news: int
    impressions: dict[str, int]  # per split, over all of its days


SCALES = {
    "tiny": Scale(users=80, news=300, impressions={"train": 180, "dev": 30, "test": 140}),
    "demo": Scale(users=3_000, news=2_500, impressions={"train": 6_000, "dev": 1_000, "test": 7_000}),
    # MIND-small has no test split; its dev split is the 15th.
    "small": Scale(users=50_000, news=65_238, impressions={"train": 156_965, "dev": 73_152, "test": 0}),
    "large": Scale(
        users=1_000_000, news=161_013,
        impressions={"train": 2_232_748, "dev": 376_471, "test": 2_370_727},
    ),
}
CHUNK_IMPRESSIONS = 50_000
FIRST_DAY = SPLIT_DAYS["train"][0]


@dataclass(frozen=True)
class _World:
    """Articles and users shared by all splits."""

    category: np.ndarray  # index into CATEGORIES per article
    subcategory: np.ndarray  # index into that category's subcategories
    publish_day: np.ndarray  # days relative to FIRST_DAY; negative = before the log starts
    popularity: np.ndarray  # unnormalised Zipf weights
    user_activity: np.ndarray  # probability per user
    category_profile: np.ndarray  # per user and category: the share of the user's history in it
    history_offsets: np.ndarray  # per user, into history_items
    history_items: np.ndarray


def _zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights[rng.permutation(n)]


def _distinct_draws(wanted: np.ndarray, pool: np.ndarray, weights: np.ndarray, rng: np.random.Generator):
    """Per row, up to wanted[row] distinct items of `pool` drawn by weight (MIND lists never repeat).

    Draws twice as many as wanted, drops repeats within a row keeping first-seen order, then
    truncates each row: vectorised sampling without replacement. Returns (rows, items).
    """
    rows = np.repeat(np.arange(len(wanted)), 2 * wanted)
    items = pool[rng.choice(len(pool), size=len(rows), p=weights / weights.sum())]
    _, first = np.unique(rows * (pool.max() + 1) + items, return_index=True)
    keep = np.sort(first)
    rows, items = rows[keep], items[keep]
    row_start = np.searchsorted(rows, rows, side="left")
    within = np.arange(len(rows)) - row_start
    kept = within < wanted[rows]
    return rows[kept], items[kept]


def _build_world(scale: Scale, rng: np.random.Generator) -> _World:
    shares = np.array([c[1] for c in CATEGORIES])
    category = rng.choice(len(CATEGORIES), size=scale.news, p=shares / shares.sum())
    n_subs = np.array([len(c[2]) for c in CATEGORIES])[category]
    subcategory = np.floor(rng.random(scale.news) * n_subs).astype(np.int64)
    last_day = (SPLIT_DAYS["test"][-1] - FIRST_DAY).days
    # About 40% of articles predate the log: they feed histories.
    publish_day = rng.integers(-21, last_day + 1, size=scale.news)
    popularity = _zipf_weights(scale.news, 0.9, rng)

    activity = _zipf_weights(scale.users, 0.6, rng)
    # Heavy-tailed history lengths, median ~19, ~2.5% empty, as in MIND.
    lengths = np.clip(np.round(rng.lognormal(np.log(19), 1.0, size=scale.users)), 1, 400).astype(np.int64)
    lengths[rng.random(scale.users) < 0.025] = 0
    # Every category has an article that predates the log, in the histories of the most active users,
    # so even the tiny sample's news.tsv holds all 18 categories.
    category[: len(CATEGORIES)] = np.arange(len(CATEGORIES))
    subcategory[: len(CATEGORIES)] = 0
    publish_day[: len(CATEGORIES)] = -1
    old = np.flatnonzero(publish_day < 0)
    owners, items = _distinct_draws(lengths, old, popularity[old], rng)
    most_active = np.argsort(-activity, kind="stable")[:3]
    forced = np.arange(len(CATEGORIES))
    owners, items = np.concatenate([owners, most_active[forced % 3]]), np.concatenate([items, forced])
    order = np.argsort(owners, kind="stable")
    owners, items = owners[order], items[order]
    keep = np.sort(np.unique(owners * scale.news + items, return_index=True)[1])  # an article once per history
    owners, items = owners[keep], items[keep]
    lengths = np.bincount(owners, minlength=scale.users)
    profile = np.zeros((scale.users, len(CATEGORIES)), dtype=np.float32)
    np.add.at(profile, (owners, category[items]), 1.0)
    return _World(
        category=category,
        subcategory=subcategory,
        publish_day=publish_day,
        popularity=popularity,
        user_activity=activity / activity.sum(),
        category_profile=profile / np.maximum(lengths, 1)[:, None],
        history_offsets=np.concatenate([[0], np.cumsum(lengths)]),
        history_items=items,
    )


def _id_column(prefix: str, index: np.ndarray) -> pl.Expr:
    return pl.concat_str([pl.lit(prefix), pl.Series(index + 1).cast(pl.String)])


def _joined_lists(rows: np.ndarray, tokens: pl.Series, n_rows: int) -> pl.Series:
    """Space-joins tokens grouped by their row number (rows sorted ascending); missing rows give ''."""
    joined = (
        pl.DataFrame({"row": rows, "token": tokens})
        .group_by("row", maintain_order=True)
        .agg(pl.col("token").str.join(" "))
    )
    return (
        pl.DataFrame({"row": np.arange(n_rows)})
        .join(joined, on="row", how="left")
        .get_column("token")
        .fill_null("")
    )


def _candidates(world: _World, day_index: int, n: int, rng: np.random.Generator):
    """Per impression, distinct candidates from articles fresh on that day: (rows, article ids)."""
    fresh = np.flatnonzero((world.publish_day <= day_index) & (world.publish_day >= day_index - 2))
    wanted = np.clip(np.round(rng.lognormal(np.log(37) - 0.32, 0.8, size=n)), 2, min(300, len(fresh) // 2))
    # Impressions show popular articles more often, but less skewed than clicks are.
    return _distinct_draws(wanted.astype(np.int64), fresh, np.sqrt(world.popularity[fresh]), rng)


def _clicks(rows: np.ndarray, weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """At least one click per impression, ~1.5 on average, never every candidate; candidates are
    picked by weight (weighted sampling without replacement, Efraimidis-Spirakis keys)."""
    sizes = np.bincount(rows, minlength=n)
    wanted = np.minimum(1 + rng.poisson(0.5, size=n), np.maximum(sizes - 1, 1))
    order = np.lexsort((np.log(rng.random(len(rows))) / -weights, rows))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.empty(len(rows), dtype=np.int64)
    rank[order] = np.arange(len(rows)) - np.repeat(starts, sizes)
    return (rank < wanted[rows]).astype(np.int8)


def _behaviour_chunk(world, split, day, first_id, n, rng) -> tuple[pl.DataFrame, np.ndarray]:
    day_index = (day - FIRST_DAY).days
    users = rng.choice(len(world.user_activity), size=n, p=world.user_activity)
    seconds = (
        rng.choice(24, size=n, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum()) * 3600 + rng.integers(0, 3600, size=n)
    )
    times = pl.Series((np.datetime64(day, "s") + seconds.astype("timedelta64[s]")).astype("datetime64[ms]"))

    hist_len = world.history_offsets[users + 1] - world.history_offsets[users]
    hist_rows = np.repeat(np.arange(n), hist_len)
    hist_pos = np.arange(hist_len.sum()) - np.repeat(np.cumsum(hist_len) - hist_len, hist_len)
    hist_items = world.history_items[world.history_offsets[users][hist_rows] + hist_pos]

    cand_rows, cand_items = _candidates(world, day_index, n, rng)
    cand_tokens = pl.select(_id_column("N", cand_items)).to_series()
    if split != "test":
        # Users click popular articles more often, and articles like those in their history: the
        # weight grows with the share of the history in the candidate's category.
        affinity = world.category_profile[users[cand_rows], world.category[cand_items]]
        weights = np.sqrt(world.popularity[cand_items]) * (1.0 + 8.0 * affinity)
        labels = pl.Series(_clicks(cand_rows, weights, n, rng)).cast(pl.String)
        cand_tokens = pl.select(pl.concat_str([cand_tokens, pl.lit("-"), labels])).to_series()

    frame = pl.DataFrame(
        {
            "impression_id": pl.Series(np.arange(first_id, first_id + n)),
            "user_id": pl.select(_id_column("U", users)).to_series(),
            "time": times.dt.strftime("%-m/%-d/%Y %-I:%M:%S %p"),
            "history": _joined_lists(
                hist_rows, pl.select(_id_column("N", hist_items)).to_series(), n
            ),
            "impressions": _joined_lists(cand_rows, cand_tokens, n),
        }
    )
    referenced = np.unique(np.concatenate([hist_items, cand_items]))
    return frame, referenced


NUMBERS = ["2", "3", "5", "7", "10", "12", "20", "25", "100", "2019", "2020", "$1.5 million", "40%", "No. 1", "24/7"]
PUNCTUATION = [",", ":", "?", "!", "'s", " -", ";"]


def _words(topic: list[str], count: int, rng: np.random.Generator) -> list[str]:
    """Topic and common words, with digits and punctuation as news text has them."""
    words = rng.choice(topic + COMMON_WORDS, size=count).tolist()
    for _ in range(rng.binomial(count, 0.12)):
        words[rng.integers(count)] = NUMBERS[rng.integers(len(NUMBERS))]
    for _ in range(rng.binomial(count, 0.08)):
        position = rng.integers(count)
        words[position] += PUNCTUATION[rng.integers(len(PUNCTUATION))]
    return words


def _entities_of(world: _World, i: int, count: int, rng: np.random.Generator) -> list[int]:
    """Distinct entity indices for an article: mostly of its category, sometimes any."""
    own = ENTITIES_OF[CATEGORIES[world.category[i]][0]]
    picks = [own[rng.integers(len(own))] if rng.random() < 0.8 else int(rng.integers(len(ENTITIES))) for _ in range(count)]
    return list(dict.fromkeys(picks))


def _with_entities(words: list[str], entities: list[int], rng: np.random.Generator) -> tuple[str, list[dict]]:
    """The words with the entities' labels placed among them, and MIND's entity list for the text."""
    for k in entities:
        words.insert(int(rng.integers(len(words) + 1)), ENTITIES[k][0])
    text = " ".join(words)
    found = []
    for k in entities:
        label, kind, _ = ENTITIES[k]
        found.append({"Label": label, "Type": kind, "WikidataId": f"Q{1000 + k}", "Confidence": round(float(rng.uniform(0.6, 1.0)), 3),
                      "OccurrenceOffsets": [text.index(label)], "SurfaceForms": [label]})
    return text, found


def _title_and_abstract(world: _World, i: int, rng: np.random.Generator):
    cat = CATEGORIES[world.category[i]][0]
    topic = TOPIC_WORDS[cat].split()
    title_entities = _entities_of(world, i, int(rng.choice(4, p=[0.35, 0.35, 0.2, 0.1])), rng)
    title, title_found = _with_entities(_words(topic, int(rng.integers(5, 13)), rng), title_entities, rng)
    title = title[0].upper() + title[1:]
    if rng.random() < 0.02:
        title = f'"{title}," officials say'
    if rng.random() < 0.01:
        title += " 🎄 café"
    abstract, abstract_found = "", []
    if rng.random() >= 0.05:
        sentences = [
            " ".join(_words(topic, int(rng.integers(6, 16)), rng)).capitalize() + str(rng.choice([".", ".", ".", "!", "?"]))
            for _ in range(rng.integers(1, 4))
        ]
        abstract_entities = _entities_of(world, i, int(rng.choice(5, p=[0.3, 0.3, 0.2, 0.12, 0.08])), rng)
        abstract, abstract_found = _with_entities(" ".join(sentences).split(" "), abstract_entities, rng)
    return title, abstract, title_found, abstract_found


def _write_news(world: _World, articles: np.ndarray, path: Path, seed: int) -> set[int]:
    """Writes news.tsv for `articles`; returns the entities their titles and abstracts name."""
    lines, named = [], set()
    for i in articles:
        rng = np.random.default_rng([seed, 1, int(i)])  # an article reads the same in every split
        title, abstract, title_entities, abstract_entities = _title_and_abstract(world, int(i), rng)
        named.update(int(e["WikidataId"][1:]) - 1000 for e in title_entities + abstract_entities)
        cat, _, subs = CATEGORIES[world.category[i]]
        lines.append("\t".join([
            f"N{i + 1}", cat, subs[world.subcategory[i]], title, abstract,
            f"https://assets.msn.com/labs/mind/AA{i + 1:06d}.html",
            json.dumps(title_entities) if title_entities else "[]", json.dumps(abstract_entities) if abstract_entities else "[]",
        ]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return named


def _entity_vectors(seed: int) -> np.ndarray:
    """One 100-float vector per entity, the same in every split: its category's direction plus noise,
    so entities of one category lie close together, as TransE vectors of related entities do."""
    rng = np.random.default_rng([seed, 2])
    directions = rng.normal(0, 0.1, size=(len(CATEGORIES), 100))
    category = np.array([[c[0] for c in CATEGORIES].index(e[2]) for e in ENTITIES])
    return directions[category] + rng.normal(0, 0.05, size=(len(ENTITIES), 100))


def _write_entity_vectors(path: Path, named: set[int], seed: int) -> None:
    """The vectors of most of the entities the split names: each is left out with a fixed chance."""
    vectors = _entity_vectors(seed)
    kept = [k for k in sorted(named) if np.random.default_rng([seed, 3, k]).random() < ENTITY_VECTOR_SHARE]
    path.write_text("".join(f"Q{1000 + k}\t" + "\t".join(f"{v:.6f}" for v in vectors[k]) + "\n" for k in kept))


def generate(out_dir: Path, scale: str = "demo", seed: int = 7, days: int | None = None,
             first_day: dt.date = FIRST_DAY) -> list[Path]:
    """Writes MINDsample_<split>/ folders (behaviors.tsv, news.tsv, entity_embedding.vec); with `days`,
    only that many days of the calendar from `first_day` on, each as dense as at the whole scale (a split
    with no day among them is left out), for benchmarks at a scale's density in a fraction of its time,
    and for tests that need a few days of every split."""
    spec = SCALES[scale]
    window = set(sorted(d for ds in SPLIT_DAYS.values() for d in ds if d >= first_day)[:days])
    if not window:
        raise ValueError(f"no day of the sample's calendar is in {days} day(s) from {first_day}: nothing to generate")
    rng = np.random.default_rng(seed)
    world = _build_world(spec, rng)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for split, split_days in SPLIT_DAYS.items():
        total = spec.impressions[split]
        if total == 0:
            continue
        per_day = np.diff(np.linspace(0, total, len(split_days) + 1).round().astype(np.int64))
        kept = [(day, count) for day, count in zip(split_days, per_day) if day in window]
        if not kept:
            continue
        split_dir = out_dir / f"MINDsample_{split}"
        split_dir.mkdir(exist_ok=True)
        referenced = np.zeros(len(world.popularity), dtype=bool)
        next_id = 1
        with open(split_dir / "behaviors.tsv", "wb") as out:
            for day, count in kept:
                for start in range(0, count, CHUNK_IMPRESSIONS):
                    n = min(CHUNK_IMPRESSIONS, count - start)
                    frame, refs = _behaviour_chunk(world, split, day, next_id, n, rng)
                    frame.write_csv(out, separator="\t", include_header=False, quote_style="never")
                    referenced[refs] = True
                    next_id += n
            log.info("wrote %s impressions to %s", f"{next_id - 1:,}", split_dir / "behaviors.tsv")
        named = _write_news(world, np.flatnonzero(referenced), split_dir / "news.tsv", seed)
        _write_entity_vectors(split_dir / "entity_embedding.vec", named, seed)
        written.append(split_dir)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="directory to write MINDsample_<split>/ into")
    parser.add_argument("--scale", choices=sorted(SCALES), default="demo")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days", type=int, help="only the first N days of the calendar, at the scale's daily density")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for path in generate(args.out, args.scale, args.seed, args.days):
        print(path)


if __name__ == "__main__":
    main()
