"""The pipeline as users run it: `dagster dev` (webserver + daemon), UI backfills, the CLI beside them.

Slow (a minute or two); run by ./scripts/test.sh and CI. `pytest -m "not slow"` skips them.
"""

import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from benchmarks.servers import free_port
from news_ai_assets.definitions import all_checks
from news_ai_assets_tests.pipeline import ALL_ASSETS, PARTITIONED_ASSETS, read_table

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("NEWS_AI_TEST_ARTIFACTS", ROOT / "test-artifacts"))


class Dagster:
    """`scripts/dev.sh` (the README's `dagster dev`) with its own DAGSTER_HOME and DuckDB file."""

    def __init__(self, root: Path, mind_dir: Path):
        self.home = root / "dagster_home"
        self.database = root / "ui.duckdb"
        self.port = free_port()
        # The tiny sample has ~10 impressions a day: one user with an empty history moves a day's
        # share of rows without cross features by ~10%, over the 5% bound meant for real days.
        self.env = {**os.environ, "DAGSTER_HOME": str(self.home), "NEWS_AI_MIND_DIR": str(mind_dir),
                    "NEWS_AI_DUCKDB_PATH": str(self.database), "NEWS_AI_EMBEDDING_DEVICE": "cpu",
                    "NEWS_AI_MAX_MISSING_CROSS_SHARE": "0.2"}
        self.log_path = root / "dagster_dev.log"
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [ROOT / "scripts" / "dev.sh", "-p", str(self.port)],
            cwd=root, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if len(self.asset_keys()) == len(ALL_ASSETS):
                    return
            except (OSError, KeyError, TypeError):
                pass
            time.sleep(1)
        raise AssertionError(f"dagster dev did not serve the definitions; see {self.log_path}")

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)["data"]

    def asset_keys(self) -> set[str]:
        nodes = self.graphql("{ assetNodes { assetKey { path } } }")["assetNodes"]
        return {"/".join(n["assetKey"]["path"]) for n in nodes}

    def launch_backfill(self, partitions: list[str], assets: list[str]) -> str:
        result = self.graphql(
            """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
                 __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
            {"params": {"partitionNames": partitions, "assetSelection": [{"path": a.split("/")} for a in assets]}},
        )["launchPartitionBackfill"]
        assert result["__typename"] == "LaunchBackfillSuccess", result
        return result["backfillId"]

    def wait_for_backfill(self, backfill_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.graphql(
                "query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }",
                {"id": backfill_id},
            )["partitionBackfillOrError"]["status"]
            if status not in ("REQUESTED", "CANCELING", "FAILING"):
                return status
            time.sleep(2)
        raise AssertionError(f"backfill {backfill_id} still running after {timeout}s")

    def close(self) -> None:
        os.killpg(self.process.pid, 15)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
        self.log.close()


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory, tiny_mind):
    server = Dagster(tmp_path_factory.mktemp("ui"), tiny_mind)
    yield server
    server.close()


def test_the_webserver_lists_the_graph_and_binds_to_localhost_only(dagster_dev):
    assert dagster_dev.asset_keys() == set(ALL_ASSETS)
    listening = [
        c.laddr for p in [psutil.Process(dagster_dev.process.pid), *psutil.Process(dagster_dev.process.pid).children(True)]
        for c in p.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == dagster_dev.port
    ]
    assert listening and all(addr.ip == "127.0.0.1" for addr in listening)


def test_dagster_dev_prints_no_warning_of_ours(dagster_dev):
    log = dagster_dev.log_path.read_text()
    assert "will not be used" not in log  # ./dagster.yaml beside a DAGSTER_HOME elsewhere
    warnings = [line for line in log.splitlines() if "Warning" in line]
    assert not warnings, warnings


def test_a_ui_backfill_and_a_cli_run_together_both_succeed(dagster_dev):
    """The whole range launched as the UI launches it, and a CLI run at the same time: the run
    lock makes the later one wait for the other, so neither sees a lock error."""
    first = dagster_dev.launch_backfill(["2019-11-09"], ["bronze/behaviors"])  # one partition, as from the UI
    assert dagster_dev.wait_for_backfill(first) == "COMPLETED_SUCCESS"
    days = [f"2019-11-{d:02d}" for d in range(9, 23)]
    backfill = dagster_dev.launch_backfill(days, ALL_ASSETS)
    cli = subprocess.run(
        [Path(sys.executable).parent / "dg", "launch", "-m", "news_ai_assets.definitions",
         "--assets", "bronze/behaviors,bronze/news,features/news_features", "--partition", "2019-11-12"],
        cwd=dagster_dev.home.parent, env=dagster_dev.env, capture_output=True, text=True, timeout=600,
    )
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert "lock" not in (cli.stdout + cli.stderr).lower()
    assert dagster_dev.wait_for_backfill(backfill) == "COMPLETED_SUCCESS"
    silver = read_table(dagster_dev.database, "silver.training_examples")
    assert sorted(str(d) for d in silver.get_column("date").unique()) == days
    assert read_table(dagster_dev.database, "gold.ranker_evaluation").height == 2  # the evaluation ran with them


def test_every_check_partition_reads_passed_after_the_backfill(dagster_dev):
    """What a check's Partitions tab shows, per check of every daily asset: one Succeeded range over
    all 14 days (a range run used to leave them Skipped)."""
    for asset in PARTITIONED_ASSETS:
        node = dagster_dev.graphql(
            """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
                 assetChecksOrError { ... on AssetChecks { checks { name partitionStatuses {
                   ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } } } } } } } } }""",
            {"key": {"path": asset.split("/")}},
        )["assetNodeOrError"]
        for check in node["assetChecksOrError"]["checks"]:
            assert check["partitionStatuses"]["ranges"] == [
                {"startKey": "2019-11-09", "endKey": "2019-11-22", "status": "SUCCEEDED"}
            ], (asset, check["name"])


def test_no_partition_reads_unsynced_after_a_rerun_from_the_same_files(dagster_dev):
    """What the UI shows as "Unsynced", per partition of every daily asset: nothing, after the
    backfill, the CLI run beside it and one more UI run of bronze/behaviors[2019-11-12]."""
    rerun = dagster_dev.launch_backfill(["2019-11-12"], ["bronze/behaviors"])
    assert dagster_dev.wait_for_backfill(rerun) == "COMPLETED_SUCCESS"
    days = [f"2019-11-{d:02d}" for d in range(9, 23)]
    for asset in PARTITIONED_ASSETS:
        node = dagster_dev.graphql(
            """query($key: AssetKeyInput!, $days: [String!]!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
                 staleStatusByPartition(partitions: $days) staleCausesByPartition(partitions: $days) { reason } } } }""",
            {"key": {"path": asset.split("/")}, "days": days},
        )["assetNodeOrError"]
        assert node["staleStatusByPartition"] == ["FRESH"] * len(days), (asset, node["staleCausesByPartition"])


def _browser() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not browser:
        pytest.skip("no headless browser installed")
    return browser


def _chromium(dagster_dev, path: str, *output: str) -> subprocess.CompletedProcess:
    dagster_dev.graphql("mutation { setNuxSeen }")  # the first-visit community dialog, as "Skip" dismisses it
    profile = dagster_dev.home.parent / f"chromium-profile-{time.monotonic_ns()}"
    return subprocess.run(
        [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--window-size=1600,1000", "--virtual-time-budget=20000",
         *output, f"http://127.0.0.1:{dagster_dev.port}{path}"],
        capture_output=True, text=True, timeout=120,
    )


def _screenshot(dagster_dev, path: str, name: str) -> Path:
    _browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / name
    shot.unlink(missing_ok=True)
    _chromium(dagster_dev, path, f"--screenshot={shot}")
    assert shot.exists() and shot.stat().st_size > 20_000
    return shot


def _page_text(dagster_dev, path: str) -> str:
    """The page's text as the browser rendered it, whitespace collapsed."""
    dom = _chromium(dagster_dev, path, "--dump-dom").stdout
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))


def test_a_screenshot_of_the_asset_graph(dagster_dev):
    _screenshot(dagster_dev, "/asset-groups", "asset_graph.png")


def test_a_screenshot_of_silvers_partitions_after_the_rerun(dagster_dev):
    """For review: what the asset's Partitions tab shows after the rerun of one bronze day (above)."""
    path = "/assets/silver/training_examples?view=partitions&partition=2019-11-13"
    _screenshot(dagster_dev, path, "silver_partitions.png")
    assert "Unsynced" not in _page_text(dagster_dev, path)


def test_the_silver_checks_tab_shows_passed_checks_never_skipped(dagster_dev):
    path = "/assets/silver/training_examples?view=checks"
    _screenshot(dagster_dev, path, "silver_checks.png")
    page = _page_text(dagster_dev, path)
    checks = len(next(c for c in all_checks if c.node_def.name == "silver__training_examples_checks").check_keys)
    assert f"Checks ({checks})" in page and page.count("Succeeded") >= checks and "Passed" in page, page[-3000:]
    assert "Skipped" not in page


def test_the_evaluations_page_shows_its_metrics(dagster_dev):
    """A screenshot for review at a laptop's 1600 pixels: the evaluation's table, a metric per row."""
    path = "/assets/gold/ranker_evaluation?view=events"
    _screenshot(dagster_dev, path, "ranker_evaluation.png")
    page = _page_text(dagster_dev, path)
    assert "group_auc_lift_over_popularity" in page and "ranker_ndcg_10" in page, page[-3000:]
