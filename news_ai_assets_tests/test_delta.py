"""Delta Lake storage (NEWS_AI_STORAGE=delta): the same rows as the DuckDB file, on a local folder and
on an S3 emulator (moto_server on 127.0.0.1), written by many runs at once."""

import datetime as dt
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from deltalake.fs import DeltaStorageHandler

from benchmarks.servers import postgres_home, postgres_server, upload_splits
from news_ai_assets.mind import sample
from news_ai_assets.retrieval import features_for_events
from news_ai_assets.storage.database import Database, StorageWriteError, require_written
from news_ai_assets.storage.delta_tables import DeltaDatabase, table_uri
from news_ai_assets.storage.duckdb_file import DuckDBDatabase
from news_ai_assets_tests.compare import assert_same_rows
from news_ai_assets_tests.doc_blocks import copy_dagster_yaml
from news_ai_assets_tests.pipeline import materialize, read_table

ROOT = Path(__file__).resolve().parents[1]
DAY = dt.date(2019, 11, 12)
# Every table the graph writes, with the columns that identify a row.
TABLES = {
    "bronze.behaviors": ["date", "split", "impression_id"],
    "bronze.news": ["date", "news_id"],
    "bronze.rejects": ["source_file", "line", "raw_line"],
    "features.interactions": ["date", "split", "impression_id", "news_id"],
    "features.candidate_stats": ["date", "news_id"],
    "features.user_features": ["date", "user_id"],
    "features.news_features": ["date", "news_id"],
    "features.text_embeddings": ["date", "news_id"],
    "features.entity_features": ["date", "news_id"],
    "features.vocabulary": ["date", "vocabulary", "token"],
    "silver.training_examples": ["date", "split", "impression_id", "news_id"],
    "silver.impressions": ["date", "split", "impression_id"],
}
# Columns holding vocabulary ids, and the vocabulary each id is of.
ID_COLUMNS = {"id": None, **{f"{side}{kind}_index": vocabulary for side in ("history", "candidate")
                             for kind, vocabulary in (("", "news"), ("_category", "category"), ("_subcategory", "subcategory"))}}


@pytest.fixture
def postgres(monkeypatch) -> Iterator[dict[str, str]]:
    """A PostgreSQL server (servers.postgres_server); the DAGSTER_PG_* settings deploy/dagster.yaml reads,
    also in the environment."""
    with postgres_server() as settings:
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        yield settings


def stored_rows(database: Database, table: str, ids_as_tokens: bool = False) -> pl.DataFrame:
    """A table's rows in a fixed order, columns by name. With `ids_as_tokens`, vocabulary ids are
    replaced by the tokens they stand for in that database (runs at once give ids in another order)."""
    with database.connect() as conn:
        frame = conn.sql(f"SELECT * FROM {table}").pl()
        vocabularies = conn.sql("SELECT * FROM features.vocabulary_ids").pl() if ids_as_tokens else None
    frame = frame.select(sorted(frame.columns)).sort(TABLES[table], nulls_last=True)
    if vocabularies is not None:
        for column in set(ID_COLUMNS) & set(frame.columns):
            if ID_COLUMNS[column] is None:
                frame = frame.drop(column)
                continue
            tokens = vocabularies.filter(pl.col("vocabulary") == ID_COLUMNS[column])
            frame = frame.with_columns(pl.col(column).list.eval(
                pl.element().replace_strict(tokens.get_column("id"), tokens.get_column("token"), default=None)))
    return frame.with_columns(pl.col(pl.String).cast(pl.String))


def assert_same_tables(expected: Database, actual: Database, ids_as_tokens: bool = False) -> None:
    """Every table of the graph holds the same rows in both, as compare.assert_same_rows holds them
    (types equal, floats to 1e-6); vocabulary ids compared as the tokens they stand for with
    `ids_as_tokens`."""
    for table in TABLES:
        want, got = stored_rows(expected, table, ids_as_tokens), stored_rows(actual, table, ids_as_tokens)
        assert got.height > 0 or table == "bronze.rejects", table
        assert_same_rows(want, got, table)


@pytest.mark.slow
def test_the_graph_on_local_delta_tables_equals_the_duckdb_file(tmp_path, tiny_mind):
    """A range run and a daily run after it, on both storages: the same rows in every table."""
    duck, delta = tmp_path / "p.duckdb", DeltaDatabase(uri=str(tmp_path / "delta"))
    for first, last in (("2019-11-09", "2019-11-11"), ("2019-11-12", None)):
        materialize(duck, tiny_mind, first, last)
        materialize(duck, tiny_mind, first, last, delta_uri=delta.uri)
    assert_same_tables(DuckDBDatabase(database=str(duck)), delta)
    with delta.connect() as conn:
        files = conn.sql("SELECT count(*) FROM bronze.staged_files").fetchall()[0][0]
    assert files == 6  # each split's behaviors and news file, staged once for both runs
    # point-in-time retrieval reads either storage through the seam: the same features
    events = read_table(duck, "silver.training_examples").filter(pl.col("date") == dt.date(2019, 11, 12)).select(
        "user_id", "news_id", pl.col("time") - dt.timedelta(hours=2))
    from_duckdb = features_for_events(events, DuckDBDatabase(database=str(duck)))
    assert_same_rows(from_duckdb.rows, features_for_events(events, delta).rows, "retrieved from Delta")
    assert from_duckdb.rows.height == events.height > 0


def test_a_lookback_day_never_written_to_the_delta_tables_fails_before_writing(tmp_path, tiny_mind):
    """Decided from the Delta tables themselves: a fresh URI holds no record of 2019-11-09 .. 11, so
    user features for 2019-11-12 stop, naming those days, and write no table."""
    delta = DeltaDatabase(uri=str(tmp_path / "delta"))
    result = materialize(tmp_path / "unused.duckdb", tiny_mind, "2019-11-12", delta_uri=delta.uri, raise_on_error=False,
                         selection=["bronze/behaviors", "bronze/news", "features/user_features"])
    failure = result.failure_data_for_node("features__user_features").error.message
    assert f"bronze/behaviors has never been materialised in {delta.uri} for 2019-11-09, 2019-11-10, 2019-11-11" in failure
    with delta.connect() as conn:
        written = {name for (name,) in conn.execute("SELECT DISTINCT table_name FROM meta.partition_writes").fetchall()}
        tables = {f"{s}.{t}" for s, t in conn.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()}
    assert "features.user_features" not in written | tables and "bronze.behaviors" in written


def _frame(day: dt.date, values: list[int]) -> pl.DataFrame:
    return pl.DataFrame({"date": [day] * len(values), "value": values}, schema={"date": pl.Date, "value": pl.Int64})


def _slow_replace(uri: str, value: int, barrier, ready, halt) -> None:
    """Replaces DAY with 5,000 rows of `value`, as a stream that stops halfway until the barrier
    (every writer is mid-write) or forever after setting `ready` (to be killed)."""
    def batches():
        for part in range(10):
            if part == 5:
                if barrier is not None:
                    barrier.wait(30)
                if ready is not None:
                    ready.set()
                    halt.wait(60)
            yield pa.record_batch({"date": pa.array([DAY] * 500, pa.date32()), "value": pa.array([value] * 500, pa.int64())})

    schema = pa.schema([("date", pa.date32()), ("value", pa.int64())])
    try:
        DeltaDatabase(uri=uri).replace_days("layer", "t", pa.RecordBatchReader.from_batches(schema, batches()), [DAY])
    except StorageWriteError as err:
        print(err, file=sys.stderr)
        sys.exit(3)


def _day_values(database: DeltaDatabase) -> list:
    with database.connect() as conn:
        require_written(conn, "layer", "t", [DAY], location=database.location())
        return conn.sql("SELECT value, count(*) FROM layer.t WHERE date = ? GROUP BY 1", params=[DAY]).fetchall()


def test_two_runs_replacing_the_same_day_one_fails_clearly_and_the_table_stays_correct(s3_bucket, capfd):
    uri = f"{s3_bucket}/same_day"
    database = DeltaDatabase(uri=uri)
    database.replace_days("layer", "t", _frame(DAY, [0]), [DAY])
    spawn = multiprocessing.get_context("spawn")  # deltalake must not run in a forked process
    barrier = spawn.Barrier(2)
    writers = [spawn.Process(target=_slow_replace, args=(uri, value, barrier, None, None)) for value in (1, 2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
    codes = sorted(writer.exitcode for writer in writers)
    assert codes == [0, 3], codes
    assert "Another run replaced layer.t for 2019-11-12 while this one was writing it" in capfd.readouterr().err
    winner = 1 + [writer.exitcode for writer in writers].index(0)
    assert _day_values(database) == [(winner, 5000)]  # the committed run's rows, all of them, and its record
    database.replace_days("layer", "t", _frame(DAY, [7, 7]), [DAY])  # the retry
    assert _day_values(database) == [(7, 2)]


def test_a_run_killed_mid_write_leaves_the_previous_partition_readable(s3_bucket):
    uri = f"{s3_bucket}/killed"
    database = DeltaDatabase(uri=uri)
    database.replace_days("layer", "t", _frame(DAY, [4, 4, 4]), [DAY])
    spawn = multiprocessing.get_context("spawn")
    ready, halt = spawn.Event(), spawn.Event()
    writer = spawn.Process(target=_slow_replace, args=(uri, 9, None, ready, halt))
    writer.start()
    assert ready.wait(60)  # half of the new rows are written as Parquet files, nothing committed
    os.kill(writer.pid, signal.SIGKILL)
    writer.join(10)
    assert writer.exitcode == -signal.SIGKILL
    assert _day_values(database) == [(4, 3)]  # Delta's log never referenced the killed writer's files
    database.replace_days("layer", "t", _frame(DAY, [5]), [DAY])
    assert _day_values(database) == [(5, 1)]


def _refuse_python_reads(monkeypatch) -> None:
    def refuse(self, path):
        raise AssertionError(f"{path} was read through deltalake's Python filesystem")

    monkeypatch.setattr(DeltaStorageHandler, "open_input_file", refuse)
    monkeypatch.setattr(DeltaStorageHandler, "open_input_stream", refuse)


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_reads_never_call_into_python(where, tmp_path, request, monkeypatch):
    """Every read goes through Arrow's own local or S3 filesystem. deltalake's default filesystem is
    Python, which Arrow's reader threads call holding a lock of the scan, while the DuckDB thread
    starting that scan holds the GIL and waits for the lock: a backfill's run on S3 hung for good
    that way in a check step, in CI and here."""
    uri = str(tmp_path / "lake") if where == "folder" else f"{request.getfixturevalue('s3_bucket')}/native"
    _refuse_python_reads(monkeypatch)
    database = DeltaDatabase(uri=uri)
    database.replace_days("layer", "t", pl.concat([_frame(DAY, [1, 2]), _frame(DAY + dt.timedelta(days=1), [3])]),
                          [DAY, DAY + dt.timedelta(days=1)])
    assert sorted(_day_values(database)) == [(1, 1), (2, 1)]
    assert database.assign_ids("features", "vocabulary_ids", "news", pl.Series(["N1", "N2"])) == 2
    assert database.assign_ids("features", "vocabulary_ids", "news", pl.Series(["N2", "N3"])) == 1


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_a_root_with_odd_characters_reads_back(where, tmp_path, request):
    """delta-rs gives a table's URI percent-encoded: the native reads open the folder it stands for."""
    odd = "my lake 50%'x"
    uri = str(tmp_path / f"{odd} #1") if where == "folder" else f"{request.getfixturevalue('s3_bucket')}/{odd}"
    database = DeltaDatabase(uri=uri)
    assert database.replace_days("layer", "t", _frame(DAY, [3, 4]), [DAY]).rows == 2
    assert sorted(_day_values(database)) == [(3, 1), (4, 1)]


@pytest.mark.parametrize("damage", ["deleted", "dangling link", "deleted on s3"])
def test_a_data_file_the_log_names_but_storage_lacks_fails_the_read_naming_it(damage, tmp_path, request):
    """Reads open the files Delta's log lists on Arrow's own filesystem: one that is gone (deleted, or
    replaced by a link to nothing) fails the read with its path, never a day with fewer rows."""
    uri = f"{request.getfixturevalue('s3_bucket')}/damaged" if damage == "deleted on s3" else str(tmp_path / "lake")
    database = DeltaDatabase(uri=uri)
    database.replace_days("layer", "t", pl.concat([_frame(DAY, [1]), _frame(DAY + dt.timedelta(days=1), [2])]),
                          [DAY, DAY + dt.timedelta(days=1)])
    victim = next(path for path in DeltaTable(table_uri(uri, "layer", "t")).file_uris() if f"date={DAY}" in path)
    if damage == "deleted on s3":
        import boto3

        bucket, key = victim.removeprefix("s3://").split("/", 1)
        boto3.client("s3").delete_object(Bucket=bucket, Key=key)
    else:
        os.remove(victim)
        if damage == "dangling link":
            os.symlink(tmp_path / "gone.parquet", victim)
    with pytest.raises(duckdb.Error, match=victim.removeprefix("s3://").rsplit("/", 1)[1]):
        with database.connect() as conn:
            conn.sql("SELECT value FROM layer.t WHERE date = ?", params=[DAY]).fetchall()


def test_storage_options_alone_reach_the_s3_reads(s3_bucket, monkeypatch):
    """The S3 settings given as the IO manager's storage options (delta-rs' names), with none in the
    environment: Arrow's S3 client is set up from them as delta-rs is."""
    settings = {name.lower(): os.environ[name] for name in
                ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ALLOW_HTTP", "AWS_CONDITIONAL_PUT")}
    for name in settings:
        monkeypatch.delenv(name.upper())
    _refuse_python_reads(monkeypatch)
    database = DeltaDatabase(uri=f"{s3_bucket}/options", storage_options=settings)
    database.replace_days("layer", "t", _frame(DAY, [6, 6]), [DAY])
    assert _day_values(database) == [(6, 2)]


def _at_once(target, argument_lists: list[tuple]) -> list[int]:
    """target(*arguments, barrier) in a spawned process per argument list, all released together at
    the barrier; their exit codes."""
    spawn = multiprocessing.get_context("spawn")  # deltalake must not run in a forked process
    barrier = spawn.Barrier(len(argument_lists))
    writers = [spawn.Process(target=target, args=(*arguments, barrier)) for arguments in argument_lists]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
    return [writer.exitcode for writer in writers]


def _add_keys(uri: str, barrier) -> None:
    barrier.wait(30)
    DeltaDatabase(uri=uri).add_new_rows("features", "cache", pl.DataFrame({"key": ["a", "b", "b"], "value": [1, 2, 2]}), "key")


def test_runs_adding_the_same_keys_at_once_store_each_key_once(tmp_path):
    """Three writers create the same new table and add the same keys at the same moment (as the
    first runs of a backfill fill the embedding cache): all succeed, each key is stored once."""
    uri = str(tmp_path / "lake")
    assert _at_once(_add_keys, [(uri,)] * 3) == [0, 0, 0]
    with DeltaDatabase(uri=uri).connect() as conn:
        assert conn.sql("SELECT key, value FROM features.cache ORDER BY key").fetchall() == [("a", 1), ("b", 2)]


def _assign_ids(uri: str, tokens: list[str], barrier) -> None:
    barrier.wait(30)
    DeltaDatabase(uri=uri).assign_ids("features", "vocabulary_ids", "news", pl.Series(tokens))


def test_runs_extending_a_vocabulary_at_once_never_give_one_id_twice(tmp_path):
    """Three writers add new tokens (some shared) to one vocabulary at the same moment, as a
    backfill's first runs do: every token gets one id, no id is given twice, and the ids given
    before stay as they were."""
    uri = str(tmp_path / "lake")
    DeltaDatabase(uri=uri).assign_ids("features", "vocabulary_ids", "news", pl.Series(["N1", "N2"]))
    token_sets = [["N3", "N4", "N9"], ["N5", "N9"], ["N6", "N7", "N8", "N2"]]
    assert _at_once(_assign_ids, [(uri, tokens) for tokens in token_sets]) == [0, 0, 0]
    with DeltaDatabase(uri=uri).connect() as conn:
        ids = dict(conn.sql("SELECT token, id FROM features.vocabulary_ids WHERE vocabulary = 'news'").fetchall())
    assert sorted(ids) == [f"N{i}" for i in range(1, 10)]
    assert sorted(ids.values()) == list(range(1, 10)) and ids["N1"] == 1 and ids["N2"] == 2


def _unfinished(instance: dg.DagsterInstance, backfill_id: str) -> str:
    """The backfill's runs not yet ended, each with its day and its last event: where a run waits."""
    lines = []
    for record in instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id})):
        run = record.dagster_run
        if run.is_finished:
            continue
        events = instance.get_records_for_run(run.run_id, ascending=False, limit=1).records
        last = events[0].event_log_entry if events else None
        lines.append(f"{run.run_id[:8]} {run.tags.get('dagster/asset_partition_range_start', 'evaluation')} {run.status.value}: "
                     + (f"{getattr(last.dagster_event_type, 'value', 'a log line')} {last.step_key or ''} at {dt.datetime.fromtimestamp(last.timestamp):%H:%M:%S}" if last else "no event"))
    return "runs not ended:\n" + "\n".join(lines)


# Two train days, the dev day and a test day: the tiny sample's calendar from 2019-11-13 on.
BACKFILL_DAYS = [f"2019-11-{d:02d}" for d in range(13, 17)]


@pytest.mark.slow
def test_a_parallel_backfill_on_the_s3_emulator_equals_the_duckdb_storage(tmp_path, s3_bucket, postgres):
    """The range as a backfill that Dagster's daemon runs one run per day, several at once, against
    Delta tables and raw MIND files on the S3 emulator (runs starting together mirror the files at once),
    the instance in PostgreSQL (deploy/dagster.yaml's storage, migrated as the docs say), as on many machines: every run succeeds (every check passed: they block), and every
    table equals the DuckDB storage's rows for the same graph. BACKFILL_DAYS cover train, dev and test,
    and the raw files hold nothing before them (the 14 default days took ~14 of CI's minutes for 42
    runs, 8 days 13 minutes for 25)."""
    mind = tmp_path / "mind"
    sample.generate(mind, "tiny", days=len(BACKFILL_DAYS), first_day=dt.date.fromisoformat(BACKFILL_DAYS[0]))
    upload_splits(mind, f"{s3_bucket}/mind")  # the raw files too: every run reads them from the bucket
    home = postgres_home(tmp_path / "dagster_home")
    uri = f"{s3_bucket}/backfill"
    env = {**os.environ, **postgres, "DAGSTER_HOME": str(home), "NEWS_AI_STORAGE": "delta", "NEWS_AI_DELTA_URI": uri,
           "NEWS_AI_MIND_DIR": f"{s3_bucket}/mind", "NEWS_AI_MIND_MIRROR": str(tmp_path / "mirror"),
           "NEWS_AI_EMBEDDING_DEVICE": "cpu",
           "NEWS_AI_START_DATE": BACKFILL_DAYS[0], "NEWS_AI_END_DATE": BACKFILL_DAYS[-1],
           # ~15 impressions a day: one user without history moves a day's missing share by ~10% (2019-11-22: 9.6%)
           "NEWS_AI_MAX_MISSING_CROSS_SHARE": "0.2"}
    # The deployment step docs/storage.md names, on an empty database: it creates Dagster's tables.
    subprocess.run([str(Path(sys.executable).parent / "dagster"), "instance", "migrate"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    daemon = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-m", "news_ai_assets.definitions"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        launched = subprocess.run([sys.executable, "-m", "news_ai_assets.backfill"], cwd=ROOT, env=env,
                                  capture_output=True, text=True, check=True)
        backfill_id = launched.stdout.split()[1].rstrip(":")
        with dg.DagsterInstance.from_config(str(home)) as instance:
            deadline = time.monotonic() + 2400  # ~6 min on this 2-core box; a hung run is named with its last step
            while (backfill := instance.get_backfill(backfill_id)).status.value in ("REQUESTED", "FAILING", "CANCELING"):
                assert time.monotonic() < deadline, f"the backfill did not finish in 40 minutes; {_unfinished(instance, backfill_id)}"
                time.sleep(5)
            runs = instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(60)
    assert backfill.status.value == "COMPLETED_SUCCESS", backfill.status
    # Each run, not only the backfill: Dagster calls a backfill a success once every asset partition
    # is materialised, even when a blocking check failed after its asset was stored.
    failed = [r.dagster_run.tags.get("dagster/asset_partition_range_start", "the evaluation") for r in runs
              if r.dagster_run.status != dg.DagsterRunStatus.SUCCESS]
    assert runs and not failed, f"runs failed for {failed}"
    daily = [r for r in runs if "dagster/asset_partition_range_start" in r.dagster_run.tags]
    assert len(runs) - len(daily) == 1  # gold/ranker_evaluation, once, after the days it reads
    spans = [(r.start_time, r.end_time) for r in runs]
    in_flight = max(sum(start <= moment < end for start, end in spans) for moment, _ in spans)
    assert in_flight >= 3, f"at most {in_flight} runs were in flight at once"
    ranges = [(r.dagster_run.tags["dagster/asset_partition_range_start"], r.dagster_run.tags["dagster/asset_partition_range_end"])
              for r in daily]
    assert all(start == end for start, end in ranges)  # one day per run
    assert sorted({start for start, _ in ranges}) == BACKFILL_DAYS

    duck = tmp_path / "reference.duckdb"
    reference = {**env, "NEWS_AI_STORAGE": "duckdb", "NEWS_AI_DUCKDB_PATH": str(duck),
                 "DAGSTER_HOME": str(copy_dagster_yaml(tmp_path / "reference_home"))}
    subprocess.run([str(Path(sys.executable).parent / "dg"), "launch", "-m", "news_ai_assets.definitions",
                    "--assets", "*", "--partition-range", f"{BACKFILL_DAYS[0]}...{BACKFILL_DAYS[-1]}"], cwd=ROOT, env=reference,
                   capture_output=True, check=True)
    assert_same_tables(DuckDBDatabase(database=str(duck)), DeltaDatabase(uri=uri), ids_as_tokens=True)
    with DeltaDatabase(uri=uri).connect() as conn:  # the evaluation ran once its train and dev days were stored
        assert conn.sql("SELECT count(*) FROM gold.ranker_evaluation").fetchall() == [(2,)]
        ids = conn.sql("SELECT vocabulary, count(*), count(DISTINCT id), max(id) FROM features.vocabulary_ids GROUP BY 1").fetchall()
    assert all(count == distinct == largest for _, count, distinct, largest in ids)  # no id given twice, none skipped
