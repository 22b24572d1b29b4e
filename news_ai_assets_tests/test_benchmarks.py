"""The benchmark scripts stay runnable: the SQL floor computes silver's rows, the runner writes its report."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import sql_floor
from news_ai_assets.mind import sample
from news_ai_assets_tests.doc_blocks import clean_env, run_bash, user_folder
from news_ai_assets_tests.pipeline import materialize, read_table

ROOT = Path(__file__).resolve().parents[1]


def test_the_sql_floor_computes_one_row_per_candidate(tmp_path, tiny_mind):
    floor = sql_floor.run(tiny_mind, tmp_path / "floor.duckdb")
    db = tmp_path / "pipeline.duckdb"
    materialize(db, tiny_mind, "2019-11-09", "2019-11-22", selection=["bronze/behaviors", "features/interactions"])
    assert floor["rows"] == read_table(db, "features.interactions").height
    assert floor["columns"] >= 80 and set(floor["steps_s"]) >= {"user_features", "silver_floor"}


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
    sample.generate(folder / "data" / "sample_mind" / "demo", "demo")
    completed = run_bash("embedding-benchmark", folder, clean_env(), timeout=900)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    rows = {(row["path"], row["option"]): row for row in json.loads((folder / "embedding_rows.json").read_text())}
    assert rows[("sentence-transformers encode()", "torch/fp32")]["texts/s"] > 0
    for option in ("torch/fp32", "openvino/fp32"):
        assert rows[("Encoder", option)]["min cosine (sentence-transformers fp32 here)"] >= 0.99999
    assert "runs on CUDA and MPS GPUs, not on the CPU" in rows[("Encoder", "torch/fp16")]["refused"]
