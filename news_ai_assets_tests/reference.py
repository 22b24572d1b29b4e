"""Slow, obviously correct reference implementations, written straight from the definitions.

One line, one impression, one user at a time, in plain Python. The fast code must agree.
"""

import datetime as dt
import json
from pathlib import Path


def parse_behaviors_file(path: Path, split: str) -> list[dict]:
    """Every well-formed line of a behaviors.tsv, as dicts shaped like a bronze/behaviors row."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            impression_id, user_id, time, history, impressions = line.rstrip("\n").split("\t")
            when = dt.datetime.strptime(time, "%m/%d/%Y %I:%M:%S %p")
            candidates = []
            for token in impressions.split():
                news_id, _, label = token.partition("-")
                candidates.append({"news_id": news_id, "clicked": {"1": True, "0": False}.get(label)})
            labelled = candidates[0]["clicked"] is not None
            clicks = sum(1 for c in candidates if c["clicked"]) if labelled else None
            rows.append(
                {
                    "date": when.date(),
                    "impression_id": int(impression_id),
                    "user_id": user_id,
                    "time": when,
                    "split": split,
                    "history": history.split(),
                    "impressions": candidates,
                    "history_length": len(history.split()),
                    "impressions_count": len(candidates),
                    "click_count": clicks,
                    "click_ratio": clicks / len(candidates) if labelled else None,
                    "day_of_week": when.weekday(),
                    "hour_of_day": when.hour,
                }
            )
    return rows


def parse_news_file(path: Path) -> dict[str, dict]:
    """news_id -> parsed row of a news.tsv."""

    def entities(text: str) -> list[dict]:
        return [
            {
                "label": e["Label"], "type": e["Type"], "wikidata_id": e["WikidataId"],
                "confidence": e["Confidence"], "occurrence_offsets": e["OccurrenceOffsets"],
                "surface_forms": e["SurfaceForms"],
            }
            for e in json.loads(text or "[]")
        ]

    news = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            news_id, category, subcategory, title, abstract, url, title_entities, abstract_entities = fields
            news.setdefault(
                news_id,
                {
                    "news_id": news_id, "category": category, "subcategory": subcategory, "title": title,
                    "abstract": abstract, "url": url, "title_entities": entities(title_entities),
                    "abstract_entities": entities(abstract_entities),
                },
            )
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
