"""Every use of Dagster's internals, in one module, each with the reason there is no public way.

- DbIOManager, DbTypeHandler, DbClient, TableSlice: dagster-duckdb builds its IO manager on them
  and offers no public way to replace the client that deletes a partition outside the insert's
  transaction (see storage/duckdb_file.py).
- AssetCheckEvaluationTargetMaterializationData: a check over a range run reports one evaluation
  per partition (AssetCheckResult can only report the run's single partition key); each is linked
  to its own partition's materialisation, as AssetCheckResult does for a single partition.
- PartitionBackfill.from_partitions_by_assets, the selectors and DagsterInstance.add_backfill: an
  asset backfill, in which Dagster's daemon launches a run per partition as soon as the partitions it
  reads are materialised, is launched from the UI or its GraphQL API only; the CLI's `dagster job
  backfill` launches every partition's run at once, whatever the lookback reads. Each asset's range
  is named: from_asset_partitions also targets every partition downstream of the requested ones
  (a lookback's days after the range: user features of the 7 days after it).
- The step context behind an OutputContext: the IO manager learns each partition's row count only
  when it writes, and attaching a value to one partition's materialisation event is an
  execution-context method (AssetExecutionContext.add_asset_metadata) that OutputContext lacks.
- execute_step._get_output_asset_events: an output's data version (Output.data_version) is given
  to every partition of a range run alike, and Dagster has no per-partition one for
  materialisations (DataVersionsByPartition is for observations). A range run's partitions would
  all share one version, and re-running one day from unchanged files would make every day after
  it read "Unsynced". Wrapped so that each partition's event carries the version the asset
  recorded for it (set_partition_data_versions; see assets/versions.py).
- CachingStaleStatusResolver: what the UI shows as "Unsynced" and why, for the tests and the
  summary; Dagster offers it through GraphQL only.
- SqliteEventLogStorage._connect: the SQLite event log (a local instance's, `dagster dev`'s) builds a
  new SQLAlchemy engine for every statement group, so every event paid for an engine, a connection
  and compiling its INSERTs afresh: ~9 ms of CPU an event, ~780 events in MIND-small's 14-day run.
  Its engines are kept now (a connection pool each, the most recent shards only); the storage has no
  setting for it. A shard file deleted or replaced under a kept engine gets a new engine and its tables.
"""

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import dagster as dg
from dagster._core.definitions.data_version import (
    DATA_VERSION_IS_USER_PROVIDED_TAG, DATA_VERSION_TAG, CachingStaleStatusResolver, StaleStatus,
)
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.execution.plan import execute_step
from dagster._core.definitions.selector import PartitionRangeSelector, PartitionsByAssetSelector, PartitionsSelector
from dagster._core.execution.backfill import PartitionBackfill
from dagster._core.utils import make_new_backfill_id
from dagster._time import get_current_datetime
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.storage.db_io_manager import DbClient, DbIOManager, DbTypeHandler, TableSlice
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SQLITE_BUSY_TIMEOUT_SECONDS, SqliteEventLogStorage
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

__all__ = ["DATA_VERSION_TAG", "DbClient", "DbIOManager", "DbTypeHandler", "TableSlice", "add_partition_metadata",
           "check_evaluations", "launch_asset_backfill", "set_partition_data_versions", "stale_causes"]


def add_partition_metadata(context: dg.OutputContext, partition_key: str, metadata: Mapping[str, object]) -> None:
    """Metadata for one partition's materialisation event, from inside an IO manager."""
    context.step_context.add_asset_metadata(dict(metadata), asset_key=context.asset_key, partition_key=partition_key)


def check_evaluations(
    check_key: dg.AssetCheckKey, results: Mapping[str, tuple[bool, Mapping]], latest: Mapping[str, dg.EventLogRecord],
    blocking: bool,
) -> list[dg.AssetCheckEvaluation]:
    """One evaluation per partition key of `results` ((passed, metadata) each), linked to that
    partition's latest materialisation (`latest`, by partition key)."""
    return [
        dg.AssetCheckEvaluation(
            asset_key=check_key.asset_key, check_name=check_key.name, passed=passed, metadata=dict(metadata),
            target_materialization_data=AssetCheckEvaluationTargetMaterializationData(
                run_id=latest[key].event_log_entry.run_id, storage_id=latest[key].storage_id,
                timestamp=latest[key].timestamp,
            ) if key in latest else None,
            blocking=blocking, partition=key,
        )
        for key, (passed, metadata) in results.items()
    ]


def launch_asset_backfill(instance: dg.DagsterInstance, defs: dg.Definitions, first: str, last: str,
                          title: str) -> str:
    """Requests a backfill of every asset of `defs` for partitions first .. last (the unpartitioned ones
    once), and of no other partition, as the UI's "Launch backfill" does; the instance's daemon runs it.
    Returns the backfill id."""
    graph = defs.resolve_asset_graph()
    days = PartitionsSelector(ranges=[PartitionRangeSelector(first, last)])
    backfill = PartitionBackfill.from_partitions_by_assets(
        backfill_id=make_new_backfill_id(), asset_graph=graph, backfill_timestamp=time.time(), tags={},
        dynamic_partitions_store=instance, title=title, description=None, run_config=None,
        partitions_by_assets=[
            PartitionsByAssetSelector(asset_key=key, partitions=days if graph.get(key).is_partitioned else None)
            for key in sorted(graph.materializable_asset_keys)
        ],
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


_partition_data_versions: dict[tuple[str, dg.AssetKey], dict[str, str]] = {}
_events_with_one_data_version = execute_step._get_output_asset_events


def set_partition_data_versions(context: dg.AssetExecutionContext, versions: Mapping[str, str]) -> None:
    """The data version of each partition (key -> version) for the materialisations of the
    asset's output in this step (added to those recorded before in the step)."""
    _partition_data_versions.setdefault((context.run.run_id, context.asset_key), {}).update(versions)


def _events_with_partition_data_versions(asset_key, asset_partitions, output, output_def, io_manager_metadata,
                                         step_context, execution_type) -> Iterator:
    versions = _partition_data_versions.pop((step_context.run_id, asset_key), {})
    for event in _events_with_one_data_version(asset_key, asset_partitions, output, output_def, io_manager_metadata,
                                               step_context, execution_type):
        version = versions.get(event.partition) if isinstance(event, dg.AssetMaterialization) else None
        yield event if version is None else event._replace(
            tags={**event.tags, DATA_VERSION_TAG: version, DATA_VERSION_IS_USER_PROVIDED_TAG: "true"})


execute_step._get_output_asset_events = _events_with_partition_data_versions


def stale_causes(instance: dg.DagsterInstance, assets: Sequence[dg.AssetsDefinition], key: dg.AssetKey,
                 partition: str | None = None) -> list[str] | None:
    """Why the UI shows a partition of `assets` as "Unsynced" ([] when fresh, None when never materialised)."""
    graph = AssetGraph.from_assets(assets)
    view = AssetGraphView(temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
                          instance=instance, asset_graph=graph)
    resolver = CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)
    if resolver.get_status(key, partition) == StaleStatus.MISSING:
        return None
    return [f"{cause.reason}" + (f": {cause.dependency.asset_key.to_user_string()}[{cause.dependency.partition_key}]"
                                 if cause.dependency else "")
            for cause in resolver.get_stale_causes(key, partition)]


_SHARD_ENGINES_KEPT = 16  # a run writes to its own shard and the index; readers may visit more
_shard_engines: OrderedDict[tuple[int, str], tuple[Engine, tuple[int, int] | None]] = OrderedDict()
_shard_engines_lock = threading.Lock()  # storages (each with its own lock) share the kept engines


def _file_identity(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


@contextmanager
def _connect_with_kept_engine(self: SqliteEventLogStorage, shard: str) -> Iterator:
    """SqliteEventLogStorage._connect, with the shard's engine kept between calls (per process)."""
    with self._db_lock:
        path = self.path_for_shard(shard)
        key = (os.getpid(), path)
        with _shard_engines_lock:
            engine, identity = _shard_engines.pop(key, (None, None))
            if engine is not None and identity != _file_identity(path):  # deleted or replaced: start it afresh
                engine.dispose()
                engine = None
                self._initialized_dbs.discard(shard)
            if engine is None:
                engine = create_engine(self.conn_string_for_shard(shard),
                                       connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            _shard_engines[key] = (engine, _file_identity(path))
            while len(_shard_engines) > _SHARD_ENGINES_KEPT:  # a connection in use outlives its pool's disposal
                _shard_engines.popitem(last=False)[1][0].dispose()
        with engine.connect() as conn:
            with conn.begin():
                yield conn


SqliteEventLogStorage._connect = _connect_with_kept_engine
