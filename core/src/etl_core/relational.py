"""Helpers shared by connectors to relational databases (public surface for plugins).

Names follow DESIGN §4: a run's staging table for sink ``n`` is ``etl_stg_<run_key>_<n>``;
each target database keeps a ledger table ``etl_ledger (pipeline, run_id, sink, published_at)``,
and for streams (DESIGN §9) the high-water table ``etl_stream_ledger (pipeline, sink, query_id,
batch_id, published_at)``: one row per sink, moved in each micro-batch's publish transaction
(:func:`stream_batch_is_new` decides).
``on_reject: dead_letter`` (DESIGN §4 step 5) is :func:`merge_rejecting`: the publish merge in
a savepoint, then :func:`bisect_rejects` over the staged rows numbered in ``etl_reject_rows``.

No database driver is imported here: the loaders hand in their statements and their drivers'
errors as callables.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any, TypeGuard, TypeVar

from etl_core.errors import PermanentError

E = TypeVar("E")

LEDGER_TABLE = "etl_ledger"
STREAM_LEDGER_TABLE = "etl_stream_ledger"
STAGING_PREFIX = "etl_stg_"
#: the savepoint each merge attempt of :func:`merge_rejecting` runs in
MERGE_SAVEPOINT = "etl_merge"
#: the temporary table of the staged rows numbered ``1..n`` in column ``etl_row``, made by the
#: ``number`` callable of :func:`merge_rejecting` once a merge of all the rows was refused
REJECT_ROWS = "etl_reject_rows"


def staging_table(run_key: str, sink_index: int) -> str:
    """The staging table of one sink of one run."""
    return f"{STAGING_PREFIX}{run_key}_{sink_index}"


def run_key_of_staging(table: str) -> str | None:
    """The ``run_key`` a staging table belongs to, or ``None`` for other tables."""
    if not table.startswith(STAGING_PREFIX):
        return None
    key, _, index = table[len(STAGING_PREFIX) :].rpartition("_")
    return key if len(key) == 12 and index.isdigit() else None


def stream_batch_is_new(
    stored: tuple[str, int] | None, micro_batch: tuple[str, int], *, start_over: bool, what: str
) -> bool:
    """Whether a stream's micro-batch ``(query id, batch id)`` is to be published into a target
    whose stream ledger row is ``stored`` (the query id and the highest batch id published
    there), or was published already (a batch Spark runs again after a crash: skip it).

    Another query id means a new checkpoint: its batch ids start again at 0, so nothing tells
    which of its batches the target holds. That is refused, naming the sink and the flag,
    unless the user said to start over (``Context.start_over``)."""
    if stored is None:
        return True
    query_id, batch_id = stored
    if query_id != micro_batch[0]:
        if start_over:
            return True
        raise PermanentError(
            f"{what}: the target took the batches of another stream query ({query_id}, up to "
            f"batch {batch_id}), and this checkpoint is a new one (query {micro_batch[0]}): "
            "its batches cannot be matched with what the target holds. To go on from this "
            "checkpoint with the target as it is, run once with `etl run --start-over`; to "
            "go on from where the target is, restore the old checkpoint"
        )
    return micro_batch[1] > batch_id


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


def merge_rejecting(
    execute: Callable[[str], object],
    merge: Callable[[str, str], object],
    staging: str,
    *,
    number: Callable[[], int],
    is_reject: Callable[[Exception], TypeGuard[E]],
) -> list[tuple[int, E]]:
    """The publish merge of ``on_reject: dead_letter`` (DESIGN §4 step 5), in the caller's open
    transaction; the loader keeps its SQL and its driver's errors, this keeps the control flow.

    ``merge(source, where)`` runs the merge statement over the rows of table ``source`` that
    match ``where`` (``""``: all of them, else ``" WHERE etl_row BETWEEN low AND high"``).
    Each merge runs in the savepoint :data:`MERGE_SAVEPOINT`, through ``execute(sql)``; an error
    for which ``is_reject(error)`` holds (the target refuses a row: a constraint, a bad value)
    rolls it back, and any other error propagates.

    First all of ``staging`` is merged at once. Only if that is refused, ``number()`` creates
    :data:`REJECT_ROWS` (the staged rows numbered ``1..n`` in column ``etl_row``) and returns
    ``n``, and :func:`bisect_rejects` merges them range by range. Returns ``(row_number,
    error)`` for each row refused on its own (``[]`` when the whole merge went through); every
    other row is merged. The caller reads the refused rows from :data:`REJECT_ROWS` and drops it.
    """

    def attempt(source: str, where: str = "") -> E | None:
        execute(f"SAVEPOINT {MERGE_SAVEPOINT}")
        try:
            merge(source, where)
        except Exception as exc:
            if not is_reject(exc):
                raise
            execute(f"ROLLBACK TO SAVEPOINT {MERGE_SAVEPOINT}")
            execute(f"RELEASE SAVEPOINT {MERGE_SAVEPOINT}")
            return exc
        execute(f"RELEASE SAVEPOINT {MERGE_SAVEPOINT}")
        return None

    if attempt(staging) is None:
        return []
    return list(
        bisect_rejects(
            number(),
            lambda low, high: attempt(REJECT_ROWS, f" WHERE etl_row BETWEEN {low} AND {high}"),
        )
    )
