"""The benchmark scripts stay runnable: the SQL floor computes silver's rows, the runner writes its report."""

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from benchmarks import loop, run, sql_floor
from news_ai_assets.mind import sample
from news_ai_assets_tests.compare import assert_rows_match
from news_ai_assets_tests.doc_blocks import clean_env, doc_block, run_bash, user_folder
from news_ai_assets_tests.pipeline import read_table

ROOT = Path(__file__).resolve().parents[1]


def _floor_matches_graph(floor: Path, graph: Path, table: str, key: list[str], last_day: str) -> int:
    """Every row and column of the graph's `table` equals the floor's (floats to 1e-6, lists equal)."""
    ours = read_table(graph, f"silver.{table}").sort(key)
    theirs = read_table(floor, table).filter(pl.col("date") <= dt.date.fromisoformat(last_day)).sort(key)
    assert theirs.columns == ours.columns
    assert_rows_match(theirs, ours.to_dicts(), key)
    return ours.height


def test_the_sql_floor_computes_what_the_graph_gives_consumers(tmp_path, tiny_mind, tiny_graph):
    # The floor reads the graph's cached vectors; it computes every day of the files, the graph 09..15.
    floor = sql_floor.run(tiny_mind, tiny_graph, tmp_path / "floor.duckdb")
    examples = _floor_matches_graph(tmp_path / "floor.duckdb", tiny_graph, "training_examples",
                                    ["date", "split", "impression_id", "position"], "2019-11-15")
    impressions = _floor_matches_graph(tmp_path / "floor.duckdb", tiny_graph, "impressions",
                                       ["date", "split", "impression_id"], "2019-11-15")
    assert examples > 0 and impressions > 0 and floor["rows"] > examples and floor["impressions"] > impressions
    seen = read_table(tiny_graph, "silver.training_examples").select(
        pl.col("history_similarity", "history_entity_similarity").is_not_null().sum(),
        (pl.col("candidate_impressions_1h", "candidate_clicks_24h") > 0).sum())
    assert min(seen.row(0)) > 0, f"the comparison would not see the similarities or the popularity windows: {seen.row(0)}"
    assert set(floor["steps_s"]) == set(floor["stages"])


@pytest.mark.slow
def test_the_benchmark_runs_end_to_end_at_tiny_scale(tmp_path, tiny_mind):
    # docs/benchmark.md's command, with the data and the report in temporary folders
    completed = run_bash("benchmark", ROOT, clean_env(), timeout=900,
                         replace={"--scale tiny": f"--scale tiny --data {tiny_mind} --results {tmp_path}"})
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    results = json.loads((tmp_path / "tiny" / "results.json").read_text())
    assert {"one_run", "no_inference_run", "daily_next_day", "floor", "floor_ratio", "baseline"} <= set(results)
    assert results["one_run"]["steps"]["features__text_embeddings"]["newly_embedded"] > 0
    assert results["no_inference_run"]["steps"]["features__text_embeddings"]["newly_embedded"] == 0
    assert (tmp_path / "tiny" / "report.png").stat().st_size > 20_000


@pytest.mark.slow
def test_a_window_embeds_its_first_day_once_and_keeps_it_beside_its_data(tmp_path):
    """A window runs the daily path first; its first day's vectors are kept in the data folder and given
    to later windows' daily_first_day and to one_run, whose encoder embeds only the later days' texts."""
    def window() -> dict:
        command = [sys.executable, ROOT / "benchmarks" / "run.py", "--scale", "tiny", "--days", "2", "--data",
                   tmp_path / "window", "--results", tmp_path / "results", "--skip", "embeddings_alone"]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=900)
        assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
        return json.loads((tmp_path / "results" / "tiny-2d" / "results.json").read_text())

    def embedded(results: dict, run: str) -> int:
        return results[run]["steps"]["features__text_embeddings"]["newly_embedded"]

    first, again = window(), window()
    assert (tmp_path / "window" / "first_day_vectors.duckdb").exists()
    assert [r["first_day_vectors"]["kept_from_an_earlier_run"] for r in (first, again)] == [False, True]
    assert embedded(first, "daily_first_day") > 0 and embedded(again, "daily_first_day") == 0
    assert embedded(first, "daily_next_day") == embedded(again, "daily_next_day") > 0
    assert embedded(first, "one_run") == embedded(again, "one_run") == embedded(first, "daily_next_day")
    assert again["generate"]["reused"] and "kept from an earlier run" in (tmp_path / "results" / "tiny-2d" / "results.md").read_text()
    # the baseline compares on the window's own last day (it once asked for 2019-11-14 and crashed a window)
    assert first["baseline"]["day"] == "2019-11-10" and first["baseline"]["impressions"] > 0 and first["baseline"]["same_users"]


@pytest.mark.slow
def test_a_failed_run_stops_the_benchmark_with_a_report_of_what_ran(tmp_path):
    empty = tmp_path / "no_mind_files"
    empty.mkdir()
    completed = subprocess.run(
        [sys.executable, ROOT / "benchmarks" / "run.py", "--scale", "tiny", "--data", empty, "--results", tmp_path],
        capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode != 0
    results = json.loads((tmp_path / "tiny" / "results.json").read_text())
    assert "dg launch" in results["failed"] and "one_run" not in results
    assert "Stopped early" in (tmp_path / "tiny" / "results.md").read_text()
    assert "holds no MIND split folder" in (tmp_path / "tiny" / "runs.log").read_text()


@pytest.mark.slow
def test_the_embedding_benchmark_runs_on_the_cpu_and_refuses_fp16_there(tmp_path, tiny_mind):
    folder = user_folder(tmp_path)  # docs/benchmark.md's command, after the demo wrote its sample
    # The tiny sample where the demo's would be: every option encodes each distinct text of the file for its
    # fidelity, and the demo's 2,500 articles made that most of this test's three minutes.
    sample.generate(folder / "data" / "sample_mind" / "demo", "tiny")
    completed = run_bash("embedding-benchmark", folder, clean_env(), timeout=900)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    rows = {(row["path"], row["option"]): row for row in json.loads((folder / "embedding_rows.json").read_text())}
    assert rows[("sentence-transformers encode()", "torch/fp32")]["texts/s"] > 0
    for option in ("torch/fp32", "openvino/fp32"):
        assert rows[("Encoder", option)]["min cosine (sentence-transformers fp32 here)"] >= 0.99999
    assert "runs on CUDA and MPS GPUs, not on the CPU" in rows[("Encoder", "torch/fp16")]["refused"]


def _try(wall: float, silver: float) -> dict:
    return {"wall_s": wall, "cpu_s": wall, "peak_rss_mib": 100.0,
            "steps": {"silver__training_examples": {"step_s": silver}}}


def test_repeated_runs_are_reported_by_their_medians_and_a_slower_median_is_marked():
    median = run.median_of([_try(10, 5), _try(30, 4), _try(12, 9)])
    assert (median["wall_s"], median["steps"]["silver__training_examples"]["step_s"]) == (12, 5)
    assert median["tries_wall_s"] == [10, 30, 12]
    cpu = run.cpu_model()
    kept = {"measured": "2026-12-07", "cpu": cpu, "runs": {"silver 2019-11-11": _try(11, 4.3)}}
    figures = {"scale": "large", "cpu": cpu, "embedding_option": "openvino/bf16", "repeats": 3,
               "runs": {"silver 2019-11-11": median}}
    text = loop.report(figures, kept)
    assert "| silver__training_examples | **5** (>= 15% slower) | 4.3 |" in text  # 5 >= 1.15 x 4.3
    assert "12 s wall" in text and "**12**" not in text  # 12 < 1.15 x 11
    assert "Another CPU" not in text
    assert "Another CPU" in loop.report(figures, {**kept, "cpu": "another model"})


def test_the_loop_refuses_what_it_cannot_time(tmp_path, tiny_graph):
    # a kept database must hold lines on its days and the next one, or a try would time an empty day
    assert loop.days_without_lines(tiny_graph, ["2019-11-09", "2019-11-22", "2019-11-23"]) == ["2019-11-23"]
    with pytest.raises(SystemExit, match="holds no loop.json: build a kept database there first"):
        loop.main(["time", str(tmp_path / "never_built"), "daily"])
    # a window's floor would compute every day of a named folder against the runs' first N
    (tmp_path / "MINDsample_train").mkdir()
    completed = subprocess.run([sys.executable, ROOT / "benchmarks" / "run.py", "--scale", "tiny", "--days", "3",
                                "--data", tmp_path, "--results", tmp_path / "results"], capture_output=True, text=True)
    assert completed.returncode == 2 and "the floor would compute every day of that folder" in completed.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_the_speed_loop_times_a_step_and_the_next_day_on_copies_of_a_kept_database(tmp_path, tiny_mind):
    # docs/benchmark.md's recipe at tiny scale, 2 tries each, on the tiny sample
    folder = user_folder(tmp_path / "user")
    loop_folder = tmp_path / "loop"
    completed = run_bash("speed-loop", folder, clean_env(), timeout=900, replace={
        "benchmarks/results/loop-large": str(loop_folder),
        "--scale large --days 3": f"--scale tiny --days 3 --data {tiny_mind}", "--repeats 3": "--repeats 2"})
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    stored = read_table(loop_folder / "kept" / "bench.duckdb", "silver.training_examples")
    assert sorted(stored.get_column("date").unique()) == [dt.date(2019, 11, d) for d in (9, 10, 11)]
    silver, daily = completed.stdout.split("# Speed loop")[1:]
    assert "## silver/training_examples 2019-11-11: " in silver and "| silver__training_examples | " in silver
    assert "silver__impressions" not in silver.split("## ")[1]
    assert len(re.findall("silver/training_examples 2019-11-11 try", completed.stdout)) == 2
    # every daily asset of the next day, whose new texts each try embeds, as the kept state lacks them
    assert "## daily 2019-11-12: " in daily and "| silver__impressions | " in daily
    assert len(re.findall(r"\| features__text_embeddings \|.*newly_embedded [1-9]", daily)) == 1
    # point-in-time retrieval beside silver on the same kept state (the block's second line)
    retrieval = doc_block("retrieval-benchmark").splitlines()[1].split("#")[0].replace(
        "benchmarks/results/loop-small", str(loop_folder)).replace("--events 1000000", "--events 400")
    done = subprocess.run(retrieval.replace(".venv/bin/python", sys.executable), shell=True, cwd=ROOT, env=clean_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"400 events on 3 days in [0-9.]+ s .*events/s; silver for 2019-11-(09|10|11): \d[\d,]* rows", done.stdout)
    # the kept database is as it was built; nothing of the tries is left
    assert read_table(loop_folder / "kept" / "bench.duckdb", "silver.training_examples").equals(stored)
    assert not (loop_folder / "try").exists()


@pytest.mark.slow
def test_many_runs_backfills_on_the_emulators_and_measures_each_run(tmp_path):
    """benchmarks/many_runs.py, as a user runs it, on two tiny days with two runs in flight (a train day and the
    dev day, so the evaluation runs too): the backfill succeeds on the S3 emulator and PostgreSQL, and every
    run's steps and fixed cost are measured."""
    pytest.importorskip("moto.server", reason="moto[server] is a dev extra")
    done = subprocess.run([sys.executable, "benchmarks/many_runs.py", "--scale", "tiny", "--days", "2", "--in-flight", "2",
                           "--folder", str(tmp_path)], cwd=ROOT, env=clean_env(NEWS_AI_START_DATE="2019-11-14"),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = json.loads((tmp_path / "many_runs.json").read_text())["results"]
    assert result["backfill"] == "COMPLETED_SUCCESS" and result["failed"] == [], result["failed"]
    assert result["runs"] >= 2 and 1 <= result["most_in_flight"] <= 2
    assert all(0 < r["steps_s"] <= r["run_s"] and r["process_start_s"] > 0 for r in result["run_list"])
    assert "| 2 | " in done.stdout  # the table's row for two runs in flight
