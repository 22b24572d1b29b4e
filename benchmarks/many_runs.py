"""Many runs at once on Delta, as on many machines: the default 14 days as a backfill that Dagster's
daemon runs one run per day (and stage), with 1, 2 and 4 runs in flight; the instance in PostgreSQL,
the tables and the raw MIND files on the S3 emulator (moto_server), each run its own process.

    .venv/bin/python benchmarks/many_runs.py --in-flight 1 2 4

For each count: the backfill's wall time (launch to its last run's end), its runs, the most in flight
at once, and per run its steps' seconds and its fixed cost: the process's start (imports, the
definitions, Dagster: RUN_STARTING to RUN_START) and Dagster's own time around the steps (the run
less its steps). The emulator, PostgreSQL and every run share this machine's cores, so the figures say
what a run costs and how the waves of days overlap; docs/storage.md says what they imply for N machines.
"""

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.run import cpu_model  # noqa: E402
from news_ai_assets.mind import sample  # noqa: E402
from benchmarks.servers import (  # noqa: E402
    create_database, postgres_home, postgres_server, s3_emulator, upload_splits,
)

BIN = Path(sys.executable).parent


def _run_figures(instance, record) -> dict:
    """One run's seconds: in all, its steps', its process's start and Dagster's time around the steps."""
    import dagster as dg

    events = instance.get_records_for_run(record.dagster_run.run_id, limit=100_000).records
    at = {}
    steps, started, failures = 0.0, {}, []
    for event in (e.event_log_entry for e in events):
        kind = event.dagster_event_type
        if kind == dg.DagsterEventType.STEP_FAILURE:
            failures.append(f"{event.step_key}: {event.dagster_event.event_specific_data.error.message.strip()[:300]}")
        if kind in (dg.DagsterEventType.RUN_STARTING, dg.DagsterEventType.RUN_START):
            at[kind] = event.timestamp
        elif kind == dg.DagsterEventType.STEP_START:
            started[event.step_key] = event.timestamp
        elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            steps += event.timestamp - started.pop(event.step_key)
    run = record.end_time - record.start_time
    process = at[dg.DagsterEventType.RUN_START] - at[dg.DagsterEventType.RUN_STARTING]
    return {"day": record.dagster_run.tags.get("dagster/asset_partition_range_start", "evaluation"),
            "status": record.dagster_run.status.value, "start": record.start_time, "end": record.end_time,
            "run_s": round(run, 2), "steps_s": round(steps, 2), "process_start_s": round(process, 2),
            "dagster_around_steps_s": round(run - steps, 2), "failures": failures}


def backfill(folder: Path, in_flight: int, base_env: dict, first: str, last: str) -> dict:
    """The range as one backfill with `in_flight` runs at once; its figures."""
    import dagster as dg

    home = postgres_home(folder / f"home-{in_flight}", in_flight)
    database = f"dagster_{in_flight}"
    create_database(base_env["DAGSTER_PG_PORT"], database)
    env = {**base_env, "DAGSTER_HOME": str(home), "DAGSTER_PG_DB": database,
           "NEWS_AI_DELTA_URI": f"s3://bench/lake-{in_flight}", "NEWS_AI_MIND_MIRROR": str(folder / f"mirror-{in_flight}")}
    subprocess.run([str(BIN / "dagster"), "instance", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)
    log = open(folder / f"daemon-{in_flight}.log", "w")
    daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-m", "news_ai_assets.definitions"], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        started = time.time()
        launched = subprocess.run([sys.executable, "-m", "news_ai_assets.backfill", "--from", first, "--to", last],
                                  cwd=ROOT, env=env, capture_output=True, text=True, check=True)
        backfill_id = launched.stdout.split()[1].rstrip(":")
        os.environ.update({k: env[k] for k in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_DB", "DAGSTER_PG_USER",
                                               "DAGSTER_PG_PASSWORD")})
        with dg.DagsterInstance.from_config(str(home)) as instance:
            while (status := instance.get_backfill(backfill_id).status.value) in ("REQUESTED", "FAILING", "CANCELING"):
                time.sleep(2)
            records = instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
            runs = sorted((_run_figures(instance, r) for r in records), key=lambda r: r["start"])
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(60)
        log.close()
    spans = [(r["start"], r["end"]) for r in runs]
    return {
        "in_flight": in_flight, "backfill": status, "runs": len(runs),
        "failed": [{"day": r["day"], "failures": r["failures"]} for r in runs if r["status"] != "SUCCESS"],
        "wall_s": round(max(r["end"] for r in runs) - started, 1),
        "most_in_flight": max(sum(s <= moment < e for s, e in spans) for moment, _ in spans),
        **{f"median_{k}": round(statistics.median(r[k] for r in runs), 2)
           for k in ("run_s", "steps_s", "process_start_s", "dagster_around_steps_s")},
        "sum_run_s": round(sum(r["run_s"] for r in runs), 1), "sum_steps_s": round(sum(r["steps_s"] for r in runs), 1),
        "run_list": runs,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--scale", default="demo", choices=["tiny", "demo"])
    parser.add_argument("--days", type=int, help="only this many days from the first partition (the raw files too)")
    parser.add_argument("--folder", type=Path, default=ROOT / "benchmarks" / "results" / "many_runs")
    args = parser.parse_args(argv)
    from news_ai_assets.settings import SETTINGS

    folder = args.folder.absolute()
    first, last = SETTINGS.start_date, SETTINGS.end_date
    if args.days:
        last = min(last, first + dt.timedelta(days=args.days - 1))
    mind = folder / f"mind-{args.scale}-{first}-{last}"
    if not (mind / "COMPLETE").exists():
        sample.generate(mind, args.scale, days=(last - first).days + 1, first_day=first)
        (mind / "COMPLETE").touch()
    first, last = first.isoformat(), last.isoformat()
    results = []
    with s3_emulator("bench") as s3, postgres_server() as postgres:
        os.environ.update(s3)
        upload_splits(mind, "s3://bench/mind")
        base_env = {**os.environ, **s3, **postgres, "NEWS_AI_STORAGE": "delta", "NEWS_AI_MIND_DIR": "s3://bench/mind",
                    "NEWS_AI_EMBEDDING_DEVICE": "cpu"}
        for in_flight in args.in_flight:
            print(f"{dt.datetime.now():%H:%M:%S} backfill {first} .. {last} with {in_flight} run(s) in flight", flush=True)
            results.append(backfill(folder, in_flight, base_env, first, last))
            r = results[-1]
            for failed in r["failed"]:
                print(f"  FAILED {failed['day']}: {'; '.join(failed['failures']) or 'no step failed (see the daemon log)'}")
            print(f"  {r['wall_s']} s, {r['runs']} runs ({len(r['failed'])} failed), at most {r['most_in_flight']} at once; "
                  f"median run {r['median_run_s']} s: steps {r['median_steps_s']} s, process start "
                  f"{r['median_process_start_s']} s, Dagster around the steps {r['median_dagster_around_steps_s']} s", flush=True)
    report = {"cpu": cpu_model(), "cores": os.cpu_count(), "measured": dt.date.today().isoformat(), "scale": args.scale,
              "days": [first, last], "results": results}
    (folder / "many_runs.json").write_text(json.dumps(report, indent=1))
    print(f"\n# Many runs on Delta: {args.scale} sample {first} .. {last}, {report['cpu']}, {report['cores']} cores\n")
    print("| runs in flight | wall s | runs | most at once | median run s | median steps s | median process start s | "
          "median Dagster around steps s | run s in all | steps s in all |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['in_flight']} | {r['wall_s']} | {r['runs']} | {r['most_in_flight']} | {r['median_run_s']} | "
              f"{r['median_steps_s']} | {r['median_process_start_s']} | {r['median_dagster_around_steps_s']} | "
              f"{r['sum_run_s']} | {r['sum_steps_s']} |")


if __name__ == "__main__":
    main()
