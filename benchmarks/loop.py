"""The speed loop: build a database at a scale's density once and keep it, then time chosen steps for
a chosen day on it, each try its own `dg launch` process (as users run it) on a fresh copy of the kept
state, as often as you like.

    .venv/bin/python benchmarks/loop.py build benchmarks/results/loop-large --scale large --days 3
    .venv/bin/python benchmarks/loop.py time benchmarks/results/loop-large silver/training_examples
    .venv/bin/python benchmarks/loop.py time benchmarks/results/loop-large daily   # the next day, every daily asset

`build` generates the first DAYS + 1 days of the scale (each day as dense as in the whole scale) and
materialises every daily asset for the first DAYS of them as one run (embeddings included), into
DIR/kept/. `time` copies DIR/kept/ to DIR/try/ before each try (not timed), so every try starts from
the same state and does the same work: a step re-run for a kept day, or `daily`, every daily asset
for the day after the kept ones (the new-day path, embedding that day's new texts each time). It
prints each try, the median of the tries per run and per step, and the kept figures of
benchmarks/reference/loop-<scale>.json beside them, marking a median >= 15% slower and saying so
when the CPU differs. `--out FILE` writes the figures as JSON (copy it there to keep them).
"""

import argparse
import datetime as dt
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.run import (  # noqa: E402
    SLOWER, Home, cpu_model, first_days, generated, is_slower, median_of, other_cpu, pipeline_env,
)

DAILY = "daily"


def _environment(loop: dict) -> dict:
    return pipeline_env(Path(loop["data"]), loop["scale"], loop["backend"], loop["precision"])


def days_without_lines(database: Path, days: list[str]) -> list[str]:
    """Those of `days` on which the raw files a run staged into `database` hold no line (bronze.source_days)."""
    from news_ai_assets.storage.duckdb_file import connect

    with connect(database, read_only=True) as conn:
        lines = {str(day): n for day, n in
                 conn.execute("SELECT date, sum(lines) FROM bronze.source_days GROUP BY date").fetchall()}
    return [day for day in days if not lines.get(day)]


def build(folder: Path, scale: str, days: int, backend: str, precision: str, data: Path | None) -> dict:
    """Generates the data (DAYS + 1 days) and keeps every daily asset of the first DAYS as one run."""
    if (folder / "kept").exists():
        raise SystemExit(f"{folder / 'kept'} exists: remove it to build again")
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "build.log"
    source = data or folder / "mind"
    generate = generated(source, scale, days + 1, reuse=data is not None, log=log)
    *kept, next_day = first_days(days + 1)
    loop = {"scale": scale, "data": str(source), "kept_days": [kept[0], kept[-1]], "next_day": next_day,
            "backend": backend, "precision": precision, "cpu": cpu_model(), "generate": generate}
    home = Home(folder, "kept", _environment(loop))
    print(f"building {home.root}: every daily asset for {kept[0]}...{kept[-1]}", flush=True)
    loop["build"] = {**home.run(kept, log), "database_mib": home.size_mib()}
    if empty := days_without_lines(home.database, [*kept, next_day]):  # a try would time an empty day
        raise SystemExit(f"{source} holds no impressions on {', '.join(empty)}: the loop needs {days} kept days and "
                         f"the next one; remove {folder / 'kept'} and build from data that holds them")
    (folder / "loop.json").write_text(json.dumps(loop, indent=2))
    return loop


def _try(folder: Path, loop: dict, selection: str, day: str, log: Path) -> dict:
    """One try on a fresh copy of the kept state: its wall, CPU, peak RSS and steps."""
    attempt = folder / "try"
    shutil.rmtree(attempt, ignore_errors=True)
    shutil.copytree(folder / "kept", attempt)
    home = Home(folder, "try", _environment(loop), fresh=False)
    try:
        return home.run([day], log, None if selection == DAILY else selection)
    finally:
        shutil.rmtree(attempt, ignore_errors=True)


def time_steps(folder: Path, selections: list[str], day: str | None, repeats: int) -> dict:
    """Each selection for its day, `repeats` times; the tries and their medians."""
    if not (folder / "loop.json").is_file():
        raise SystemExit(f"{folder} holds no loop.json: build a kept database there first (loop.py build {folder})")
    loop = json.loads((folder / "loop.json").read_text())
    log = folder / "time.log"
    figures = {"scale": loop["scale"], "cpu": cpu_model(), "measured": dt.date.today().isoformat(),
               "embedding_option": f"{loop['backend']}/{loop['precision']}", "repeats": repeats, "runs": {}}
    for selection in selections:
        the_day = day or (loop["next_day"] if selection == DAILY else loop["kept_days"][1])
        tries = []
        for attempt in range(repeats):
            tries.append(_try(folder, loop, selection, the_day, log))
            print(f"{selection} {the_day} try {attempt + 1}: {tries[-1]['wall_s']} s wall, "
                  f"{tries[-1]['peak_rss_mib']} MiB", flush=True)
        figures["runs"][f"{selection} {the_day}"] = median_of(tries)
    return figures


def report(figures: dict, kept: dict | None) -> str:
    """The medians per run and per step, the kept figures beside them."""
    lines = [f"# Speed loop: `{figures['scale']}`, {figures['cpu']}, {figures['embedding_option']}, "
             f"median of {figures['repeats']}", ""]
    if kept:
        lines += [f"Kept figures: {kept['measured']}; a median >= {SLOWER - 1:.0%} slower than them is marked.", ""]
        if kept.get("cpu") != figures["cpu"]:
            lines += [other_cpu(kept.get("cpu"), figures["cpu"]), ""]
    for run, result in figures["runs"].items():
        kept_run = (kept or {}).get("runs", {}).get(run, {})
        lines += [f"## {run}: {_marked(result['wall_s'], kept_run.get('wall_s'))} s wall (tries "
                  f"{', '.join(map(str, result.get('tries_wall_s', [result['wall_s']])))}), {result['cpu_s']} CPU s, "
                  f"{result['peak_rss_mib']} MiB peak", "", "| step | s | kept s | rows | rows/s | notes |",
                  "|---|---|---|---|---|---|"]
        for step, s in sorted(result["steps"].items(), key=lambda item: -item[1].get("step_s", 0)):
            kept_s = kept_run.get("steps", {}).get(step, {}).get("step_s")
            notes = ", ".join(f"{k} {s[k]}" for k in ("newly_embedded", "texts_per_second", "cache_hits") if k in s)
            lines.append(f"| {step} | {_marked(s.get('step_s', 0), kept_s)} | {kept_s or ''} | "
                         f"{s.get('row_count', '')} | {s.get('rows_per_s', '')} | {notes} |")
        lines.append("")
    return "\n".join(lines)


def _marked(value: float, kept: float | None) -> str:
    return f"**{value}** (>= {SLOWER - 1:.0%} slower)" if is_slower(value, kept) else f"{value}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build", help="generate the data and keep a database of its first days")
    make.add_argument("folder", type=Path)
    make.add_argument("--scale", choices=["tiny", "small", "large"], default="large")
    make.add_argument("--days", type=int, default=3, choices=range(1, 14), metavar="1..13", help="days kept")
    make.add_argument("--data", type=Path, help="MIND-format data to use instead (must hold DAYS + 1 days)")
    make.add_argument("--backend", default="openvino")
    make.add_argument("--precision", help="default: bf16 where the CPU has it natively, else fp32")
    timing = commands.add_parser("time", help="time steps for a day on copies of the kept database")
    timing.add_argument("folder", type=Path)
    timing.add_argument("steps", nargs="+", help=f"asset selections (e.g. silver/training_examples), or {DAILY!r}: "
                        "every daily asset")
    timing.add_argument("--day", help="default: the last kept day; for 'daily', the day after the kept ones")
    timing.add_argument("--repeats", type=int, default=3)
    timing.add_argument("--reference", type=Path, help="kept figures (default: benchmarks/reference/loop-<scale>.json)")
    timing.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)

    if args.command == "build":
        from benchmarks.run import _native_bf16

        precision = args.precision or ("bf16" if _native_bf16() else "fp32")
        loop = build(args.folder, args.scale, args.days, args.backend, precision, args.data)
        print(json.dumps({k: v for k, v in loop["build"].items() if k != "steps"}))
        return
    figures = time_steps(args.folder, args.steps, args.day, args.repeats)
    reference = args.reference or ROOT / "benchmarks" / "reference" / f"loop-{figures['scale']}.json"
    kept = json.loads(reference.read_text()) if reference.exists() else None
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))
    print(report(figures, kept))


if __name__ == "__main__":
    main()
