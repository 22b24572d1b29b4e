"""`python -m news_ai_assets.summary`: what the database holds, in a 100-column terminal."""

import subprocess
import sys

from news_ai_assets_tests.doc_blocks import clean_env
from news_ai_assets_tests.pipeline import PARTITIONED_ASSETS, read_table


def _summary(database, *args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "news_ai_assets.summary", *args], capture_output=True, text=True,
                          env=clean_env(NEWS_AI_DUCKDB_PATH=str(database)), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()


def test_the_summary_names_assets_as_the_ui_does_and_fits_100_columns(tiny_graph):
    lines = _summary(tiny_graph)
    assert max(map(len, lines)) <= 100
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
            for line in lines if line.startswith("| ") and "/" in line.split("|")[1]}
    assert set(rows) == set(PARTITIONED_ASSETS)
    silver = read_table(tiny_graph, "silver.training_examples")
    assert rows["silver/training_examples"][:2] == ["7/14", f"{silver.height:,}"]  # 09..15 of the 14 default days
    assert rows["bronze/behaviors"][3] == "2019-11-16 .. 2019-11-22"


def test_one_assets_days(tiny_graph):
    lines = _summary(tiny_graph, "--days", "silver/impressions")
    counts = read_table(tiny_graph, "silver.impressions").group_by("date").len()
    for day, rows in counts.iter_rows():
        assert any(line.startswith(f"| {day} ") and line.rstrip(" |").endswith(f" {rows}") for line in lines)


def test_a_database_nothing_was_written_to_stops_the_summary_naming_it(tmp_path):
    done = subprocess.run([sys.executable, "-m", "news_ai_assets.summary"], capture_output=True, text=True,
                          env=clean_env(NEWS_AI_DUCKDB_PATH=str(tmp_path / "elsewhere.duckdb")), timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"{tmp_path / 'elsewhere.duckdb'} holds no partition written by this pipeline" in done.stderr
    assert not (tmp_path / "elsewhere.duckdb").exists()  # named, not created
