"""Work computed ahead on threads while the caller stores what is ready: Polars, NumPy and SciPy release
the GIL, so computing and DuckDB's inserts use both cores of a 2-core box instead of taking turns."""

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def computed_ahead(compute: Callable[[Item], Result], items: Iterable[Item], in_flight: int = 1) -> Iterator[Result]:
    """compute(item) for each item, in the items' order, the next `in_flight` computed on threads while the
    caller handles this one, so at most `in_flight` + 1 results are held. An error in computing is raised
    here, in its item's turn."""
    with ThreadPoolExecutor(in_flight, thread_name_prefix="computed_ahead") as pool:
        pending = deque()
        for item in items:
            pending.append(pool.submit(compute, item))
            if len(pending) > in_flight:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
