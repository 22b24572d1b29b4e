"""Real servers for the tests and benchmarks/many_runs.py, started here and stopped when done: the moto
S3 emulator and a PostgreSQL server from Debian's package (it refuses to run as root: as root it runs as
`postgres`)."""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

# Debian's postgresql package: its newest server's programs.
POSTGRES_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name),
                   default=Path("/usr/lib/postgresql"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(port: int, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start in {seconds:.0f} s") from None
            time.sleep(0.1)


@contextlib.contextmanager
def s3_emulator(*buckets: str) -> Iterator[dict[str, str]]:
    """moto_server on 127.0.0.1 with `buckets` created; yields the environment delta-rs and boto3 read
    (AWS_CONDITIONAL_PUT=etag: Delta commits are put-if-absent on S3)."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true", "AWS_CONDITIONAL_PUT": "etag"}
    try:
        _wait_for(port, "moto_server")
        import boto3

        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="test",
                              aws_secret_access_key="test", region_name="us-east-1")
        for bucket in buckets:
            client.create_bucket(Bucket=bucket)
        yield env
    finally:
        server.terminate()
        server.wait(10)


def _as_postgres(*command: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


@contextlib.contextmanager
def postgres_server() -> Iterator[dict[str, str]]:
    """A PostgreSQL server in a temporary folder on a free port, with a database `dagster`; yields the
    DAGSTER_PG_* settings deploy/dagster.yaml reads."""
    if not (POSTGRES_BIN / "initdb").exists():
        raise RuntimeError(f"no PostgreSQL server in {POSTGRES_BIN}: install Debian's postgresql")
    folder, port = Path(tempfile.mkdtemp(prefix="news-ai-postgres-")), free_port()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    subprocess.run(_as_postgres(str(POSTGRES_BIN / "initdb"), "-D", str(folder / "data"), "-U", "dagster", "--auth=trust"),
                   check=True, capture_output=True)
    subprocess.run(_as_postgres(str(POSTGRES_BIN / "pg_ctl"), "-D", str(folder / "data"), "-l", str(folder / "log"), "-w",
                                "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"),
                   check=True, capture_output=True)
    try:
        create_database(port, "dagster")
        yield {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(port), "DAGSTER_PG_DB": "dagster",
               "DAGSTER_PG_USER": "dagster", "DAGSTER_PG_PASSWORD": "unused (trust)"}
    finally:
        subprocess.run(_as_postgres(str(POSTGRES_BIN / "pg_ctl"), "-D", str(folder / "data"), "-m", "fast", "stop"),
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def create_database(port: int | str, name: str) -> None:
    subprocess.run(_as_postgres(str(POSTGRES_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "dagster", name),
                   check=True, capture_output=True)


def postgres_home(home: Path, max_concurrent_runs: int | None = None) -> Path:
    """A DAGSTER_HOME with this repository's dagster.yaml, its storage that of deploy/dagster.yaml (PostgreSQL),
    and `max_concurrent_runs` runs at once if given."""
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    config["storage"] = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())["storage"]
    if max_concurrent_runs:
        config["concurrency"]["runs"]["max_concurrent_runs"] = max_concurrent_runs
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


def upload_splits(folder: Path, uri: str) -> None:
    """Every file of the MIND split folders under `folder`, as objects under `uri` (s3://bucket/prefix)."""
    import boto3

    bucket, _, prefix = uri[len("s3://"):].partition("/")
    client = boto3.client("s3")
    for path in sorted(folder.glob("MIND*/*")):
        client.upload_file(str(path), bucket, f"{prefix}/{path.parent.name}/{path.name}")
