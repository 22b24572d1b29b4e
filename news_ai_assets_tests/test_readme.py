import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl

from news_ai_assets_tests.pipeline import materialize, read_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_baseline_runs_on_a_silver_table(tmp_path, tiny_mind):
    block = re.search(r"<!-- README baseline.*?```python\n(.*?)```", README.read_text(), re.S)
    assert block, "the README's baseline example is missing"
    db = tmp_path / "b.duckdb"
    materialize(db, tiny_mind, "2019-11-09", "2019-11-15")
    script = tmp_path / "baseline.py"
    script.write_text(block.group(1))
    done = subprocess.run([sys.executable, script], env={**os.environ, "NEWS_AI_DUCKDB_PATH": str(db)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    match = re.search(r"dev impressions: (\d+), group AUC: ([0-9.]+)", done.stdout)
    assert match and int(match.group(1)) > 0 and 0 <= float(match.group(2)) <= 1


def test_the_readme_export_writes_one_day_of_silver_to_parquet(tmp_path, tiny_mind):
    block = re.search(r"<!-- README export.*?```python\n(.*?)```", README.read_text(), re.S)
    assert block, "the README's export example is missing"
    db = tmp_path / "data" / "news_ai.duckdb"
    materialize(db, tiny_mind, "2019-11-09", "2019-11-15")
    script = tmp_path / "export.py"
    script.write_text(textwrap.dedent(block.group(1)))
    done = subprocess.run([sys.executable, script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    exported = pl.read_parquet(tmp_path / "data" / "silver_2019-11-15.parquet")
    day = read_table(db, "silver.training_examples").filter(pl.col("date") == pl.date(2019, 11, 15))
    assert exported.columns == day.columns and exported.height == day.height > 0


def test_the_readme_nrms_example_batches_one_day_of_impressions(tmp_path, tiny_mind):
    block = re.search(r"<!-- README nrms.*?```python\n(.*?)```", README.read_text(), re.S)
    assert block, "the README's NRMS example is missing"
    db = tmp_path / "n.duckdb"
    materialize(db, tiny_mind, "2019-11-15", selection=["bronze/behaviors", "bronze/news", "features/vocabulary",
                                                         "silver/impressions"])
    script = tmp_path / "nrms.py"
    script.write_text(block.group(1))
    done = subprocess.run([sys.executable, script], env={**os.environ, "NEWS_AI_DUCKDB_PATH": str(db)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    impressions = read_table(db, "silver.impressions")
    longest = impressions.get_column("candidates").list.len().max()
    assert f"history ({impressions.height}, 50)" in done.stdout and f"candidates ({impressions.height}, {longest})" in done.stdout
