"""Launches a backfill of the whole graph that Dagster's daemon runs: `python -m news_ai_assets.backfill`.

The same as the UI's "Materialize all" > "Launch backfill": on Delta storage one run per day,
several at once (dagster.yaml caps how many), each launched once the days it reads are stored.
Needs the daemon of $DAGSTER_HOME running (`dagster dev` starts it, or `dagster-daemon run`).
"""

import argparse

import dagster as dg

from news_ai_assets.dagster_internals import launch_asset_backfill
from news_ai_assets.definitions import defs
from news_ai_assets.settings import SETTINGS, daily_partitions


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="first", default=SETTINGS.start_date.isoformat(), help="first day (YYYY-MM-DD)")
    parser.add_argument("--to", dest="last", default=SETTINGS.end_date.isoformat(), help="last day, inclusive")
    args = parser.parse_args(argv)
    keys = daily_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(args.first, args.last))
    with dg.DagsterInstance.get() as instance:
        backfill_id = launch_asset_backfill(instance, defs, keys[0], keys[-1], f"news_ai_assets {args.first} .. {args.last}")
    print(f"backfill {backfill_id}: {len(keys)} days ({args.first} .. {args.last}), storage {SETTINGS.storage}; "
          "the daemon launches its runs (UI: Overview > Backfills)")
    return backfill_id


if __name__ == "__main__":
    main()
