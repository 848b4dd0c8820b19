"""How many files the `files` sink writes: none without rows, `max_files`, `target_file_rows`."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from etl_core.builtins.files import data_files

pytestmark = pytest.mark.spark


def pipeline(tmp_path, rows, **sink):
    (tmp_path / "in.csv").write_text("id,kind\n" + "".join(f"{i},k{i % 2}\n" for i in rows))
    return {
        "name": "few_rows",
        "sources": {"events": {"type": "files", "format": "csv", "path": "in.csv",
                               "read_schema": "id BIGINT, kind STRING"}},
        "transforms": {"by_kind": {"type": "aggregate", "inputs": ["events"],
                                   "group_by": ["kind"], "aggregations": {"n": "count(*)"}}},
        "sinks": {"out": {"type": "files", "input": "by_kind", "path": "out", **sink}},
    }  # fmt: skip


def parts(folder):
    return sorted(folder / p for p in data_files(folder))


@pytest.mark.parametrize("format", ["csv", "parquet", "jsonl"])
def test_parts_without_rows_are_not_published(etl_run, etl_spark, tmp_path, format):
    """Two groups over the shared session's 4 shuffle partitions: at most two files, with rows."""
    etl_spark.conf.set("spark.sql.adaptive.enabled", "false")  # keep the 8 partitions
    try:
        etl_run(pipeline(tmp_path, range(6), format=format))
    finally:
        etl_spark.conf.unset("spark.sql.adaptive.enabled")
    found = parts(tmp_path / "out")
    assert 1 <= len(found) <= 2, found
    for part in found:
        if format == "parquet":
            assert pq.read_metadata(part).num_rows > 0, part
        else:
            lines = part.read_text().splitlines()
            assert len(lines) > (1 if format == "csv" else 0), part


def test_max_files_and_target_file_rows(etl_run, tmp_path):
    spec = pipeline(tmp_path, range(5), format="csv", max_files=1)
    spec["sinks"]["out"]["input"] = "events"
    etl_run(spec)
    (one,) = parts(tmp_path / "out")
    assert len(one.read_text().splitlines()) == 1 + 5
    spec["sinks"]["out"].update(mode="overwrite", target_file_rows=2)
    etl_run(spec)
    found = parts(tmp_path / "out")
    assert sorted(len(p.read_text().splitlines()) - 1 for p in found) == [1, 2, 2]


def test_an_empty_parquet_output_keeps_one_file_for_its_schema(etl_run, tmp_path):
    etl_run(pipeline(tmp_path, []))
    (one,) = parts(tmp_path / "out")
    table = pq.read_table(one)
    assert table.num_rows == 0 and table.column_names == ["kind", "n"]
