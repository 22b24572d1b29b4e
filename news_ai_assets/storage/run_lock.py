"""One pipeline run at a time per DuckDB file, held for the whole run.

DuckDB locks a file per connection, and the assets open one per step, so two runs (a CLI run
beside the UI, two DAGSTER_HOMEs on one file) would otherwise take turns step by step and mix
their inputs. A run takes an exclusive `flock` on `<database>.lock` when its storage resources
start and keeps it until they are torn down. The kernel drops the lock when the process dies,
SIGKILL included, so a crashed run never blocks the next one. A run that finds the lock taken
waits (runs queue on it), logging at INFO what it waits for and since when; the file names the
holder: run id, PID, host, DAGSTER_HOME and start time.
"""

import datetime as dt
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

WAIT_NOTICE_SECONDS = 30.0
POLL_SECONDS = 0.5


@dataclass
class _Held:
    fd: int
    users: int


_held: dict[str, _Held] = {}  # lock file -> its descriptor and how many resources of this process hold it


def lock_path(database: str | Path) -> Path:
    return Path(f"{Path(database).absolute()}.lock")


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _read_record(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 65536, 0) or b"{}")
    except ValueError:  # being rewritten by its holder right now
        return {}


def _write_record(fd: int, record: dict) -> None:
    data = json.dumps(record).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def describe(record: dict) -> str:
    if not record:
        return "holder unknown"
    return (
        f"run {record.get('run_id')} (PID {record.get('pid')} on {record.get('host')}, "
        f"DAGSTER_HOME {record.get('dagster_home')}) since {record.get('since')}"
    )


def acquire(database: str | Path, log, holder: dict) -> dict:
    """Takes the lock of `database`, waiting as long as another process holds it.

    Re-entrant within a process (the IO manager and the database resource of one run both hold
    it). Returns the record the previous holder left: `released_at` is missing when it died holding it.
    """
    path = lock_path(database)
    key = str(path)
    if key in _held:
        _held[key].users += 1
        return {}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        waiting_since, last_notice = None, float("-inf")
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waiting_since = waiting_since or time.monotonic()
                if time.monotonic() - last_notice >= WAIT_NOTICE_SECONDS:
                    last_notice = time.monotonic()
                    log.info(
                        f"Waiting for {database} ({time.monotonic() - waiting_since:.0f}s so far): another run "
                        f"holds it, {describe(_read_record(fd))}. Runs on one DuckDB file take turns; this "
                        "one starts when that one ends."
                    )
                time.sleep(POLL_SECONDS)
        previous = _read_record(fd)
        _write_record(fd, {**holder, "pid": os.getpid(), "host": socket.gethostname(), "since": _now()})
    except BaseException:
        os.close(fd)
        raise
    _held[key] = _Held(fd, 1)
    if waiting_since is not None:
        log.info(f"Got {database} after waiting {time.monotonic() - waiting_since:.0f}s")
    return previous


def users(database: str | Path) -> int:
    """How many resources of this process hold the lock of `database` (0: not held here)."""
    held = _held.get(str(lock_path(database)))
    return held.users if held else 0


def release(database: str | Path) -> None:
    key = str(lock_path(database))
    held = _held[key]
    held.users -= 1
    if held.users:
        return
    del _held[key]
    try:
        _write_record(held.fd, {**_read_record(held.fd), "released_at": _now()})
    finally:
        os.close(held.fd)  # closing the descriptor drops the lock
