"""Every command and snippet of README.md and docs/ runs as written: each fenced block is named and a
test runs it. The only liberties: a placeholder path (`/data/mind`) becomes a real MIND folder, and
the environment points the DuckDB file and DAGSTER_HOME at temporary folders."""

import datetime as dt
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from news_ai_assets.definitions import all_checks
from news_ai_assets_tests.doc_blocks import (
    ROOT, blocks, clean_env, copy_dagster_yaml, doc_block, run_bash, user_folder,
)
from news_ai_assets_tests.pipeline import materialize, read_table

# Which test runs each named block.
RUN_BY = {
    "quick-start": "test_docs.py::test_the_demo_prints_a_line_per_step_and_no_warning (line 1); .ci/run (line 2)",
    "real-mind": "test_docs.py::test_the_demo_reads_a_mind_folder_from_the_environment",
    "export": "test_docs.py::test_the_export_writes_one_day_of_silver_to_parquet",
    "nrms": "test_docs.py::test_the_nrms_example_batches_one_day_of_impressions",
    "retrieval": "test_docs.py::test_the_retrieval_example_gives_each_event_its_features",
    "baseline": "test_docs.py::test_the_baseline_runs_on_a_silver_table",
    "ui": "test_ui.py (its fixture starts scripts/dev.sh)",
    "cli": "test_docs.py::test_the_cli_block_runs_in_a_fresh_folder",
    "sample": "test_docs.py::test_the_sample_command_writes_a_mind_folder",
    "benchmark": "test_benchmarks.py::test_the_benchmark_runs_end_to_end_at_tiny_scale",
    "speed-loop": "test_benchmarks.py::test_the_speed_loop_times_a_step_and_the_next_day_on_copies_of_a_kept_database",
    "retrieval-benchmark": "test_benchmarks.py::test_the_speed_loop_times_a_step_and_the_next_day_on_copies_of_a_kept_database "
                           "(line 2, on that test's kept tiny database)",
    "embedding-benchmark": "test_benchmarks.py::test_the_embedding_benchmark_runs_on_the_cpu_and_refuses_fp16_there",
    "tests": "test_docs.py::test_ci_runs_the_documented_test_command (and CI itself)",
    "instance-migrate": "test_delta.py::test_a_parallel_backfill_on_the_s3_emulator_equals_the_duckdb_storage (the "
                        "command, on deploy/dagster.yaml's storage)",
    "keeping-current": "test_keeping_current.py::test_a_changed_raw_line_reaches_exactly_the_days_that_read_it_through_the_daemon",
}


def test_every_block_is_named_and_run_by_a_test():
    runnable = [b for b in blocks() if b.language != "text"]
    unnamed = [f"{b.document.name}: {b.text[:60]!r}" for b in runnable if b.name is None]
    assert not unnamed, f"fenced blocks without <!-- run: NAME --> (or ```text for output and diagrams): {unnamed}"
    names = [b.name for b in runnable]
    assert len(names) == len(set(names)) and set(names) == set(RUN_BY)
    for runner in RUN_BY.values():
        for test in re.findall(r"(test_\w+\.py)::(\w+)", runner):
            assert f"def {test[1]}(" in (ROOT / "news_ai_assets_tests" / test[0]).read_text(), test


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    for document in ("features", "input-grammar", "storage", "operations", "benchmark", "development", "architecture"):
        assert f"(docs/{document}.md)" in readme


def test_ci_runs_the_documented_test_command():
    commands = [line.split("#")[0].strip() for line in doc_block("tests").splitlines()]
    assert "./scripts/test.sh --slow" in commands and "./scripts/test.sh --slow" in (ROOT / ".ci" / "run").read_text()
    assert "./scripts/test.sh" in doc_block("quick-start")


def test_the_sample_command_writes_a_mind_folder(tmp_path):
    done = run_bash("sample", user_folder(tmp_path), clean_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    splits = sorted(p.name for p in (tmp_path / "data" / "mind_demo").iterdir())
    assert splits == ["MINDsample_dev", "MINDsample_test", "MINDsample_train"]


def test_the_export_writes_one_day_of_silver_to_parquet(tmp_path, tiny_graph):
    db = tmp_path / "data" / "news_ai.duckdb"
    db.parent.mkdir()
    shutil.copy(tiny_graph, db)
    script = tmp_path / "export.py"
    script.write_text(doc_block("export"))
    done = subprocess.run([sys.executable, script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    exported = pl.read_parquet(tmp_path / "data" / "silver_2019-11-15.parquet")
    day = read_table(db, "silver.training_examples").filter(pl.col("date") == pl.date(2019, 11, 15))
    assert exported.columns == day.columns and exported.height == day.height > 0


def _python_block(name: str, tmp_path: Path, db: Path) -> subprocess.CompletedProcess:
    script = tmp_path / f"{name}.py"
    script.write_text(doc_block(name))
    return subprocess.run([sys.executable, script], env=clean_env(NEWS_AI_DUCKDB_PATH=str(db)), capture_output=True,
                          text=True, timeout=300)


def test_the_retrieval_example_gives_each_event_its_features(tmp_path, tiny_graph):
    done = _python_block("retrieval", tmp_path, tiny_graph)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith(("│ U5 ", "│ U12 "))]
    assert "shape: (2, 4)" in done.stdout and len(rows) == 2, done.stdout
    assert all("null" not in row for row in rows), done.stdout  # both users and articles are seen on the day


def test_the_nrms_example_batches_one_day_of_impressions(tmp_path, tiny_mind):
    db = tmp_path / "n.duckdb"
    materialize(db, tiny_mind, "2019-11-15", selection=["bronze/behaviors", "bronze/news", "features/vocabulary",
                                                         "silver/impressions"])
    done = _python_block("nrms", tmp_path, db)
    assert done.returncode == 0, done.stderr[-2000:]
    impressions = read_table(db, "silver.impressions")
    longest = impressions.get_column("candidates").list.len().max()
    assert f"history ({impressions.height}, 50)" in done.stdout and f"candidates ({impressions.height}, {longest})" in done.stdout


def test_the_baseline_runs_on_a_silver_table(tmp_path, tiny_graph):
    done = _python_block("baseline", tmp_path, tiny_graph)
    assert done.returncode == 0, done.stderr[-2000:]
    match = re.search(r"dev impressions: (\d+), group AUC: ([0-9.]+)", done.stdout)
    assert match and int(match.group(1)) > 0 and 0 <= float(match.group(2)) <= 1


def test_the_deployment_yaml_is_a_valid_instance_config(monkeypatch):
    # Dagster's own schema of dagster.yaml; the launcher's class is named, not imported (test_delta.py runs
    # a backfill on its storage).
    for name, value in {"DAGSTER_PG_HOST": "db.example", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_DB": "dagster",
                        "DAGSTER_PG_USER": "dagster", "DAGSTER_PG_PASSWORD": "secret"}.items():
        monkeypatch.setenv(name, value)
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config_schema

    config = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    result = process_config(dagster_instance_config_schema(), config)
    assert result.success, result.errors
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"


def _demo(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, Path]:
    home = tmp_path / "dagster_home"
    done = run_bash("quick-start", ROOT, clean_env(DAGSTER_HOME=str(home),
                    NEWS_AI_DUCKDB_PATH=str(tmp_path / "data" / "news_ai.duckdb"), **env), timeout=1200,
                    replace={"./scripts/test.sh": "# ./scripts/test.sh (run by .ci/run)"})
    return done, home


@pytest.mark.slow
def test_the_demo_prints_a_line_per_step_and_no_warning(tmp_path):
    done, home = _demo(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = (done.stdout + done.stderr).splitlines()
    assert len(lines) <= 80, "\n".join(lines)
    assert max(map(len, lines)) <= 160
    assert not [line for line in lines if "warning" in line.lower()], lines
    assets = ["bronze/behaviors", "bronze/news", "features/interactions", "features/candidate_stats",
              "features/user_features", "features/news_features", "features/text_embeddings",
              "features/entity_features", "features/vocabulary", "silver/training_examples", "silver/impressions",
              "gold/ranker_evaluation"]
    for asset in assets:
        step = [line for line in lines if re.match(rf"✓ {re.escape(asset)} +(14 days)? +[\d,]+ rows +[\d.]+ s +peak", line)]
        assert len(step) == 1, (asset, lines)
    checked = {key.asset_key.to_user_string() for checks in all_checks for key in checks.check_keys}
    assert {re.match(r"✓ checks: (\S+)", line).group(1) for line in lines if line.startswith("✓ checks:")} == checked
    (log,) = (home / "logs").glob("*.log")
    assert any(str(log) in line for line in lines)  # a path is never cut
    assert "RUN_SUCCESS" in log.read_text() and len(log.read_text().splitlines()) > 300
    assert any("texts embedded:" in line for line in lines)  # progress of the longest step
    assert any(line.startswith("| ranker (gradient-boosted, all features)") for line in lines)
    _readme_prints_what_the_demo_printed(lines, tmp_path / "data" / "news_ai.duckdb", tmp_path)


def _readme_prints_what_the_demo_printed(lines: list[str], database: Path, tmp_path: Path) -> None:
    """The demo is deterministic, so the README's quoted output must be its output: each quoted step's
    days and rows, the evaluation table line for line, the prose's impressions and articles, and what the
    NRMS example prints on the demo's database."""
    (quoted,) = [b.text for b in blocks() if b.document.name == "README.md" and "✓ bronze/behaviors" in b.text]
    compared = 0
    for line in quoted.splitlines():
        if step := re.match(r"✓ (\S+) +(\d+ days) +([\d,]+ rows)", line):
            printed = [x for x in lines if re.match(rf"✓ {re.escape(step[1])} +{step[2]} +{step[3]} ", x)]
            assert printed, f"the README quotes {line!r}; the demo printed {[x for x in lines if step[1] in x]}"
        elif line.startswith("| ") and not line.startswith("| model"):
            assert line in lines, f"the README quotes {line!r}; the demo printed {[x for x in lines if x.startswith('| ')]}"
        else:
            continue
        compared += 1
    assert compared >= 5, quoted  # three steps' rows and the two models' metrics at least
    prose = re.search(r"\(([\d,]+) impressions, ([\d,]+) articles\)", (ROOT / "README.md").read_text())
    impressions = read_table(database, "bronze.behaviors").height
    articles = read_table(database, "bronze.news").get_column("news_id").n_unique()
    assert (prose[1], prose[2]) == (f"{impressions:,}", f"{articles:,}"), (impressions, articles)
    (shapes,) = re.findall(r"On the demo it prints `([^`]+)`", (ROOT / "README.md").read_text())
    nrms = _python_block("nrms", tmp_path, database)
    assert nrms.returncode == 0 and nrms.stdout.strip() == shapes, (nrms.stdout, nrms.stderr[-2000:], shapes)


@pytest.mark.slow
def test_the_demo_reads_a_mind_folder_from_the_environment(tmp_path, tiny_mind):
    home = copy_dagster_yaml(tmp_path / "dagster_home")
    done = run_bash("real-mind", ROOT, clean_env(DAGSTER_HOME=str(home),
                    NEWS_AI_DUCKDB_PATH=str(tmp_path / "data" / "news_ai.duckdb")), timeout=1200,
                    replace={"/data/mind": str(tiny_mind)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    behaviors = read_table(tmp_path / "data" / "news_ai.duckdb", "bronze.behaviors")
    assert behaviors.height == sum(len(p.read_text().splitlines()) for p in tiny_mind.glob("*/behaviors.tsv"))
    assert not (tmp_path / "data" / "sample_mind").exists()  # the folder given, not the sample


@pytest.mark.slow
def test_the_cli_block_runs_in_a_fresh_folder(tmp_path, tiny_mind):
    folder = user_folder(tmp_path / "checkout")
    copy_dagster_yaml(folder / ".dagster_home")  # "created by demo.sh"
    done = run_bash("cli", folder, clean_env(NEWS_AI_MIND_DIR=str(tiny_mind)), timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    writes = read_table(folder / "data" / "news_ai.duckdb", "meta.partition_writes")
    assert writes.filter(pl.col("table_name") == "bronze.behaviors").get_column("date").to_list().count(
        dt.date(2019, 11, 12)) == 2  # the range, then the one asset
    assert len(list((folder / ".dagster_home" / "logs").glob("*.log"))) == 4
    evaluation = read_table(folder / "data" / "news_ai.duckdb", "gold.ranker_evaluation")
    assert evaluation.height == 2  # the ranker and the popularity baseline
    # Dagster 1.13 calls `dagster asset materialize` superseded by `dg launch` (the README says so); nothing else warns.
    warnings = [line for line in (done.stdout + done.stderr).splitlines() if "Warning" in line]
    assert warnings and all("SupersessionWarning: Function `asset_materialize_command`" in w for w in warnings), warnings
