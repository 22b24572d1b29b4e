"""Point-in-time retrieval's speed beside silver's own, on a kept loop database (benchmarks/loop.py build).

    .venv/bin/python benchmarks/retrieval.py benchmarks/results/loop-small --events 1000000

Draws EVENTS events from the kept silver rows of every kept day (a shown candidate's user and
article, its time moved by up to 3 hours either way within its day; 2% of them with a user and 2%
with an article the day never saw), writes them to Parquet, then, on a fresh copy of the kept state,
times `python -m news_ai_assets.retrieval` over them and `silver/training_examples` re-materialised
for the kept day with the most rows, each its own process (wall, CPU, peak RSS), and prints events/s beside
silver's rows/s. `--out FILE` writes the figures as JSON.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.loop import _environment  # noqa: E402
from benchmarks.run import Home, cpu_model, measured  # noqa: E402

SHIFT_S = 3 * 3600
UNSEEN_SHARE = 0.02


def draw_events(database: Path, count: int, out: Path, seed: int = 11) -> dict:
    """`count` events from the database's silver rows, times shifted within their day (see above)."""
    import numpy as np
    import polars as pl

    from news_ai_assets.storage.duckdb_file import connect

    with connect(database, read_only=True) as conn:
        rows = conn.sql(f"SELECT user_id, news_id, time FROM silver.cross_features USING SAMPLE {count} ROWS (reservoir, 7)").pl()
        busiest = conn.sql("SELECT date FROM silver.cross_features GROUP BY date ORDER BY count(*) DESC LIMIT 1").fetchall()[0][0]
    rng = np.random.default_rng(seed)
    start = pl.col("time").dt.truncate("1d")
    shifted = pl.col("time") + pl.duration(seconds=pl.Series(rng.integers(-SHIFT_S, SHIFT_S + 1, rows.height)))
    unseen = [pl.Series(rng.random(rows.height) < UNSEEN_SHARE) for _ in range(2)]
    events = rows.with_columns(
        pl.when(unseen[0]).then(pl.lit("U_unseen")).otherwise(pl.col("user_id")).alias("user_id"),
        pl.when(unseen[1]).then(pl.lit("N_unseen")).otherwise(pl.col("news_id")).alias("news_id"),
        pl.min_horizontal(pl.max_horizontal(shifted, start), start + pl.duration(seconds=86_399)).alias("time"),
    ).sample(fraction=1.0, shuffle=True, seed=seed)
    events.write_parquet(out)
    return {"events": events.height, "days": events.get_column("time").dt.date().n_unique(), "busiest_day": str(busiest)}


def measure(folder: Path, count: int) -> dict:
    """The events drawn, then retrieval and silver's busiest kept day timed on one fresh copy of the kept state."""
    loop = json.loads((folder / "loop.json").read_text())
    attempt, log = folder / "try", folder / "retrieval.log"
    shutil.rmtree(attempt, ignore_errors=True)
    shutil.copytree(folder / "kept", attempt)
    try:
        home = Home(folder, "try", _environment(loop), fresh=False)
        drawn = draw_events(home.database, count, attempt / "events.parquet")
        busiest = drawn.pop("busiest_day")
        retrieval = measured([sys.executable, "-m", "news_ai_assets.retrieval", str(attempt / "events.parquet"),
                              "--out", str(attempt / "features.parquet")], home.env, log)
        silver = home.run([busiest], log, "silver/training_examples")
    finally:
        shutil.rmtree(attempt, ignore_errors=True)
    step = silver["steps"]["silver__training_examples"]
    retrieval["events_per_s"] = round(drawn["events"] / retrieval["wall_s"])
    return {"scale": loop["scale"], "cpu": cpu_model(), **drawn, "retrieval": retrieval,
            "silver_day": {"day": busiest, "wall_s": silver["wall_s"], "step_s": step["step_s"],
                           "rows": step["row_count"], "rows_per_s": step["rows_per_s"]}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a loop folder (benchmarks/loop.py build FOLDER --scale small)")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    if not (args.folder / "loop.json").is_file():
        raise SystemExit(f"{args.folder} holds no loop.json: build a kept database there first (loop.py build)")
    figures = measure(args.folder, args.events)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))
    r, s = figures["retrieval"], figures["silver_day"]
    print(f"retrieval ({figures['cpu']}): {figures['events']:,} events on {figures['days']} days in {r['wall_s']} s "
          f"(whole process, {r['peak_rss_mib']} MiB peak): {r['events_per_s']:,} events/s; silver for {s['day']}: "
          f"{s['rows']:,} rows in {s['step_s']} s (its step): {s['rows_per_s']:,} rows/s")


if __name__ == "__main__":
    main()
