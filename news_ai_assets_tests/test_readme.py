import os
import re
import subprocess
import sys
from pathlib import Path

from news_ai_assets_tests.pipeline import materialize

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
