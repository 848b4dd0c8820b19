"""Partition bounds, staging names and the reject bisection shared by the database connectors.

Pure Python: :func:`merge_rejecting` is checked here against a fake database that keeps
savepoints; the real databases (PostgreSQL, MySQL/MariaDB) are exercised by the plugins' tests.
"""

from __future__ import annotations

import datetime as dt
from typing import TypeGuard

import pytest

from etl_core.relational import partition_bounds, run_key_of_staging, staging_table


def covers(bounds, values):
    return all(sum(start <= v < stop for start, stop in bounds) == 1 for v in values)


def test_integer_ranges_cover_every_key_once():
    bounds = partition_bounds(1, 100, 8)
    assert len(bounds) == 8
    assert bounds[0][0] == 1 and bounds[-1][1] == 101
    assert covers(bounds, range(1, 101))


def test_fewer_keys_than_partitions():
    assert partition_bounds(5, 7, 10) == [(5, 6), (6, 7), (7, 8)]
    assert partition_bounds(3, 3, 4) == [(3, 4)]


def test_dates_and_timestamps():
    days = partition_bounds(dt.date(2026, 1, 1), dt.date(2026, 1, 31), 4)
    assert covers(days, [dt.date(2026, 1, d) for d in range(1, 32)])
    start = dt.datetime(2026, 1, 1)
    stamps = partition_bounds(start, start + dt.timedelta(hours=10), 5)
    assert len(stamps) == 5
    assert covers(stamps, [start + dt.timedelta(minutes=m) for m in range(0, 601, 7)])


def test_bad_partition_count():
    with pytest.raises(ValueError, match="at least 1"):
        partition_bounds(1, 2, 0)


def test_staging_names_round_trip():
    name = staging_table("0123456789ab", 2)
    assert name == "etl_stg_0123456789ab_2"
    assert run_key_of_staging(name) == "0123456789ab"
    assert run_key_of_staging("orders") is None


def test_bisect_isolates_every_refused_row_and_merges_the_rest():
    from etl_core.relational import bisect_rejects

    refused = {3, 4, 97}
    merged: set[int] = set()

    def attempt(low, high):
        rows = set(range(low, high + 1))
        if rows & refused:
            return f"rows {sorted(rows & refused)} break a constraint"
        merged.update(rows)
        return None

    found = list(bisect_rejects(100, attempt))
    assert [number for number, _ in found] == [3, 4, 97]
    assert found[0][1] == "rows [3] break a constraint"
    assert merged == set(range(1, 101)) - refused


class FakeTarget:
    """A target that refuses some staged rows: ``execute`` keeps savepoints over the merged
    rows, ``merge`` merges every row of the range before it fails, as a statement that a
    savepoint must undo."""

    def __init__(self, count: int, refused: set[int], broken: bool = False):
        self.count, self.refused, self.broken = count, refused, broken
        self.merged: set[int] = set()
        self.savepoints: list[set[int]] = []
        self.statements: list[str] = []
        self.numbered = 0

    def execute(self, sql: str) -> None:
        self.statements.append(sql)
        if sql == "SAVEPOINT etl_merge":
            self.savepoints.append(set(self.merged))
        elif sql == "ROLLBACK TO SAVEPOINT etl_merge":
            self.merged = set(self.savepoints[-1])
        elif sql == "RELEASE SAVEPOINT etl_merge":
            self.savepoints.pop()
        else:
            raise AssertionError(f"unexpected statement {sql!r}")

    def merge(self, source: str, where: str) -> None:
        if self.broken:
            raise ConnectionError("server closed the connection")
        if where:
            low, high = (int(n) for n in where.split("BETWEEN")[1].split("AND"))
            assert source == "etl_reject_rows" and self.numbered == self.count
        else:
            low, high = 1, self.count
            assert source == "etl_stg_x_0"
        rows = set(range(low, high + 1))
        self.merged |= rows
        if rows & self.refused:
            raise ValueError(f"row {min(rows & self.refused)} breaks a constraint")

    def number(self) -> int:
        self.numbered = self.count
        return self.count

    def run(self):
        from etl_core.relational import merge_rejecting

        return merge_rejecting(
            self.execute,
            self.merge,
            "etl_stg_x_0",
            number=self.number,
            is_reject=is_value_error,
        )


def is_value_error(exc: Exception) -> TypeGuard[ValueError]:
    return isinstance(exc, ValueError)


def test_merge_rejecting_keeps_the_rows_the_target_takes():
    target = FakeTarget(50, refused={7, 8, 50})
    found = target.run()
    assert [(n, str(e)) for n, e in found] == [
        (7, "row 7 breaks a constraint"),
        (8, "row 8 breaks a constraint"),
        (50, "row 50 breaks a constraint"),
    ]
    assert target.merged == set(range(1, 51)) - {7, 8, 50}
    assert target.savepoints == []  # every savepoint released
    assert target.statements.count("SAVEPOINT etl_merge") == target.statements.count(
        "RELEASE SAVEPOINT etl_merge"
    )


def test_merge_rejecting_numbers_nothing_when_the_merge_goes_through():
    target = FakeTarget(10, refused=set())
    assert target.run() == []
    assert target.numbered == 0
    assert target.merged == set(range(1, 11))
    assert target.statements == ["SAVEPOINT etl_merge", "RELEASE SAVEPOINT etl_merge"]


def test_merge_rejecting_lets_other_errors_through():
    target = FakeTarget(10, refused=set(), broken=True)
    with pytest.raises(ConnectionError):
        target.run()
    assert target.numbered == 0
    assert "ROLLBACK TO SAVEPOINT etl_merge" not in target.statements


def test_a_stream_batch_is_new_only_above_the_stored_one_of_the_same_query():
    from etl_core.errors import PermanentError
    from etl_core.relational import stream_batch_is_new

    def new(stored, mine, start_over=False):
        return stream_batch_is_new(stored, mine, start_over=start_over, what="sink 'db'")

    assert new(None, ("q1", 0))
    assert new(("q1", -1), ("q1", 0))  # the row a first publish inserts
    assert new(("q1", 4), ("q1", 5))
    assert not new(("q1", 5), ("q1", 5))  # run again after a crash: skipped
    assert not new(("q1", 5), ("q1", 3))
    with pytest.raises(PermanentError) as refused:
        new(("q1", 5), ("q2", 0))
    assert "sink 'db'" in str(refused.value) and "--start-over" in str(refused.value)
    assert new(("q1", 5), ("q2", 0), start_over=True)
