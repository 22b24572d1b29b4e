"""Permission cases as a user without privileges. The tests run as root here and in CI, and root
reads every file whatever its mode, so a chmod 000 proves nothing unless the read runs as another
user: a forked child that drops to `nobody` (the interpreter lives under /root, which nobody
cannot enter, so a fresh `runuser python` could not even start)."""

import os
import pickle
import select
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

NOBODY = 65534


@contextmanager
def folder_nobody_can_enter() -> Iterator[Path]:
    """A temporary folder outside pytest's own (which is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="news_ai_permissions_"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for folder, _, _ in os.walk(path):
            os.chmod(folder, 0o755)
        shutil.rmtree(path)


def as_nobody(action: Callable[[], object], timeout: float = 60) -> object:
    """action() in a forked child running as `nobody`: its result, or the exception it raised.

    The child only touches paths and os calls: after a fork, only the forking thread exists, so
    thread pools the parent started (Polars, DuckDB) must not be used there."""
    if os.geteuid() != 0:
        return action()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read)
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            outcome = ("returned", action())
        except BaseException as err:  # noqa: BLE001 - handed to the parent, which raises it
            outcome = ("raised", err)
        try:
            payload = pickle.dumps(outcome)
        except Exception as err:  # noqa: BLE001
            payload = pickle.dumps(("raised", RuntimeError(f"unpicklable outcome {outcome!r}: {err}")))
        os.write(write, payload)
        os._exit(0)
    os.close(write)
    try:
        chunks = []
        while select.select([read], [], [], timeout)[0]:
            if not (chunk := os.read(read, 1 << 16)):
                break
            chunks.append(chunk)
        else:
            os.kill(pid, signal.SIGKILL)
            raise TimeoutError(f"the unprivileged child did not finish in {timeout} s")
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    kind, value = pickle.loads(b"".join(chunks))
    if kind == "raised":
        raise value
    return value
