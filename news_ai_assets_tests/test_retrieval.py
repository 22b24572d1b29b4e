"""Point-in-time retrieval (news_ai_assets/retrieval.py): silver's features for any events, as of their time."""

import datetime as dt
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from news_ai_assets.compute.silver import CROSS_COLUMNS
from news_ai_assets.retrieval import RetrievalInputError, features_for_events
from news_ai_assets.storage.duckdb_file import DuckDBDatabase
from news_ai_assets_tests.compare import assert_rows_match, assert_same_rows
from news_ai_assets_tests.doc_blocks import clean_env
from news_ai_assets_tests.pipeline import materialize, read_table
from news_ai_assets_tests.raw import reference_silver

DAY = dt.date(2019, 11, 14)  # the tiny graph holds 2019-11-09 .. 15
POPULARITY = [c for c in CROSS_COLUMNS if c.endswith(("_1h", "_6h", "_24h"))]


@pytest.fixture(scope="module")
def stored(tmp_path_factory, tiny_graph) -> DuckDBDatabase:
    copy = tmp_path_factory.mktemp("retrieval") / "graph.duckdb"
    shutil.copy(tiny_graph, copy)
    return DuckDBDatabase(database=str(copy))


def _features(silver: pl.DataFrame) -> list[str]:
    return [c for c in silver.columns if c not in ("date", "impression_id", "position", "split", "clicked")]


def test_events_equal_to_silver_rows_get_silver_values_cell_for_cell(stored):
    silver = read_table(stored.database, "silver.training_examples").filter(
        pl.col("date").is_in([dt.date(2019, 11, 10), dt.date(2019, 11, 15)]))  # a train and a dev day
    shuffled = silver.sample(fraction=1.0, shuffle=True, seed=3)  # the caller's order, days mixed
    result = features_for_events(shuffled.select("user_id", "news_id", "time").to_pandas(), stored)
    assert result.days == [dt.date(2019, 11, 10), dt.date(2019, 11, 15)]
    assert result.unseen_users == 0 and result.unseen_articles == 0
    assert_same_rows(shuffled.select(_features(silver)), result.rows, "retrieved", tol=0.0)  # bit for bit, in order


def _as_the_reference_computes(raw, day: dt.date, events: pl.DataFrame, result) -> list[dict]:
    rows = [{"date": day, "impression_id": e["event"], "user_id": e["user_id"], "news_id": e["news_id"], "time": e["time"],
             "position": 1, "split": "event", "clicked": None} for e in events.iter_rows(named=True)]
    return [{"event": r.pop("impression_id"), **{k: v for k, v in r.items() if k in result.rows.columns}}
            for r in reference_silver(raw, day, rows)]


def test_an_article_first_shown_after_the_event_has_no_age_yet(stored, raw):
    first = dt.date(2019, 11, 9)  # the first day: every article's first showing is on it
    silver = read_table(stored.database, "silver.training_examples").filter(pl.col("date") == first)
    earliest = silver.sort("time").head(3)  # the day's first impression: shown at the event's time, age 0
    events = pl.concat([earliest, silver.sample(n=12, seed=2)]).select("user_id", "news_id", pl.lit(earliest["time"][0]).alias("time"))
    result = features_for_events(events.with_row_index("event"), stored)
    ages = result.rows.get_column("article_age_days")
    assert ages.head(3).to_list() == [0.0] * 3 and ages.null_count() >= 3  # first shown later
    assert_rows_match(result.rows, _as_the_reference_computes(raw, first, events.with_row_index("event"), result), ["event"])


def test_shifted_times_get_the_slow_references_features_as_of_their_time(stored, raw):
    silver = read_table(stored.database, "silver.training_examples").filter(pl.col("date") == DAY)
    picked = silver.sample(n=40, seed=5)
    start = dt.datetime.combine(DAY, dt.time())
    shifted = [min(max(t + dt.timedelta(minutes=m), start), start + dt.timedelta(hours=23, minutes=59))
               for t, m in zip(picked.get_column("time"), range(-300, 300, 15))]
    events = picked.select("user_id", "news_id").with_columns(pl.Series("time", shifted, dtype=pl.Datetime("us")))
    # Window edges: a labelled show at s is not before an event at s, and is in the 1 h (6 h, 24 h) window of one
    # at s + 1 h (6 h, 24 h: a show of D-1).
    shows = read_table(stored.database, "features.interactions").filter(pl.col("clicked").is_not_null())
    today = shows.filter((pl.col("date") == DAY) & (pl.col("time") < start + dt.timedelta(hours=17))).sample(n=10, seed=7)
    yesterday = shows.filter(pl.col("date") == DAY - dt.timedelta(days=1)).sample(n=10, seed=7)
    users = picked.get_column("user_id")
    events = pl.concat([events] + [
        edges.select("news_id", "time").with_columns(pl.lit(users[i]).alias("user_id"), pl.col("time") + dt.timedelta(hours=hours))
        .select(events.columns)
        for i, (edges, hours) in enumerate(((today, 0), (today, 1), (today, 6), (yesterday, 24)))
    ]).with_row_index("event")
    assert events.get_column("time").dt.date().unique().to_list() == [DAY]

    result = features_for_events(events, stored)
    expected = _as_the_reference_computes(raw, DAY, events, result)
    assert set(expected[0]) == set(result.rows.columns)
    assert_rows_match(result.rows, expected, key=["event"], tol=1e-6)
    # The shifts moved the windows: the comparison saw popularity that differs from the rows' own.
    moved = result.rows.head(picked.height).select(POPULARITY).to_numpy() != picked.select(POPULARITY).to_numpy()
    assert moved.any(axis=1).sum() > picked.height / 3
    assert result.rows.get_column("candidate_impressions_1h").sum() > 0


def test_the_cli_keeps_the_callers_order_and_columns_and_counts_unseen_users_and_articles(stored, tmp_path):
    silver = read_table(stored.database, "silver.training_examples").filter(pl.col("date") == DAY).head(3)
    seen = silver.row(0, named=True)
    events = pl.DataFrame({
        "request": ["b", "a", "c", "d"],
        "user_id": [seen["user_id"], "U_nobody", seen["user_id"], silver.row(2, named=True)["user_id"]],
        "news_id": [seen["news_id"], seen["news_id"], "N_nowhere", silver.row(2, named=True)["news_id"]],
        "time": [str(seen["time"]), str(seen["time"]), str(seen["time"]), str(silver.row(2, named=True)["time"])],
    })
    events.write_csv(tmp_path / "events.csv")
    env = clean_env(NEWS_AI_DUCKDB_PATH=stored.database)
    done = subprocess.run([sys.executable, "-m", "news_ai_assets.retrieval", str(tmp_path / "events.csv"),
                           "--out", str(tmp_path / "out" / "result.parquet")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "4 events on 1 day(s)" in done.stdout and "1 events of users with no impression that day" in done.stdout
    assert "1 of articles not listed that day" in done.stdout
    result = pl.read_parquet(tmp_path / "out" / "result.parquet")
    assert result.columns[:4] == ["request", "user_id", "news_id", "time"] and result.get_column("request").to_list() == list("bacd")
    first, nobody, nowhere, last = result.iter_rows(named=True)
    for got, want in ((first, seen), (last, silver.row(2, named=True))):
        assert all(got[c] == want[c] for c in _features(silver) if want[c] is not None and c not in ("time",))
    assert nobody["behavior_count"] is None and nobody["history_similarity"] is None and nobody["user_category_ratio"] is None
    assert nobody["category"] == first["category"] and nobody["candidate_impressions_24h"] == first["candidate_impressions_24h"]
    assert nowhere["category"] is None and nowhere["history_similarity"] is None and nowhere["behavior_count"] == first["behavior_count"]
    assert nowhere["candidate_impressions_24h"] == 0 and nowhere["article_age_days"] is None

    events.with_columns(pl.lit("2019-11-20 08:00:00").alias("time")).write_csv(tmp_path / "later.csv")
    failed = subprocess.run([sys.executable, "-m", "news_ai_assets.retrieval", str(tmp_path / "later.csv"),
                             "--out", str(tmp_path / "later.parquet")], env=env, capture_output=True, text=True)
    assert failed.returncode == 1 and "features/interactions for 2019-11-19, 2019-11-20" in failed.stderr
    assert not (tmp_path / "later.parquet").exists()

    # A database that is not there, or a link to one that is gone (refused by the settings), is named, and
    # nothing is created.
    (tmp_path / "gone.duckdb").symlink_to(tmp_path / "unmounted" / "graph.duckdb")
    for database, said in ((tmp_path / "mistyped" / "graph.duckdb", "holds no partition written by this pipeline"),
                           (tmp_path / "gone.duckdb", "which does not exist; refusing to create a new database behind it")):
        missing = subprocess.run([sys.executable, "-m", "news_ai_assets.retrieval", str(tmp_path / "events.csv"),
                                  "--out", str(tmp_path / "none.parquet")], env=clean_env(NEWS_AI_DUCKDB_PATH=str(database)),
                                 capture_output=True, text=True)
        assert missing.returncode == 1 and str(database) in missing.stderr and said in missing.stderr
    assert not (tmp_path / "mistyped").exists() and not (tmp_path / "unmounted").exists()
    assert not (tmp_path / "none.parquet").exists()
    # An events file with a header and no row, or none at all, is refused.
    (tmp_path / "empty.csv").write_text("user_id,news_id,time\n")
    for events in (tmp_path / "empty.csv", tmp_path / "absent.csv"):
        refused = subprocess.run([sys.executable, "-m", "news_ai_assets.retrieval", str(events), "--out",
                                  str(tmp_path / "none.parquet")], env=env, capture_output=True, text=True)
        assert refused.returncode == 1 and ("no events given" in refused.stderr or f"no events file at {events}" in refused.stderr)


def test_events_on_days_not_stored_fail_naming_the_days_and_the_command(stored):
    events = pl.DataFrame({"user_id": ["U1", "U2"], "news_id": ["N1", "N2"],
                           "time": [dt.datetime(2019, 11, 12, 9), dt.datetime(2019, 11, 20, 9)]})
    with pytest.raises(RetrievalInputError) as failure:
        features_for_events(events, stored)
    message = str(failure.value)
    assert "bronze/behaviors for 2019-11-16, 2019-11-17, 2019-11-18, 2019-11-19, 2019-11-20" in message
    assert "features/user_features for 2019-11-20" in message and "2019-11-12" not in message
    assert "dg launch -m news_ai_assets.definitions --assets '* and not group:gold' --partition-range 2019-11-16...2019-11-20" in message
    with pytest.raises(RetrievalInputError, match="outside the partitions"):
        features_for_events(events.with_columns(pl.lit(dt.datetime(2031, 1, 1)).alias("time")), stored)
    with pytest.raises(RetrievalInputError, match="lack the column"):
        features_for_events(events.drop("news_id"), stored)
    with pytest.raises(RetrievalInputError, match="1 events have no user_id, news_id or"):
        features_for_events(events.with_columns(pl.Series("time", [dt.datetime(2019, 11, 12), None])), stored)


def _flip_labels_from(mind: Path, target: Path, cut: dt.datetime) -> int:
    """A copy of the MIND folder with every label of an impression at or after `cut` flipped; how many."""
    flipped = 0
    shutil.copytree(mind, target)
    for behaviors in target.glob("MIND*/behaviors.tsv"):
        lines = []
        for line in behaviors.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) == 5 and dt.datetime.strptime(fields[2], "%m/%d/%Y %I:%M:%S %p") >= cut:
                fields[4], count = re.subn(r"-([01])\b", lambda m: "-" + "10"[int(m.group(1))], fields[4])
                flipped += count
            lines.append("\t".join(fields))
        behaviors.write_text("\n".join(lines) + "\n")
    return flipped


@pytest.mark.slow
def test_no_value_depends_on_a_label_at_or_after_the_events_time(tmp_path_factory, tiny_mind, stored):
    """Flip every label from a cut time on in the raw files and rebuild: for any events at or before
    the cut (seen and unseen users and articles), every value is unchanged; after it, some change."""
    day, cut = dt.date(2019, 11, 12), dt.datetime(2019, 11, 12, 12, 30)
    folder = tmp_path_factory.mktemp("flipped")
    assert _flip_labels_from(tiny_mind, folder / "mind", cut) > 100
    materialize(folder / "flipped.duckdb", folder / "mind", "2019-11-09", day.isoformat())
    flipped = DuckDBDatabase(database=str(folder / "flipped.duckdb"))
    silver = read_table(stored.database, "silver.training_examples").filter(pl.col("date") == day)
    users = [*silver.get_column("user_id").unique().sort().to_list()[:30], "U_nobody"]
    articles = [*silver.get_column("news_id").unique().sort().to_list()[:30], "N_nowhere"]
    start = dt.datetime.combine(day, dt.time())

    @settings(max_examples=30, deadline=None, database=None, derandomize=True)
    @given(st.lists(st.tuples(st.sampled_from(users), st.sampled_from(articles),
                                         st.integers(0, int((cut - start).total_seconds()))), min_size=1, max_size=12))
    def unchanged(events):
        frame = pl.DataFrame(events, schema=["user_id", "news_id", "seconds"], orient="row").select(
            "user_id", "news_id", (pl.lit(start) + pl.duration(seconds=pl.col("seconds"))).alias("time"))
        # floats to the docs' 1e-6: the two graphs embedded the texts in other batches (last bits of the vectors)
        assert_same_rows(features_for_events(frame, stored).rows, features_for_events(frame, flipped).rows, "as of")

    unchanged()
    at_the_cut = silver.select("user_id", "news_id", pl.lit(cut).alias("time"))
    assert_same_rows(features_for_events(at_the_cut, stored).rows, features_for_events(at_the_cut, flipped).rows, "at the cut")
    later = at_the_cut.with_columns(pl.col("time") + dt.timedelta(hours=3))
    before, after = features_for_events(later, stored).rows, features_for_events(later, flipped).rows
    assert not before.select(POPULARITY).equals(after.select(POPULARITY))  # the flip is seen where it may be
