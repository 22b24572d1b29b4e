"""Keeping current as the UI runs it: Dagster's daemon with both sensors switched on, a raw line
changed, the runs that follow, and the tables equal to a fresh run over the changed files."""

import datetime as dt
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from news_ai_assets.storage import run_lock
from news_ai_assets.storage.duckdb_file import DuckDBDatabase
from news_ai_assets_tests.doc_blocks import clean_env, copy_dagster_yaml, run_bash
from news_ai_assets_tests.pipeline import PARTITIONED_ASSETS, change_one_line, materialize, stale_partitions
from news_ai_assets_tests.test_delta import assert_same_tables

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FIRST, LAST, CHANGED = "2019-11-09", "2019-11-13", dt.date(2019, 11, 10)
QUIET_SECONDS = 100  # over three ticks of carry_changes_downstream (30 s) with nothing in flight


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=ROOT, env=env, capture_output=True, text=True, check=True)


def _in_flight(instance: dg.DagsterInstance) -> list[str]:
    runs = instance.get_run_records(dg.RunsFilter(statuses=[
        dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED]))
    backfills = [b for b in instance.get_backfills() if b.status.value in ("REQUESTED", "CANCELING", "FAILING")]
    return [f"run {r.dagster_run.run_id[:8]} {r.dagster_run.status.value}" for r in runs] + [f"backfill {b.backfill_id}" for b in backfills]


def _wait_until_settled(instance: dg.DagsterInstance, since: float, deadline_s: float) -> None:
    """Until a run started after `since` and then nothing was in flight for QUIET_SECONDS."""
    deadline, quiet_from = time.monotonic() + deadline_s, None
    while True:
        started = [r for r in instance.get_run_records() if r.create_timestamp.timestamp() > since]
        busy = _in_flight(instance)
        if started and not busy:
            quiet_from = quiet_from or time.monotonic()
            if time.monotonic() - quiet_from >= QUIET_SECONDS:
                return
        else:
            quiet_from = None
        assert time.monotonic() < deadline, f"not settled: {len(started)} runs since the change; in flight: {busy}"
        time.sleep(3)


def _materialised_since(instance: dg.DagsterInstance, since: float) -> set[tuple[str, str]]:
    found = set()
    for asset in PARTITIONED_ASSETS:
        records = instance.fetch_materializations(dg.AssetKey.from_user_string(asset), limit=1000).records
        found |= {(asset, r.partition_key) for r in records if r.timestamp > since}
    return found


@contextmanager
def _daemon(env: dict) -> Iterator[dg.DagsterInstance]:
    """`dagster-daemon run` on the environment's DAGSTER_HOME, and that instance."""
    daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-m", "news_ai_assets.definitions"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            yield instance
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(60)


def _materialised_graph(tmp_path: Path, tiny_mind: Path) -> tuple[Path, Path, dict]:
    """A copy of the tiny MIND folder, and every daily asset of FIRST .. LAST from it as the README's CLI runs them."""
    mind, database = tmp_path / "mind", tmp_path / "news.duckdb"
    shutil.copytree(tiny_mind, mind)
    home = copy_dagster_yaml(tmp_path / "dagster_home")
    env = clean_env(DAGSTER_HOME=str(home), NEWS_AI_MIND_DIR=str(mind), NEWS_AI_DUCKDB_PATH=str(database),
                    NEWS_AI_START_DATE=FIRST, NEWS_AI_END_DATE=LAST, NEWS_AI_EMBEDDING_DEVICE="cpu")
    _cli("dg", "launch", "-m", "news_ai_assets.definitions", "--assets", "* and not group:gold",
         "--partition-range", f"{FIRST}...{LAST}", env=env)
    return mind, database, env


@pytest.mark.slow
def test_a_changed_raw_line_reaches_exactly_the_days_that_read_it_through_the_daemon(tmp_path, tiny_mind):
    mind, database, env = _materialised_graph(tmp_path, tiny_mind)
    started = run_bash("keeping-current", ROOT, env, timeout=300)  # the README's block: both sensors on
    assert started.returncode == 0, started.stderr
    changed_at = time.time()
    change_one_line(mind, CHANGED)
    with _daemon(env) as instance:
        _wait_until_settled(instance, changed_at, deadline_s=900)
        runs = [r.dagster_run for r in instance.get_run_records() if r.create_timestamp.timestamp() > changed_at]
        materialised = _materialised_since(instance, changed_at)
        stale = stale_partitions(instance, [dt.date(2019, 11, d) for d in range(9, 14)])  # FIRST .. LAST

    assert runs and all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs), [(r.run_id, r.status) for r in runs]
    from_sensor = [run for run in runs if run.tags.get("dagster/sensor_name") == "mind_files_sensor"]
    assert [(run.tags["dagster/partition"], run.tags["news_ai/changed_files"]) for run in from_sensor] == [
        (CHANGED.isoformat(), str(mind / "MINDsample_train" / "behaviors.tsv"))]
    assert int(from_sensor[0].tags["dagster/max_runtime"]) >= 600
    window = [(CHANGED + dt.timedelta(days=i)).isoformat() for i in range(4)]  # D .. the last partition
    expected = {(asset, CHANGED.isoformat()) for asset in PARTITIONED_ASSETS} | {
        (asset, day) for asset in ("features/user_features", "silver/training_examples") for day in window}
    assert materialised == expected, sorted(materialised ^ expected)
    assert stale == {}

    fresh = tmp_path / "fresh.duckdb"
    materialize(fresh, mind, FIRST, LAST)
    assert_same_tables(DuckDBDatabase(database=str(fresh)), DuckDBDatabase(database=str(database)), ids_as_tokens=True)


def _launch(env: dict, day: str, **tags: str) -> str:
    """A run of mind_features_job for `day`, queued for the daemon as the UI queues one; its run id."""
    run_id = str(uuid.uuid4())
    _cli("dagster", "job", "launch", "-m", "news_ai_assets.definitions", "-j", "mind_features_job", "--run-id", run_id,
         "--tags", json.dumps({"dagster/partition": day, **tags}), env=env)
    return run_id


def _wait_for(instance: dg.DagsterInstance, run_id: str, statuses: set, seconds: float) -> dg.DagsterRun:
    deadline = time.monotonic() + seconds
    while (run := instance.get_run_by_id(run_id)).status not in statuses:
        assert time.monotonic() < deadline, f"run {run_id} is still {run.status.value} after {seconds:.0f} s"
        time.sleep(1)
    return run


def _messages(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(entry.message or "" for entry in instance.all_logs(run_id))


@pytest.mark.slow
def test_a_killed_run_is_marked_failed_within_minutes_and_the_runs_after_it_go_on(tmp_path, tiny_mind):
    """Runs queued for the daemon wait on the DuckDB file, which the test holds: one is killed, one
    has a time limit of 1 s, and the last runs once the file is free."""
    _, database, env = _materialised_graph(tmp_path, tiny_mind)
    with _daemon(env) as instance:
        run_lock.acquire(database, logging.getLogger(__name__), {"run_id": "the test, holding the file"})
        try:
            killed, limited, after = (_launch(env, "2019-11-12"), _launch(env, "2019-11-11", **{"dagster/max_runtime": "1"}),
                                      _launch(env, "2019-11-13"))
            _wait_for(instance, killed, {dg.DagsterRunStatus.STARTED}, 300)
            deadline = time.monotonic() + 120
            while not (pid := re.search(r"Started process for run \(pid: (\d+)\)", _messages(instance, killed))):
                assert time.monotonic() < deadline, "the run's process never said its pid"
                time.sleep(1)
            os.kill(int(pid.group(1)), signal.SIGKILL)
            killed_at = time.monotonic()
            _wait_for(instance, killed, {dg.DagsterRunStatus.FAILURE}, 180)
            marked_in = time.monotonic() - killed_at
            _wait_for(instance, limited, {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}, 300)
        finally:
            run_lock.release(database)
        finished = _wait_for(instance, after, {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE}, 600)
        killed_log, limited_log = _messages(instance, killed), _messages(instance, limited)
    assert marked_in < 120 and "Run execution process for" in killed_log and "SIGKILL" in killed_log, killed_log[-2000:]
    assert "exceeding maximum runtime of 1 seconds" in limited_log, limited_log[-2000:]
    assert finished.status == dg.DagsterRunStatus.SUCCESS
