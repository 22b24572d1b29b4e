"""No input or setting may silently delete, mix or drop data, and no crash may leave a run hanging."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from news_ai_assets.assets.common import DAILY_ASSETS
from news_ai_assets.storage import run_lock
from news_ai_assets.storage.duckdb_file import DuckDBDatabase, connect
from news_ai_assets_tests.pipeline import failure_messages, materialize, read_table

ROOT = Path(__file__).resolve().parents[1]


def test_a_split_read_before_that_is_gone_stops_the_run_before_anything_is_written(tmp_path, tiny_mind):
    mind, db = tmp_path / "mind", tmp_path / "s.duckdb"
    shutil.copytree(tiny_mind, mind)
    materialize(db, mind, "2019-11-15", selection=["bronze/behaviors"])
    before = read_table(db, "bronze.behaviors")
    shutil.rmtree(mind / "MINDsample_dev")  # MIND's dev split holds 2019-11-15
    result = materialize(db, mind, "2019-11-15", selection=["bronze/behaviors"], raise_on_error=False)
    message = "\n".join(failure_messages(result))
    assert "no longer has the split(s) dev (read before from" in message and "MINDsample_dev/behaviors.tsv" in message
    assert read_table(db, "bronze.behaviors").equals(before) and before.height == 30


def test_a_day_that_empties_out_fails_a_blocking_check(tmp_path, tiny_mind):
    """Whatever the cause (here: the day's lines deleted), a day that held rows and now holds none is
    stopped before the tables downstream of bronze follow it."""
    mind, db = tmp_path / "mind", tmp_path / "e.duckdb"
    shutil.copytree(tiny_mind, mind)
    graph = ["bronze/behaviors", "features/interactions"]
    materialize(db, mind, "2019-11-15", selection=graph)
    behaviors = mind / "MINDsample_dev" / "behaviors.tsv"
    behaviors.write_text("".join(line for line in behaviors.read_text().splitlines(True) if "\t11/15/2019 " not in line))
    result = materialize(db, mind, "2019-11-15", selection=graph, raise_on_error=False)
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "not_emptied"]
    assert not check.passed and check.metadata["rows_before"].value == 30 and check.metadata["rows_now"].value == 0
    assert read_table(db, "features.interactions").height > 0  # not replaced with nothing


def test_a_waiting_storage_resource_holds_back_until_the_run_before_it_ends(tmp_path):
    """Checks and assets reach the file through resources that take the run lock when the run starts."""
    db = tmp_path / "w.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import logging, time
            from news_ai_assets.storage import run_lock
            run_lock.acquire({str(db)!r}, logging.getLogger(), {{"run_id": "holder"}})
            print("held", flush=True)
            time.sleep(4)
            run_lock.release({str(db)!r})
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    started = time.monotonic()
    with dg.build_resources({"database": DuckDBDatabase(database=str(db))}):
        waited = time.monotonic() - started
        record = json.loads(run_lock.lock_path(db).read_text())
    holder.wait()
    assert waited > 2 and record["pid"] == os.getpid()


def _cli(home: Path, env: dict, *args: str) -> subprocess.Popen:
    home.mkdir(exist_ok=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    return subprocess.Popen(
        [Path(sys.executable).parent / "dg", "launch", "-m", "news_ai_assets.definitions", *args],
        cwd=home, env={**env, "DAGSTER_HOME": str(home)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _holder(db: Path, timeout: float = 120) -> dict:
    """The lock record of the run holding `db`, once one does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            record = json.loads(run_lock.lock_path(db).read_text() or "{}")
        except (OSError, ValueError):
            record = {}
        if record.get("run_id") and "released_at" not in record:
            return record
        time.sleep(0.2)
    raise AssertionError(f"no run took the lock of {db}")


@pytest.mark.slow
def test_two_runs_on_one_file_take_turns_for_their_whole_length(tmp_path, tiny_mind):
    """Two DAGSTER_HOMEs (so no shared Dagster queue) and one DuckDB file: the second run waits,
    saying for what, and none of its writes falls between the first run's."""
    db = tmp_path / "shared.duckdb"
    env = {**os.environ, "NEWS_AI_MIND_DIR": str(tiny_mind), "NEWS_AI_DUCKDB_PATH": str(db), "NEWS_AI_EMBEDDING_DEVICE": "cpu"}
    first = _cli(tmp_path / "home_a", env, "--assets", DAILY_ASSETS, "--partition-range", "2019-11-09...2019-11-11")
    holder = _holder(db)
    second = _cli(tmp_path / "home_b", env, "--assets", DAILY_ASSETS, "--partition-range", "2019-11-09...2019-11-11")
    outputs = [process.communicate(timeout=600)[0] for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs[1][-3000:]
    assert f"another run holds it, run {holder['run_id']} (PID {first.pid}" in outputs[1]
    assert "Got " in outputs[1] and "locked by another process" not in outputs[0] + outputs[1]
    with connect(db, read_only=True) as conn:
        writes = conn.sql("SELECT run_id FROM meta.partition_writes ORDER BY write_id").pl().get_column("run_id")
    runs = writes.unique(maintain_order=True).to_list()
    assert len(runs) == 2 and runs[0] == holder["run_id"]
    assert writes.to_list() == [runs[0]] * (writes == runs[0]).sum() + [runs[1]] * (writes == runs[1]).sum()


@pytest.mark.slow
def test_a_killed_run_blocks_nothing_and_is_marked_failed(tmp_path, tiny_mind):
    """SIGKILL mid-run: the kernel drops its lock, the next run in the same DAGSTER_HOME goes ahead
    at once, and the dead run no longer shows as running."""
    db, home = tmp_path / "k.duckdb", tmp_path / "home"
    env = {**os.environ, "NEWS_AI_MIND_DIR": str(tiny_mind), "NEWS_AI_DUCKDB_PATH": str(db), "NEWS_AI_EMBEDDING_DEVICE": "cpu"}
    doomed = _cli(home, env, "--assets", DAILY_ASSETS, "--partition-range", "2019-11-09...2019-11-12")
    holder = _holder(db)
    time.sleep(3)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    after = _cli(home, env, "--assets", DAILY_ASSETS, "--partition-range", "2019-11-09...2019-11-12")
    output = after.communicate(timeout=300)[0]
    assert after.returncode == 0, output[-3000:]
    assert "ended without releasing it: its process died. It is marked failed now." in output
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(holder["run_id"]).status == dg.DagsterRunStatus.FAILURE
    assert read_table(db, "silver.training_examples").get_column("date").n_unique() == 4


@pytest.mark.slow
def test_fill_order_moves_vectors_by_at_most_1e6_and_a_warm_cache_by_nothing(tmp_path, tiny_mind):
    """A vector's last bits depend on the batch it was encoded in, so databases filled in different
    orders agree to 1e-6, not bit for bit; re-materialising over a warm cache changes no bit."""
    days = ["2019-11-09", "2019-11-10", "2019-11-11"]
    embedding_graph = ["bronze/behaviors", "bronze/news", "features/text_embeddings"]
    orders = {"forward": [(d, None) for d in days], "reverse": [(d, None) for d in reversed(days)], "range": [(days[0], days[-1])]}
    keys = {"features.text_embeddings": ["date", "news_id"], "silver.training_examples": ["date", "split", "impression_id", "news_id"]}
    tables = {}
    for name, runs in orders.items():
        db = tmp_path / f"{name}.duckdb"
        for first, last in runs:
            materialize(db, tiny_mind, first, last, selection=embedding_graph)
        materialize(db, tiny_mind, days[0], days[-1])  # everything else, over the vectors this order stored
        tables[name] = {table: read_table(db, table).sort(key) for table, key in keys.items()}
    reference = tables["range"]
    for name in ("forward", "reverse"):
        vectors = [np.stack(tables[n]["features.text_embeddings"].get_column("embedding").to_numpy()) for n in (name, "range")]
        assert np.abs(vectors[0] - vectors[1]).max() <= 1e-6
        silver, expected = tables[name]["silver.training_examples"], reference["silver.training_examples"]
        assert silver.drop("history_similarity").equals(expected.drop("history_similarity"))
        difference = (silver.get_column("history_similarity") - expected.get_column("history_similarity")).abs()
        assert difference.null_count() == silver.get_column("history_similarity").null_count() and difference.max() <= 1e-6
    db = tmp_path / "forward.duckdb"
    materialize(db, tiny_mind, days[0], days[-1])
    for table, key in keys.items():
        assert read_table(db, table).sort(key).equals(tables["forward"][table]), table
