"""Helpers shared by connectors to relational databases (public surface for plugins).

Names follow DESIGN §4: a run's staging table for sink ``n`` is ``etl_stg_<run_key>_<n>``;
each target database keeps a ledger table ``etl_ledger (pipeline, run_id, sink, published_at)``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

E = TypeVar("E")

LEDGER_TABLE = "etl_ledger"
STAGING_PREFIX = "etl_stg_"


def staging_table(run_key: str, sink_index: int) -> str:
    """The staging table of one sink of one run."""
    return f"{STAGING_PREFIX}{run_key}_{sink_index}"


def run_key_of_staging(table: str) -> str | None:
    """The ``run_key`` a staging table belongs to, or ``None`` for other tables."""
    if not table.startswith(STAGING_PREFIX):
        return None
    key, _, index = table[len(STAGING_PREFIX) :].rpartition("_")
    return key if len(key) == 12 and index.isdigit() else None


def partition_bounds(low: Any, high: Any, partitions: int) -> list[tuple[Any, Any]]:
    """Split ``[low, high]`` into at most ``partitions`` contiguous half-open ranges
    ``[start, end)``; the last one ends past ``high`` so that it includes it.

    Works for integers, dates and timestamps. Callers read rows with ``key IS NULL`` in one
    of the partitions (conventionally the first) so that no row is lost.
    """
    if partitions < 1:
        raise ValueError("partitions must be at least 1")
    if high < low:
        low, high = high, low
    if isinstance(low, dt.datetime):
        span = (high - low) / partitions
        step = span if span > dt.timedelta(0) else dt.timedelta(microseconds=1)
        edges: list[Any] = [low + step * i for i in range(partitions)]
        end = high + dt.timedelta(microseconds=1)
    elif isinstance(low, dt.date):
        days = (high - low).days + 1
        count = min(partitions, days)
        edges = [low + dt.timedelta(days=days * i // count) for i in range(count)]
        end = high + dt.timedelta(days=1)
    else:
        size = high - low + 1
        count = min(partitions, size)
        edges = [low + size * i // count for i in range(count)]
        end = high + 1
    edges = sorted(set(edges))
    return [(start, stop) for start, stop in zip(edges, [*edges[1:], end], strict=True)]


def bisect_rejects(count: int, attempt: Callable[[int, int], E | None]) -> Iterator[tuple[int, E]]:
    """Isolate the rows a merge refuses (DESIGN §4 step 5).

    Rows are numbered ``1..count``; ``attempt(low, high)`` tries the merge of rows
    ``low..high`` (in its own savepoint) and returns the database's error, or ``None`` when it
    went through. Yields ``(row_number, error)`` for each single row that fails on its own, in
    row order; every other row has been merged by the time the iteration ends.
    """
    pending = [(1, count)]
    while pending:
        low, high = pending.pop()
        error = attempt(low, high)
        if error is None:
            continue
        if low < high:
            middle = (low + high) // 2
            pending += [(middle + 1, high), (low, middle)]  # the lower half first
        else:
            yield low, error
