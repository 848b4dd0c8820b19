"""Partition bounds and staging names shared by the database connectors."""

from __future__ import annotations

import datetime as dt

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
