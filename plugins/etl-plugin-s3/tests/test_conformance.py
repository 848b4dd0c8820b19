"""The s3 extractor and loader through etl_core's conformance suites, on a moto server."""

from __future__ import annotations

import datetime as dt
import io
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl_core.testing import (
    SECRET_MARKER,
    ExtractorConformance,
    LoaderConformance,
    TypeCase,
    moto_process,
)

pytestmark = pytest.mark.spark

TYPE_CASES = [
    TypeCase("c_int32", "int32", (1, -(2**31), None), "int32"),
    TypeCase("c_float32", "float32", (1.5, -2.25, None), "float32"),
    TypeCase("c_bool", "bool_", (True, False, None), "bool_"),
    TypeCase("c_text", "string", ("héllo", "", None), "string"),
    TypeCase("c_binary", "binary", (b"\x00\xff", b"", None), "binary"),
    TypeCase("c_date", "date32", (dt.date(2024, 2, 29), dt.date(1, 1, 1), None), "date32"),
    TypeCase(  # Spark TIMESTAMP: UTC instants
        "c_ts",
        "timestamp[us, tz=UTC]",
        (
            dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
            dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
            None,
        ),
        pa.timestamp("us", tz="UTC"),
    ),
    TypeCase(  # no time zone: Spark TIMESTAMP_NTZ
        "c_ts_ntz",
        "timestamp[us]",
        (dt.datetime(2024, 1, 2, 3, 4, 5, 6), None),
        pa.timestamp("us"),
    ),
    TypeCase(  # nanoseconds are read as microseconds (Spark's precision); the sink writes us
        "c_ts_ns",
        "timestamp[ns]",
        (dt.datetime(2024, 1, 2, 3, 4, 5, 6), None),
        pa.timestamp("us"),
        loadable=False,
    ),
]
#: native types that are not a pyarrow factory without arguments
ARROW_TYPES = {
    "timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC"),
    "timestamp[us]": pa.timestamp("us"),
    "timestamp[ns]": pa.timestamp("ns"),
}


@pytest.fixture(scope="module")
def auth_moto(tmp_path_factory):
    """A moto server that checks every request's key and signature from the first call."""
    with moto_process(tmp_path_factory.mktemp("moto-auth") / "moto.log", no_auth_calls=0) as s:
        yield s


class S3Hooks:
    component = "s3"
    type_cases = TYPE_CASES
    basic_types = {"id": "int64", "name": "string", "amount": "float64"}

    @pytest.fixture(autouse=True)
    def _server(self, moto_server, bucket, s3h, request):
        self.endpoint, self.bucket, self.h = moto_server.endpoint_url, bucket, s3h
        self.request = request
        self.s3 = s3h.client(self.endpoint)

    @pytest.fixture
    def target(self):
        return f"t_{uuid.uuid4().hex[:8]}"

    def credential_values(self):
        return {"access_key_id": "etl-test-key", "secret_access_key": SECRET_MARKER}

    def refused_credentials(self):
        server = self.request.getfixturevalue("auth_moto")  # the usual one accepts any key
        refused = {"secret_access_key": f"wrong-{SECRET_MARKER}"}
        return refused, {"endpoint_url": server.endpoint_url}

    def block(self, target, **options):
        return {
            "type": "s3",
            "bucket": self.bucket,
            "prefix": target,
            "endpoint_url": self.endpoint,
            "region": self.h.REGION,
            "format": "parquet",
            **options,
        }

    def create_target(self, target, columns, rows=(), key=()):
        schema = pa.schema([(n, ARROW_TYPES.get(t) or getattr(pa, t)()) for n, t in columns])
        chunks = [list(rows)[i::3] for i in range(3)] if rows else [[]]
        for i, chunk in enumerate(chunks):
            self.put(f"{target}/part-{i}.parquet", pa.Table.from_pylist(chunk, schema=schema))

    def add_rows(self, target, rows):
        table = pa.Table.from_pylist(list(rows), schema=self.basic_schema())
        self.put(f"{target}/part-{uuid.uuid4().hex[:8]}.parquet", table)

    def put(self, key, table):
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=buffer.getvalue())

    def read_target(self, target):
        from etl_plugin_s3.client import Connection

        from etl_core import manifests

        fs = Connection(self.h.REGION, self.endpoint, self.h.KEY, "x").filesystem()
        root = f"{self.bucket}/{target}"
        files = manifests.manifest_files(fs, root)
        if files is None:
            files = sorted(manifests.data_files(fs, root))
        rows = []
        for name in files:
            with fs.open_input_file(f"{root}/{name}") as source:
                table = pq.read_table(source)
            folders = dict(p.split("=", 1) for p in name.split("/")[:-1] if "=" in p)
            rows += [{**row, **folders} for row in table.to_pylist()]  # partition_by columns
        return rows

    def unreachable_options(self):
        return {"endpoint_url": "http://127.0.0.1:9"}  # nothing listens on the discard port

    def staging_leftovers(self, target):
        return self.h.keys(self.s3, self.bucket, f"{target}/_etl/tmp/")


class TestS3LoaderConformance(S3Hooks, LoaderConformance):
    def sink_block(self, target, **options):
        # objects of 1 MiB: the killed-run case sees staging within seconds (an object shows
        # only once its upload completes), not after 128 MiB of parquet (2.5 minutes here)
        return self.block(target, target_file_size_mb=1, **options)

    def failing_sink_block(self, target):
        return {**self.block(target, mode="append"), "bucket": "etl-no-such-bucket-here"}

    def partitioned_sink_options(self, column):
        return {"partition_by": [column]}


class TestS3ExtractorConformance(S3Hooks, ExtractorConformance):
    def source_block(self, target, **options):
        return self.block(target, **options)

    def partition_options(self, column, partitions):
        return {"split_row_groups": partitions % 2 == 1}

    def incremental_options(self):
        return {"by": "modified_time"}

    def failing_source_block(self, target):
        return {**self.block(target), "bucket": "etl-no-such-bucket-here"}
