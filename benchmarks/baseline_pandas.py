"""The approach we replace: per-row pandas loops, as the old feature stage was written.

Interactions: iterrows over impressions, a Python loop over each impression's candidates.
User features: for every active user, a boolean-mask scan of the whole behaviour table, then
iterrows over the user's rows into the per-user feature code (the tests' reference, which
follows the written definitions line by line). Same inputs, same outputs as ours: only slow.
"""

import datetime as dt

import pandas as pd

from news_ai_assets.compute import reference


def interactions(behaviors: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, impression in behaviors.iterrows():
        for position, candidate in enumerate(impression["impressions"], start=1):
            rows.append(
                {
                    "date": impression["date"], "impression_id": impression["impression_id"],
                    "user_id": impression["user_id"], "news_id": candidate["news_id"], "time": impression["time"],
                    "position": position, "clicked": candidate["clicked"], "split": impression["split"],
                }
            )
    return pd.DataFrame(rows)


def user_features(behaviors: pd.DataFrame, news: pd.DataFrame, day: dt.date, lookback: int) -> pd.DataFrame:
    categories = {}
    for _, article in news.iterrows():
        categories[article["news_id"]] = (article["category"], article["subcategory"])
    features = []
    for user in behaviors.loc[behaviors["date"] == day, "user_id"].unique():
        user_rows = behaviors[behaviors["user_id"] == user]  # a full scan per user
        rows = [row.to_dict() for _, row in user_rows.iterrows()]
        features.extend(reference.user_features(rows, categories, day, lookback).values())
    return pd.DataFrame(features)
