"""The built-in ``files`` extractor and loader through etl_core's conformance suites, on the
local file system (the same suites every connector runs)."""

from __future__ import annotations

import datetime as dt
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl_core import manifests
from etl_core.plugins import get_plugin_host
from etl_core.testing import ExtractorConformance, LoaderConformance, TypeCase

pytestmark = pytest.mark.spark

TYPE_CASES = [
    TypeCase("c_int32", "int32", (1, -(2**31), None), "int32"),
    TypeCase("c_bool", "bool_", (True, False, None), "bool_"),
    TypeCase("c_text", "string", ("héllo", "", None), "string"),
    TypeCase("c_date", "date32", (dt.date(2024, 2, 29), dt.date(1, 1, 1), None), "date32"),
    TypeCase(
        "c_ts",
        "timestamp[us, tz=UTC]",
        (dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC), None),
        pa.timestamp("us", tz="UTC"),
    ),
]
ARROW_TYPES = {"timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC")}


class FilesHooks:
    component = "files"
    type_cases = TYPE_CASES
    basic_types = {"id": "int64", "name": "string", "amount": "float64"}

    @pytest.fixture
    def conformance_host(self):
        return get_plugin_host(autoload=False)  # the built-ins alone

    @pytest.fixture
    def target(self, tmp_path):
        return str(tmp_path / f"t_{uuid.uuid4().hex[:8]}")

    def create_target(self, target, columns, rows=(), key=()):
        schema = pa.schema([(n, ARROW_TYPES.get(t) or getattr(pa, t)()) for n, t in columns])
        folder = pa_folder(target)
        chunks = [list(rows)[i::3] for i in range(3)] if rows else [[]]
        for i, chunk in enumerate(chunks):
            pq.write_table(pa.Table.from_pylist(chunk, schema=schema), folder / f"part-{i}.parquet")

    def add_rows(self, target, rows):
        path = pa_folder(target) / f"part-{uuid.uuid4().hex[:8]}.parquet"
        pq.write_table(pa.Table.from_pylist(list(rows), schema=self.basic_schema()), path)

    def read_target(self, target):
        """What a manifest reader sees: the files of published runs (or every data file of a
        folder no run published to yet)."""
        from pyarrow import fs as pafs

        local = pafs.LocalFileSystem()
        files = manifests.manifest_files(local, target)
        if files is None:
            files = sorted(manifests.data_files(local, target))
        rows = []
        for name in files:
            rows += pq.read_table(f"{target}/{name}").to_pylist()
        return rows

    def staging_leftovers(self, target):
        staging = pa_folder(target) / "_etl" / "tmp"
        return sorted(str(p) for p in staging.rglob("*") if p.is_file())


def pa_folder(target: str):
    from pathlib import Path

    folder = Path(target)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class TestFilesLoaderConformance(FilesHooks, LoaderConformance):
    def sink_block(self, target, **options):
        return {"type": "files", "path": target, "format": "parquet", **options}

    def failing_sink_block(self, target):
        blocker = pa_folder(target) / "not-a-folder"
        blocker.write_text("a file where the sink needs a folder")
        return {"type": "files", "path": str(blocker / "out"), "mode": "append"}


class TestFilesExtractorConformance(FilesHooks, ExtractorConformance):
    def source_block(self, target, **options):
        return {"type": "files", "path": target, "format": "parquet", **options}

    def partition_options(self, column, partitions):
        return {}

    def incremental_options(self):
        return {"by": "modified_time"}

    def stream_options(self):
        return {"read_schema": "id BIGINT, name STRING, amount DOUBLE"}

    def failing_source_block(self, target):
        return {"type": "files", "path": f"{target}/missing/*.parquet", "format": "parquet"}
