"""Speed and memory of the pipeline at MIND-small and MIND-large shape, beside a SQL floor and the old approach.

    .venv/bin/python benchmarks/run.py --scale small        # ~16 minutes on 2 cores
    .venv/bin/python benchmarks/run.py --scale large        # ~50 minutes on 2 cores, 16 GiB, plus 5 to generate

Every run is its own process, as users run it (`dg launch`), measured for wall
time, CPU time and peak RSS; per asset, the step's seconds, rows and rows/s from the run's events.

1. Generates (or reuses) MIND-format data at the scale (`tiny`, `small`, `large`).
2. one_run: a fresh DuckDB file, every daily asset for all 14 partitions as ONE run (what a UI
   backfill or `--partition-range` launches): staging the raw files, embeddings, silver, checks.
   evaluation: then gold/ranker_evaluation alone on that file (train a ranker, score the dev day).
   embeddings_alone: benchmarks/gpu_embeddings.py on the CPU for the same option over the data's
   texts, and the one run's texts/s as a ratio to it (embedding_ratio).
3. no_inference_run: a second fresh file that holds only the first one's embedding cache, the same
   run: everything from the raw files to silver except the inference.
4. floor: benchmarks/sql_floor.py over the same raw files and the first file's cached vectors (plain
   DuckDB SQL, no Dagster), per graph step and as the ratio of no_inference_run to it (floor_ratio).
With --storage delta, also: the no-inference graph on Delta tables as a backfill run by Dagster's
   daemon, one run per day, with at most 1 and then 2 runs at once (delta_backfill_1, _2).
5. daily: a third fresh file, the first day as one run, then the next day (the daily path: one new
   day after the first, which embeds only that day's new texts).
6. baseline: the per-row pandas loops we replace against our functions, on a whole day's users
   (--baseline-users 0, the default at small scale) or a sample of them.

--days N runs all of it on the first N days only, each as dense as at the whole scale (`--scale large
--days 3`: MIND-large's density; the evaluation, which scores the dev day 2019-11-15, needs N >= 7),
the daily path first: the first day's vectors (its whole catalog) are embedded once per data folder,
kept in it (first_day_vectors.duckdb) and given to daily_first_day and one_run, whose encoder then
embeds the later days' new texts; --data names the folder the window is generated in;
--repeats N runs no_inference_run and the floor N times and reports their medians. For one step at a
time, see benchmarks/loop.py.

Results go to <results>/<scale>[-<N>d]/: results.json, results.md and report.png, with the targets and,
where benchmarks/reference/<scale>[-<N>d].json is kept (a results.json of the figures the docs quote),
the kept figures beside the new ones, a run or step >= 15% slower marked, and a warning where they
were measured on another CPU.
"""

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIRST = "2019-11-09"
DEV_DAY = "2019-11-15"  # the evaluation scores it: a window of fewer than 7 days runs no evaluation
RUNS = ("generate", "one_run", "evaluation", "embeddings_alone", "no_inference_run", "floor", "delta_backfill_1",
        "delta_backfill_2", "daily_first_day", "daily_next_day")
GIB = 1024
# The targets of the issue these figures answer (seconds, MiB: at most; embedding_ratio: at least), per scale.
TARGETS = {
    "large": {"one_run": {"wall_s": 20 * 60, "peak_rss_mib": 16 * GIB}, "daily_next_day": {"wall_s": 60},
              "floor_ratio": 1.3, "embedding_ratio": 0.95},
    "small": {"no_inference_run": {"wall_s": 30, "peak_rss_mib": 3 * GIB}, "floor_ratio": 1.3, "embedding_ratio": 0.95},
}
AT_LEAST = {"embedding_ratio"}
SLOWER = 1.15  # a run or step this much slower than the kept reference is marked
# Texts per pass of embeddings_alone (the data's distinct texts, repeated where fewer): tiny has 300.
EMBEDDING_TEXTS = {"tiny": 400, "small": 4_000, "large": 4_000}


def measured(command: list[str], env: dict, log: Path) -> dict:
    """Runs a command as its own process; its wall time, CPU time and peak RSS (via wait4)."""
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(command)}\n".encode())
        out.flush()
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {code}; see {log}")
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mib": round(usage.ru_maxrss / 1024 / (1024 if sys.platform == "darwin" else 1), 1)}


def first_days(count: int) -> list[str]:
    """The first `count` days of the MIND calendar."""
    return [(dt.date.fromisoformat(FIRST) + dt.timedelta(days=d)).isoformat() for d in range(count)]


def pipeline_env(data: Path, scale: str, backend: str, precision: str) -> dict:
    """The environment every benchmarked run gets: the data, the encoder's option, on the CPU."""
    env = {**os.environ, "NEWS_AI_MIND_DIR": str(data), "NEWS_AI_EMBEDDING_DEVICE": "cpu",
           "NEWS_AI_EMBEDDING_BACKEND": backend, "NEWS_AI_EMBEDDING_PRECISION": precision}
    if scale == "tiny":  # ~10 impressions a day: one user without history moves a day's missing share by ~10%
        env["NEWS_AI_MAX_MISSING_CROSS_SHARE"] = "0.2"
    return env


def is_slower(value: float | None, kept: float | None) -> bool:
    """Whether a new figure is SLOWER (15%) or more above its kept reference."""
    return bool(kept) and value is not None and value >= SLOWER * kept


def generated(data: Path, scale: str, days: int | None, reuse: bool, log: Path) -> dict:
    """MIND-format data at `scale` (the first `days` days only, when given) in `data`, generated once:
    a folder marked COMPLETE (its content: the days it holds), or one the caller named, is reused."""
    if reuse or (data / "COMPLETE").exists():
        return {"wall_s": 0, "cpu_s": 0, "peak_rss_mib": 0, "reused": str(data)}
    shutil.rmtree(data, ignore_errors=True)  # and a first day's kept vectors with it (daily_path)
    window = ["--days", str(days)] if days else []
    result = measured([sys.executable, "-m", "news_ai_assets.mind.sample", "--scale", scale, *window, "--out", str(data)],
                      os.environ.copy(), log)
    (data / "COMPLETE").write_text(f"days={days or 14}\n")
    return result


def daily_path(work: Path, env: dict, days: list[str], log: Path, first_day_vectors: Path | None = None) -> dict:
    """The daily path: a fresh file, the first day as one run, then the next day, which embeds only its
    new texts. With `first_day_vectors` (a window), the first day's vectors come from that file where it
    exists and are kept in it where not: embedding a MIND-large first day's whole catalog (~110k
    texts, ~7 min here) once per data folder instead of twice per benchmark."""
    daily = Home(work, "daily", env)
    kept = first_day_vectors is not None and first_day_vectors.exists()
    if kept:
        copy_embedding_cache(first_day_vectors, daily.database)
    results = {"daily_first_day": daily.run(days[:1], log)}
    if first_day_vectors is not None and not kept:
        partial = first_day_vectors.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        copy_embedding_cache(daily.database, partial)
        partial.rename(first_day_vectors)
    results["daily_next_day"] = daily.run(days[1:2], log)
    if first_day_vectors is not None:
        results["first_day_vectors"] = {"file": str(first_day_vectors), "kept_from_an_earlier_run": kept}
    print("daily", results["daily_first_day"]["wall_s"], results["daily_next_day"]["wall_s"], flush=True)
    shutil.rmtree(daily.root)
    return results


def median_of(tries: list[dict]) -> dict:
    """One figure for repeated runs: the median wall, CPU and peak of the tries, each step's median
    seconds, the other fields of the try with the median wall time, and every try's wall time."""
    import statistics

    ordered = sorted(tries, key=lambda t: t["wall_s"])
    result = {**ordered[(len(ordered) - 1) // 2]}
    for key in ("wall_s", "cpu_s", "peak_rss_mib"):
        result[key] = round(statistics.median(t[key] for t in tries), 2)
    if "steps" in result:
        result["steps"] = {step: {**values, "step_s": round(statistics.median(
            t["steps"].get(step, {}).get("step_s", 0) for t in tries), 2)} for step, values in result["steps"].items()}
    if len(tries) > 1:
        result["tries_wall_s"] = [t["wall_s"] for t in tries]
    return result


def materialize(partitions: list[str], env: dict, log: Path, selection: str | None = None) -> dict:
    """The selection (default: every daily asset) over the partitions as one run, or, with none,
    gold/ranker_evaluation alone."""
    from news_ai_assets.assets.common import DAILY_ASSETS

    if not partitions:
        bounds, selection = [], "gold/ranker_evaluation"
    else:
        bounds = (["--partition", partitions[0]] if len(partitions) == 1
                  else ["--partition-range", f"{partitions[0]}...{partitions[-1]}"])
        selection = selection or DAILY_ASSETS
    dg_cli = str(Path(sys.executable).parent / "dg")
    return measured([dg_cli, "launch", "-m", "news_ai_assets.definitions", "--assets", selection, *bounds], env, log)


def last_run_steps(home: Path) -> dict[str, dict]:
    """Per step of the latest run: seconds, and for assets the rows written (all partitions) and metadata."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_runs(limit=1)[0]
        steps = {
            s.step_key: {"step_s": round(s.end_time - s.start_time, 2)}
            for s in instance.get_run_step_stats(run.run_id) if s.end_time and "__" in s.step_key
        }
        records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
        for record in records:
            materialization = record.event_log_entry.asset_materialization
            step = steps.setdefault("__".join(materialization.asset_key.path), {})
            metadata = materialization.metadata
            step["row_count"] = step.get("row_count", 0) + metadata["dagster/row_count"].value  # one event per partition
            for key in ("run_newly_embedded", "run_cache_hits", "run_texts_per_second", "device",
                        "source_files_parsed_in_this_run"):
                if key in metadata:
                    step[key.removeprefix("run_")] = metadata[key].value
            if "process_peak_rss_mib" in metadata:  # the run's peak so far, as the step's partitions finish
                step["peak_rss_mib"] = max(step.get("peak_rss_mib", 0), metadata["process_peak_rss_mib"].value)
    for step in steps.values():
        if step.get("row_count") and step.get("step_s"):
            step["rows_per_s"] = round(step["row_count"] / step["step_s"])
    return steps


class Home:
    """A DAGSTER_HOME and DuckDB file for one series of runs: fresh, or (fresh=False) the ones a
    folder already holds."""

    def __init__(self, work: Path, name: str, base_env: dict, fresh: bool = True):
        self.root = work / name
        self.home = self.root / "dagster_home"
        if fresh:
            self.home.mkdir(parents=True)
            shutil.copy(ROOT / "dagster.yaml", self.home / "dagster.yaml")
        self.database = self.root / "bench.duckdb"
        self.env = {**base_env, "DAGSTER_HOME": str(self.home), "NEWS_AI_DUCKDB_PATH": str(self.database)}

    def run(self, partitions: list[str], log: Path, selection: str | None = None) -> dict:
        result = materialize(partitions, self.env, log, selection)
        return {**result, "steps": last_run_steps(self.home)}

    def size_mib(self) -> float:
        return round(sum(p.stat().st_size for p in self.root.glob("bench.duckdb*") if p.is_file()) / 2**20, 1)


class DeltaHome(Home):
    """A fresh DAGSTER_HOME (at most `concurrent` runs at once) and Delta tables in a folder, for a
    backfill that Dagster's daemon runs one run per day, as on many machines."""

    def __init__(self, work: Path, name: str, base_env: dict, concurrent: int):
        super().__init__(work, name, base_env)
        self.uri = self.root / "delta"
        self.env.update(NEWS_AI_STORAGE="delta", NEWS_AI_DELTA_URI=str(self.uri))
        config = (self.home / "dagster.yaml").read_text().replace("max_concurrent_runs: 4", f"max_concurrent_runs: {concurrent}")
        (self.home / "dagster.yaml").write_text(config)

    def backfill(self, log: Path) -> dict:
        """The whole range as a backfill; wall time from launch to the last run's end, CPU time and
        peak RSS summed over the daemon's process tree (the runs are its grandchildren), sampled."""
        import dagster as dg
        import psutil

        with open(log, "ab") as out:
            daemon = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-m",
                                       "news_ai_assets.definitions"], cwd=ROOT, env=self.env, stdout=out,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        started, peak, cpu = time.perf_counter(), 0.0, {}
        try:
            launched = subprocess.run([sys.executable, "-m", "news_ai_assets.backfill"], cwd=ROOT, env=self.env,
                                      capture_output=True, text=True, check=True)
            backfill_id = launched.stdout.split()[1].rstrip(":")
            with dg.DagsterInstance.from_config(str(self.home)) as instance:
                while instance.get_backfill(backfill_id).status.value in ("REQUESTED", "FAILING", "CANCELING"):
                    tree = [psutil.Process(daemon.pid), *psutil.Process(daemon.pid).children(recursive=True)]
                    rss = 0
                    for process in tree:
                        try:
                            rss += process.memory_info().rss
                            times = process.cpu_times()
                            cpu[process.pid] = times.user + times.system
                        except psutil.NoSuchProcess:
                            pass
                    peak = max(peak, rss / 2**20)
                    time.sleep(0.5)
                status = instance.get_backfill(backfill_id).status.value
                runs = instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        finally:
            os.killpg(daemon.pid, 15)
            daemon.wait(60)
        wall = time.perf_counter() - started
        if status != "COMPLETED_SUCCESS":
            raise SystemExit(f"the delta backfill ended {status}; see {log} and {self.home}")
        spans = [(r.start_time, r.end_time) for r in runs]
        return {"wall_s": round(wall, 2), "cpu_s": round(sum(cpu.values()), 1), "peak_rss_mib": round(peak, 1),
                "runs": len(runs), "max_runs_in_flight": max(sum(a <= t < b for a, b in spans) for t, _ in spans),
                "database_mib": round(sum(p.stat().st_size for p in self.uri.rglob("*") if p.is_file()) / 2**20, 1)}


def copy_embedding_cache_to_delta(source: Path, uri: Path) -> None:
    """Seeds Delta tables with a DuckDB file's embedding cache, and nothing else."""
    from news_ai_assets.compute.embeddings import CACHE_KEY, CACHE_TABLE
    from news_ai_assets.storage.delta_tables import DeltaDatabase
    from news_ai_assets.storage.duckdb_file import connect

    with connect(source, read_only=True) as conn:
        cache = conn.sql(f"SELECT * FROM {'.'.join(CACHE_TABLE)}").pl()
    DeltaDatabase(uri=str(uri)).add_new_rows(*CACHE_TABLE, cache, CACHE_KEY)


def copy_embedding_cache(source: Path, target: Path) -> None:
    """Seeds a fresh database with another's embedding cache, and nothing else."""
    from news_ai_assets.storage.duckdb_file import connect

    with connect(target) as conn:
        conn.execute("ATTACH ? AS source (READ_ONLY)", [str(source)])
        conn.execute("CREATE SCHEMA features")
        conn.execute("CREATE TABLE features.embedding_cache AS SELECT * FROM source.features.embedding_cache")
        conn.execute("DETACH source")


def floor(data: Path, embeddings: Path, work: Path, log: Path) -> dict:
    """benchmarks/sql_floor.py over the raw files, its similarities from `embeddings`' cached vectors."""
    output = work / "floor.duckdb"
    result = measured([sys.executable, str(ROOT / "benchmarks" / "sql_floor.py"), "--mind", str(data),
                       "--embeddings", str(embeddings), "--out", str(output)], os.environ.copy(), log)
    details = json.loads(log.read_text().strip().splitlines()[-1])
    output.unlink(missing_ok=True)
    return {**result, **details}


def floor_stages(results: dict) -> list[tuple[str, float, float]]:
    """(graph step, its seconds in no_inference_run, the floor statements' seconds doing its work), and
    last the rest of each wall time: process, imports, Dagster, checks (graph), start-up (floor)."""
    graph, floor_result = results["no_inference_run"], results["floor"]
    floor_s: dict[str, float] = {}
    for stage, seconds in floor_result["steps_s"].items():
        step = floor_result["stages"][stage]
        floor_s[step] = floor_s.get(step, 0) + seconds
    rows = [(step, graph["steps"].get(step, {}).get("step_s", 0), round(seconds, 2)) for step, seconds in floor_s.items()]
    rows.sort(key=lambda row: -row[1])
    rest = ("the rest: process, imports, Dagster, checks", round(graph["wall_s"] - sum(r[1] for r in rows), 2),
            round(floor_result["wall_s"] - sum(r[2] for r in rows), 2))
    return [*rows, rest]


def best_of_floor(results: dict) -> float:
    """Seconds of a floor that does each stage the faster way, the graph's or the floor's, plus the
    floor's start-up: where the floor's SQL is slower than the graph's step, the whole ratio hides
    the overhead of the other steps; this one does not."""
    *stages, (_, _, floor_rest) = floor_stages(results)
    return sum(min(graph_s, floor_s) for _, graph_s, floor_s in stages) + floor_rest


def embeddings_alone(data: Path, texts: int, backend: str, precision: str, log: Path) -> dict:
    """benchmarks/gpu_embeddings.py on the CPU for the pipeline's option over the data's texts: the
    encoder's rate outside the pipeline, which the one run's text_embeddings step is measured against."""
    rows = log.parent / "embedding_rows.json"
    news = sorted(str(p) for p in data.glob("*/news.tsv"))
    result = measured([sys.executable, str(ROOT / "benchmarks" / "gpu_embeddings.py"), "--device", "cpu", "--news", *news,
                       "--texts", str(texts), "--repeats", "2", "--backends", backend, "--precisions", precision,
                       "--no-before", "--no-fidelity", "--out", str(rows)], os.environ.copy(), log)
    (row,) = json.loads(rows.read_text())
    rows.unlink()
    if "refused" in row:
        raise SystemExit(f"embeddings_alone: {row['refused']}")
    return {**result, "texts": texts, "texts_per_second": row["texts/s"]}


def baseline_comparison(mind_dir: Path, users: int, day: dt.date) -> dict:
    """Our user features and interactions vs per-row pandas, on the same users of `day` (all of them when users is 0)."""
    import pandas as pd
    import polars as pl

    from benchmarks import baseline_pandas
    from news_ai_assets.compute.interactions import interactions_from_behaviors
    from news_ai_assets.compute.user_features import user_features_for_day
    from news_ai_assets.mind.reader import discover_splits, read_behaviors, read_news

    splits = discover_splits(mind_dir)
    behaviors = read_behaviors(splits, day - dt.timedelta(days=7), day + dt.timedelta(days=1)).rows
    day_users = behaviors.filter(pl.col("date") == day).get_column("user_id").unique(maintain_order=True)
    sample_users = day_users.head(users) if users else day_users
    sample = behaviors.filter(pl.col("user_id").is_in(sample_users.implode()))
    news = read_news(splits)[0].select("news_id", "category", "subcategory")
    sample_pd = pd.DataFrame(sample.to_dicts(), dtype=object)
    news_pd = pd.DataFrame(news.to_dicts(), dtype=object)

    def median_of(fn, repeat: int) -> tuple[float, object]:
        times, result = [], None
        for _ in range(repeat):
            started = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - started)
        return sorted(times)[len(times) // 2], result

    ours, (fast, _) = median_of(lambda: (user_features_for_day(sample, news, day, 7), interactions_from_behaviors(sample)), 5)
    theirs, (slow, _) = median_of(lambda: (baseline_pandas.user_features(sample_pd, news_pd, day, 7),
                                           baseline_pandas.interactions(sample_pd)), 1)
    return {"day": str(day), "users": sample_users.len(), "whole_day": not users or users >= day_users.len(),
            "impressions": sample.height, "ours_s": round(ours, 4), "baseline_s": round(theirs, 2),
            "speedup": round(theirs / ours), "same_users": set(slow["user_id"]) == set(fast.get_column("user_id"))}


def _target_note(value: float, target: float | None, at_least: bool = False) -> str:
    if target is None:
        return ""
    met = value >= target if at_least else value <= target
    return f" (target {'≥' if at_least else '≤'} {target:g}: {'met' if met else 'missed'})"


def _kept(value: float | None, kept: float | None) -> str:
    """The kept reference's figure beside a new one, marked when the new one is ≥ 15% slower."""
    if not kept or value is None:
        return ""
    return f"{kept}{f' **≥{SLOWER - 1:.0%} slower**' if is_slower(value, kept) else ''}"


def other_cpu(kept: str | None, now: str) -> str:
    """The warning a comparison across CPUs needs."""
    return (f"**Another CPU**: the kept figures were measured on {kept or 'an unnamed CPU'}, these on {now}. "
            "The encoder's rate differs up to 2.2x between the CPUs of these boxes, the other steps by ~5%.")


def markdown(results: dict, reference: dict | None = None) -> str:
    """The report; with a kept reference (benchmarks/reference/<scale>.json), its figures beside the new ones."""
    targets = TARGETS.get(results["scale"], {})
    kept = reference or {}
    lines = [f"# Benchmark: scale `{results['scale']}` ({results['machine']})", "",
             f"Data: {results['data']}; embeddings {results['embedding_option']}; whole benchmark "
             f"{results['benchmark_wall_s'] / 60:.1f} min.", "",
             *([f"**Stopped early**: {results['failed']}", ""] if "failed" in results else []),
             *([f"Kept reference: {kept.get('measured', 'measured')}, {kept['machine']}; a run or step "
                f"≥ {SLOWER - 1:.0%} slower than it is marked.", ""] if kept else []),
             *([other_cpu(kept.get("cpu"), results["cpu"]), ""] if kept and kept.get("cpu") != results["cpu"] else []),
             *([f"no_inference_run and floor: the median of {results['repeats']} runs each.", ""]
               if results.get("repeats", 1) > 1 else []),
             *([f"A window: the first day's vectors (its whole catalog) in daily_first_day and one_run come from "
                f"{results['first_day_vectors']['file']}, "
                + ("kept from an earlier run on this data" if results["first_day_vectors"]["kept_from_an_earlier_run"]
                   else "embedded by this run's daily_first_day and kept there")
                + "; one_run's encoder embeds the later days' new texts. Delete the file to time the first day's.", ""]
               if "first_day_vectors" in results else []),
             "| run | wall s | kept wall s | CPU s | peak RSS MiB | kept peak MiB | database MiB |",
             "|---|---|---|---|---|---|---|"]
    for name in RUNS:
        if name in results:
            r, t, k = results[name], targets.get(name, {}), kept.get(name, {})
            lines.append(f"| {name} | {r['wall_s']}{_target_note(r['wall_s'], t.get('wall_s'))} | "
                         f"{_kept(r['wall_s'], k.get('wall_s'))} | {r['cpu_s']} | "
                         f"{r['peak_rss_mib']}{_target_note(r['peak_rss_mib'], t.get('peak_rss_mib'))} | "
                         f"{_kept(r['peak_rss_mib'], k.get('peak_rss_mib'))} | {r.get('database_mib', '')} |")
    for ratio, text in (("floor_ratio", "no_inference_run / SQL floor"),
                        ("floor_best_ratio", "no_inference_run / a floor doing each stage the faster way (graph's or "
                                             "floor's) plus the floor's start-up"),
                        ("embedding_ratio", "the one run's texts/s / embeddings_alone's")):
        if ratio in results:
            lines += ["", f"{text} = **{results[ratio]}**{_target_note(results[ratio], targets.get(ratio), ratio in AT_LEAST)}"
                      + (f" (kept: {kept[ratio]})" if ratio in kept else "") + "."]
    if "delta_backfill_1" in results:
        lines += ["", "delta_backfill_N: the no-inference graph on Delta tables (local folder), as a backfill that "
                  "Dagster's daemon runs one run per day with at most N at once (runs: "
                  + ", ".join(f"{results[n]['runs']} with up to {results[n]['max_runs_in_flight']} in flight"
                              for n in ("delta_backfill_1", "delta_backfill_2") if n in results)
                  + "); CPU and peak RSS summed over the daemon and its runs (sampled every 0.5 s); "
                  "database MiB: the Delta folder (no_inference_run: the DuckDB file)."]
    if "floor" in results and "no_inference_run" in results:
        f = results["floor"]
        lines += ["", f"SQL floor: {f['columns']} columns × {f['rows']} rows of `silver.training_examples` (the graph's: "
                  f"{results.get('silver_columns', '?')} columns), {f['impression_columns']} × {f['impressions']} of "
                  "`silver.impressions`; each graph step of no_inference_run beside the floor statements doing its work:", "",
                  "| graph step | graph s | floor s | ratio |", "|---|---|---|---|"]
        lines += [f"| {step} | {graph_s} | {floor_s} | {round(graph_s / floor_s, 2) if floor_s else ''} |"
                  for step, graph_s, floor_s in floor_stages(results)]
    for name in ("one_run", "evaluation", "no_inference_run", "daily_next_day"):
        if name not in results:
            continue
        kept_steps = kept.get(name, {}).get("steps", {})
        lines += ["", f"Steps of {name} (peak RSS: the run's process when the step ended):", "",
                  "| step | s | kept s | rows | rows/s | peak RSS MiB | notes |", "|---|---|---|---|---|---|---|"]
        for step, s in sorted(results[name]["steps"].items(), key=lambda item: -item[1].get("step_s", 0)):
            notes = ", ".join(f"{k} {s[k]}" for k in ("newly_embedded", "texts_per_second", "cache_hits",
                                                       "source_files_parsed_in_this_run") if k in s)
            lines.append(f"| {step} | {s.get('step_s', '')} | {_kept(s.get('step_s'), kept_steps.get(step, {}).get('step_s'))} | "
                         f"{s.get('row_count', '')} | {s.get('rows_per_s', '')} | {s.get('peak_rss_mib', '')} | {notes} |")
    if "baseline" in results:
        b = results["baseline"]
        scope = "all" if b["whole_day"] else "a sample of"
        lines += ["", f"Baseline (per-row pandas) on {scope} {b['users']} users of {b['day']} ({b['impressions']} "
                  f"impressions with their window): {b['baseline_s']} s vs ours {b['ours_s']} s: **{b['speedup']}x** "
                  f"(same users: {b['same_users']})."]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    """One panel per run (steps, seconds on a log scale, values on the bars), and one of runs vs targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [name for name in ("one_run", "no_inference_run", "daily_next_day") if name in results]
    fig, axes = plt.subplots(1, len(runs) + 1, figsize=(6 * (len(runs) + 1), 7), squeeze=False)
    axes = axes[0]
    for ax, name in zip(axes, runs):
        steps = sorted(results[name]["steps"].items(), key=lambda item: item[1].get("step_s", 0))
        labels = [step.replace("__", "/") for step, _ in steps]
        seconds = [max(s.get("step_s", 0), 0.01) for _, s in steps]
        bars = ax.barh(labels, seconds, color="#4c72b0")
        ax.bar_label(bars, labels=[f"{v:.1f}" for v in seconds], fontsize=7, padding=2)
        ax.set_xscale("log")
        r = results[name]
        ax.set_title(f"{name}: {r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} s CPU, {r['peak_rss_mib'] / GIB:.1f} GiB", fontsize=9)
        ax.set_xlabel("step seconds (log scale)")
        ax.tick_params(axis="y", labelsize=7)
    ax = axes[-1]
    names = [n for n in RUNS if n in results and n != "generate"]
    walls = [results[n]["wall_s"] for n in names]
    bars = ax.bar(names, walls, color="#55a868")
    ax.bar_label(bars, labels=[f"{w:.0f} s\n{results[n]['peak_rss_mib'] / GIB:.1f} GiB" for n, w in zip(names, walls)], fontsize=8)
    for name, target in TARGETS.get(results["scale"], {}).items():
        if isinstance(target, dict) and name in names and "wall_s" in target:
            x = names.index(name)
            ax.hlines(target["wall_s"], x - 0.4, x + 0.4, colors="#c44e52", linestyles="dashed")
            ax.annotate(f"target {target['wall_s']} s", (x, target["wall_s"]), color="#c44e52", fontsize=8,
                        xytext=(0, 3), textcoords="offset points", ha="center")
    ax.set_ylabel("wall seconds (peak RSS on the bars)")
    ax.set_title(f"{results['scale']} scale: runs and targets", fontsize=9)
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["tiny", "small", "large"], default="small")
    parser.add_argument("--data", type=Path, help="MIND-format data to use (default: generated into benchmarks/data/<scale>)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--reference", type=Path, help="kept figures to print beside the new ones "
                        "(default: benchmarks/reference/<scale>.json where it exists)")
    parser.add_argument("--backend", default="openvino", help="embedding backend")
    parser.add_argument("--precision", default="bf16" if _native_bf16() else "fp32")
    parser.add_argument("--baseline-users", type=int, default=None,
                        help="users of the day in the baseline (0: all; default: all at small scale, 800 at large)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["embeddings_alone", "no_inference", "daily", "floor", "baseline"])
    parser.add_argument("--storage", choices=["duckdb", "delta"], default="duckdb",
                        help="delta: also the no-inference graph on Delta tables as a backfill, 1 and 2 runs at once")
    parser.add_argument("--days", type=int, choices=range(2, 15), metavar="2..14",
                        help="a window: only the first N days, each as dense as at the whole scale (generated into "
                             "benchmarks/data/<scale>-<N>d), every run over them instead of all 14")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of no_inference_run and the floor; their medians are reported and compared")
    args = parser.parse_args(argv)
    complete = args.data / "COMPLETE" if args.data else None
    holds_the_window = complete is not None and complete.exists() and complete.read_text() == f"days={args.days}\n"
    if args.days and args.data and any(args.data.glob("*")) and not holds_the_window:
        # the floor computes every day of the files, the runs only the window's
        parser.error(f"--days generates its own window of days; {args.data} holds other data, and the floor would "
                     "compute every day of that folder against the runs' first N: name an empty folder for the window "
                     "to be generated in, or pass a folder holding only those days without --days")
    started = time.perf_counter()

    name = f"{args.scale}-{args.days}d" if args.days else args.scale
    out = args.results / name
    out.mkdir(parents=True, exist_ok=True)
    log = out / "runs.log"
    log.unlink(missing_ok=True)
    data = args.data or ROOT / "benchmarks" / "data" / name
    days = first_days(args.days or 14)
    results: dict = {"scale": name, "machine": _machine(), "cpu": cpu_model(), "measured": dt.date.today().isoformat(),
                     "data": str(data), "days": [days[0], days[-1]], "embedding_option": f"{args.backend}/{args.precision}",
                     "repeats": args.repeats}
    results["generate"] = generated(data, args.scale, args.days, reuse=bool(args.data) and not args.days, log=log)
    print("generate", results["generate"], flush=True)

    work = Path(tempfile.mkdtemp(prefix="bench-", dir=out))
    env = pipeline_env(data, args.scale, args.backend, args.precision)
    first_day_vectors = data / "first_day_vectors.duckdb" if args.days else None
    try:
        if first_day_vectors and "daily" not in args.skip:  # first: its first day's vectors also seed one_run
            results.update(daily_path(work, env, days, log, first_day_vectors))
        first = Home(work, "one_run", env)
        if first_day_vectors and first_day_vectors.exists():
            copy_embedding_cache(first_day_vectors, first.database)
            results.setdefault("first_day_vectors", {"file": str(first_day_vectors), "kept_from_an_earlier_run": True})
        results["one_run"] = {**first.run(days, log), "database_mib": first.size_mib()}
        print("one_run", {k: v for k, v in results["one_run"].items() if k != "steps"}, flush=True)
        if DEV_DAY in days:  # gold/ranker_evaluation on what one_run stored: it scores the dev day
            results["evaluation"] = first.run([], log)
            print("evaluation", {k: v for k, v in results["evaluation"].items() if k != "steps"}, flush=True)
        results["silver_columns"] = _silver_columns(first.database)
        if "embeddings_alone" not in args.skip:
            results["embeddings_alone"] = embeddings_alone(data, EMBEDDING_TEXTS[args.scale], args.backend, args.precision,
                                                           log)
            in_pipeline = results["one_run"]["steps"]["features__text_embeddings"].get("texts_per_second")
            if in_pipeline:
                results["embedding_ratio"] = round(in_pipeline / results["embeddings_alone"]["texts_per_second"], 3)
            print("embeddings_alone", results["embeddings_alone"], flush=True)
        if "no_inference" not in args.skip:
            tries = []
            for attempt in range(args.repeats):
                second = Home(work, f"no_inference_run_{attempt}", env)
                copy_embedding_cache(first.database, second.database)
                tries.append({**second.run(days, log), "database_mib": second.size_mib()})
                print("no_inference_run", {k: v for k, v in tries[-1].items() if k != "steps"}, flush=True)
                shutil.rmtree(second.root)
            results["no_inference_run"] = median_of(tries)
        if "floor" not in args.skip:
            results["floor"] = median_of([floor(data, first.database, work, log) for _ in range(args.repeats)])
            if "no_inference_run" in results:
                results["floor_ratio"] = round(results["no_inference_run"]["wall_s"] / results["floor"]["wall_s"], 2)
                results["floor_best_ratio"] = round(results["no_inference_run"]["wall_s"] / best_of_floor(results), 2)
            print("floor", {k: v for k, v in results["floor"].items() if k != "stages"}, flush=True)
        if args.storage == "delta":
            for concurrent in (1, 2):
                delta = DeltaHome(work, f"delta_{concurrent}", env, concurrent)
                copy_embedding_cache_to_delta(first.database, delta.uri)
                results[f"delta_backfill_{concurrent}"] = delta.backfill(log)
                print(f"delta_backfill_{concurrent}", results[f"delta_backfill_{concurrent}"], flush=True)
                shutil.rmtree(delta.root)
        shutil.rmtree(first.root)
        if not first_day_vectors and "daily" not in args.skip:
            results.update(daily_path(work, env, days, log))
    except SystemExit as err:  # a run failed: the runs before it are still reported
        results["failed"] = str(err)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    if "baseline" not in args.skip and "failed" not in results:
        users = args.baseline_users if args.baseline_users is not None else (800 if args.scale == "large" else 0)
        # 2019-11-14 has the whole lookback of train days; a window's last day, what it has
        day = min(dt.date(2019, 11, 14), dt.date.fromisoformat(days[-1]))
        results["baseline"] = baseline_comparison(data, users, day)
        print("baseline", results["baseline"], flush=True)
    results["benchmark_wall_s"] = round(time.perf_counter() - started, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    reference_file = args.reference or ROOT / "benchmarks" / "reference" / f"{name}.json"
    reference = json.loads(reference_file.read_text()) if reference_file.exists() else None
    report = markdown(results, reference)
    (out / "results.md").write_text(report)
    plot(results, out / "report.png")
    print(report)
    print(f"results in {out}")
    if "failed" in results:
        raise SystemExit(results["failed"])


def _silver_columns(database: Path) -> int:
    from news_ai_assets.storage.duckdb_file import connect

    with connect(database, read_only=True) as conn:
        return conn.execute("SELECT count(*) FROM (DESCRIBE silver.training_examples)").fetchall()[0][0]


def _native_bf16() -> bool:
    from news_ai_assets.compute.encoder import cpu_has_native_bf16

    return cpu_has_native_bf16()


def cpu_model() -> str:
    """The CPU's model name, family/model/stepping and the matrix instructions the encoder's speed
    depends on (these boxes share a model name across CPUs whose encoder rates differ 2.2x)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        import platform

        return platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    matrix = [f for f in ("avx512_bf16", "amx_bf16", "avx512_vnni", "avx2") if f in flags][:2] or ["no AVX2"]
    return (f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')} model {fields.get('model', '?')} "
            f"stepping {fields.get('stepping', '?')}; {', '.join(matrix)})")


def _machine() -> str:
    import platform

    return f"{cpu_model()}, {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}"


if __name__ == "__main__":
    main()
