"""Speed and memory of the pipeline at MIND-small and MIND-large shape, against the old approach.

    .venv/bin/python benchmarks/run.py --scale small

1. Generates (or reuses) MIND-format data at the scale (`tiny`, `small`, `large`).
2. Embedding run: bronze + features/text_embeddings for every partition into a fresh DuckDB
   file, through `dagster asset materialize` (the path users run): texts embedded, texts/s.
3. Pipeline run: the whole graph for every partition as one backfill run, in its own process:
   wall, CPU and peak RSS of the process, and per asset the step's wall time, rows out and
   rows/s. The embedding cache is warm, so this is bronze -> silver without inference, and it
   shows that a second run embeds nothing.
4. Per partition (--per-partition): the whole graph one day per process, for per-day figures.
5. Baseline: the per-row pandas loops we replace, against our functions on the same sample.

Results go to <results>/<scale>/: results.json, results.md and stages.png.
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

FIRST, LAST = "2019-11-09", "2019-11-22"
EMBEDDING_SELECTION = "bronze/behaviors,bronze/news,features/text_embeddings"
ASSET_STEPS = ["bronze__behaviors", "bronze__news", "features__interactions", "features__news_features",
               "features__text_embeddings", "features__user_features", "silver__training_examples"]


def measured(command: list[str], env: dict, log: Path) -> dict:
    """Runs a command as its own process; its wall time, CPU time and peak RSS (via wait4)."""
    with open(log, "ab") as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {code}; see {log}")
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mib": round(usage.ru_maxrss / 1024 / (1024 if sys.platform == "darwin" else 1), 1)}


def materialize(select: str, partitions: list[str], env: dict, log: Path) -> dict:
    bounds = ["--partition", partitions[0]] if len(partitions) == 1 else ["--partition-range", f"{partitions[0]}...{partitions[-1]}"]
    dagster = str(Path(sys.executable).parent / "dagster")
    return measured([dagster, "asset", "materialize", "-m", "news_ai_assets.definitions", "--select", select, *bounds], env, log)


def last_run_steps(home: Path) -> dict[str, dict]:
    """Per asset of the latest run: step seconds and the materialisation metadata."""
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
            for key in ("run_newly_embedded", "run_cache_hits", "run_texts_per_second", "device"):
                if key in metadata:
                    step[key.removeprefix("run_")] = metadata[key].value
    for step in steps.values():
        if step.get("row_count") and step.get("step_s"):
            step["rows_per_s"] = round(step["row_count"] / step["step_s"])
    return steps


def baseline_comparison(mind_dir: Path, users: int) -> dict:
    """Our user features and interactions vs per-row pandas, on the same sample of one day."""
    import pandas as pd
    import polars as pl

    from benchmarks import baseline_pandas
    from news_ai_assets.compute.interactions import interactions_from_behaviors
    from news_ai_assets.compute.user_features import user_features_for_day
    from news_ai_assets.mind.reader import discover_splits, read_behaviors, read_news

    day = dt.date(2019, 11, 14)
    splits = discover_splits(mind_dir)
    behaviors = read_behaviors(splits, day - dt.timedelta(days=7), day + dt.timedelta(days=1)).rows
    sample_users = behaviors.filter(pl.col("date") == day).get_column("user_id").unique(maintain_order=True).head(users)
    sample = behaviors.filter(pl.col("user_id").is_in(sample_users.implode()))
    news = read_news(splits)[0].select("news_id", "category", "subcategory")
    sample_pd = pd.DataFrame(sample.to_dicts(), dtype=object)
    news_pd = pd.DataFrame(news.to_dicts(), dtype=object)

    def best_of(fn, repeat: int) -> float:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return sorted(times)[len(times) // 2]

    ours = best_of(lambda: (user_features_for_day(sample, news, day, 7), interactions_from_behaviors(sample)), 5)
    theirs = best_of(lambda: (baseline_pandas.user_features(sample_pd, news_pd, day, 7),
                              baseline_pandas.interactions(sample_pd)), 1)
    same_users = set(baseline_pandas.user_features(sample_pd, news_pd, day, 7)["user_id"]) == set(
        user_features_for_day(sample, news, day, 7).get_column("user_id"))
    return {"day": str(day), "users": sample_users.len(), "impressions": sample.height,
            "ours_s": round(ours, 4), "baseline_s": round(theirs, 2), "speedup": round(theirs / ours), "same_users": same_users}


def markdown(results: dict) -> str:
    lines = [f"# Benchmark: scale `{results['scale']}` ({results['machine']})", ""]
    lines += ["| run | wall s | CPU s | peak RSS MiB |", "|---|---|---|---|"]
    for name in ("generate", "embedding_run", "pipeline_run"):
        if name in results:
            r = results[name]
            lines.append(f"| {name} | {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_mib']} |")
    if "pipeline_steps" in results:
        lines += ["", "Pipeline run, per asset (all partitions in one run):", "",
                  "| asset | step s | rows out | rows/s |", "|---|---|---|---|"]
        for asset, step in results["pipeline_steps"].items():
            lines.append(f"| {asset} | {step.get('step_s', '')} | {step.get('row_count', '')} | {step.get('rows_per_s', '')} |")
        e = results["embedding_steps"].get("features__text_embeddings", {})
        again = results["pipeline_steps"].get("features__text_embeddings", {})
        lines += ["", f"Embeddings ({results['embedding_option']}): {e.get('newly_embedded')} texts embedded at "
                  f"{e.get('texts_per_second')} texts/s on {e.get('device')}; second run: {again.get('newly_embedded')} "
                  f"embedded, {again.get('cache_hits')} cache hits.", ""]
    if "per_partition" in results:
        assets = ASSET_STEPS
        lines += ["", "Per partition (whole graph, one process per day; step seconds per asset; "
                  "`w/o inference` = wall minus the text_embeddings step):", "",
                  "| partition | wall s | w/o inference | CPU s | peak RSS MiB | embedded (texts/s) | "
                  + " | ".join(a.split("__")[1] for a in assets) + " | silver rows |",
                  "|" + "---|" * (7 + len(assets))]
        for day, r in results["per_partition"].items():
            steps = r["steps"]
            embedding = steps.get("features__text_embeddings", {})
            lines.append(
                f"| {day} | {r['wall_s']} | {round(r['wall_s'] - embedding.get('step_s', 0), 1)} | {r['cpu_s']} | "
                f"{r['peak_rss_mib']} | {embedding.get('newly_embedded', 0)} ({embedding.get('texts_per_second', 0)}) | "
                + " | ".join(str(steps.get(a, {}).get("step_s", "")) for a in assets)
                + f" | {steps.get('silver__training_examples', {}).get('row_count', '')} |"
            )
        lines.append("")
    b = results["baseline"]
    lines += [f"Baseline (per-row pandas) on {b['users']} users / {b['impressions']} impressions around {b['day']}: "
              f"{b['baseline_s']} s vs ours {b['ours_s']} s: **{b['speedup']}x** (same users: {b['same_users']})."]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "pipeline_steps" in results:
        steps = results["pipeline_steps"]
        inference = results["embedding_steps"].get("features__text_embeddings", {}).get("step_s", 0)
    else:  # daily mode: summed over the days
        steps = {}
        for day in results["per_partition"].values():
            for asset, step in day["steps"].items():
                steps.setdefault(asset, {"step_s": 0})["step_s"] += step.get("step_s", 0)
        inference = 0
    names = list(steps) + ["text_embeddings (inference)"]
    seconds = [s.get("step_s", 0) for s in steps.values()] + [inference]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.barh(names, seconds, color=["#4c72b0"] * len(steps) + ["#dd8452"])
    ax.set_xlabel("seconds (all partitions, one run)")
    ax.set_title(f"news_ai_assets, {results['scale']} scale: time per stage")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["tiny", "small", "large"], default="small")
    parser.add_argument("--data", type=Path, help="MIND-format data to use (default: generated into benchmarks/data/<scale>)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--backend", default="openvino", help="embedding backend for the embedding run")
    parser.add_argument("--precision", default="bf16" if _native_bf16() else "fp32")
    parser.add_argument("--mode", choices=["range", "daily", "both"], default="both",
                        help="range: embedding run + whole range as one run; daily: one run per day (bounded memory "
                             "at MIND-large, embeddings included in the first days); both")
    parser.add_argument("--days", type=int, default=14, help="daily mode: the first N days")
    parser.add_argument("--baseline-users", type=int, default=800,
                        help="users in the baseline sample (the per-row baseline grows with users x rows)")
    args = parser.parse_args(argv)

    out = args.results / args.scale
    out.mkdir(parents=True, exist_ok=True)
    log = out / "dagster.log"
    log.unlink(missing_ok=True)
    data = args.data or ROOT / "benchmarks" / "data" / args.scale
    results: dict = {"scale": args.scale, "machine": _machine(), "embedding_option": f"{args.backend}/{args.precision}"}

    if (data / "COMPLETE").exists() or args.data:
        results["generate"] = {"wall_s": 0, "cpu_s": 0, "peak_rss_mib": 0, "reused": str(data)}
    else:
        shutil.rmtree(data, ignore_errors=True)
        results["generate"] = measured(
            [sys.executable, "-m", "news_ai_assets.mind.sample", "--scale", args.scale, "--out", str(data)], os.environ.copy(), log)
        (data / "COMPLETE").touch()
    print("generate", results["generate"], flush=True)

    work = Path(tempfile.mkdtemp(prefix="bench-", dir=out))
    home = work / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "NEWS_AI_MIND_DIR": str(data),
           "NEWS_AI_DUCKDB_PATH": str(work / "bench.duckdb"), "NEWS_AI_EMBEDDING_DEVICE": "cpu",
           "NEWS_AI_EMBEDDING_BACKEND": args.backend, "NEWS_AI_EMBEDDING_PRECISION": args.precision}
    if args.scale == "tiny":  # ~10 impressions a day: one user without history moves a day's missing share by ~10%
        env["NEWS_AI_MAX_MISSING_CROSS_SHARE"] = "0.2"
    partitions = [FIRST, LAST]
    try:
        if args.mode in ("range", "both"):
            results["embedding_run"] = materialize(EMBEDDING_SELECTION, partitions, env, log)
            results["embedding_steps"] = last_run_steps(home)
            print("embedding run", results["embedding_run"], flush=True)
            results["pipeline_run"] = materialize("*", partitions, env, log)
            results["pipeline_steps"] = last_run_steps(home)
            print("pipeline run", results["pipeline_run"], flush=True)
        if args.mode in ("daily", "both"):
            results["per_partition"] = {}
            for i in range(args.days):
                day = (dt.date.fromisoformat(FIRST) + dt.timedelta(days=i)).isoformat()
                result = materialize("*", [day], env, log)
                results["per_partition"][day] = {**result, "steps": last_run_steps(home)}
                print(day, result, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    results["baseline"] = baseline_comparison(data, args.baseline_users)
    print("baseline", results["baseline"], flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "results.md").write_text(markdown(results))
    plot(results, out / "stages.png")
    print(markdown(results))
    print(f"results in {out}")


def _native_bf16() -> bool:
    from news_ai_assets.embedding_model import cpu_has_native_bf16

    return cpu_has_native_bf16()


def _machine() -> str:
    import platform

    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


if __name__ == "__main__":
    main()
