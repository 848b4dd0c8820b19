"""The kafka source through etl_core's extractor suite, with each client, against the
librdkafka mock cluster (the `kafka_cluster` fixture of this plugin's pytest plugin). Rows are
JSON values spread over the topic's partitions; `format: json` reads them back with the
columns as `read_schema`."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import pyarrow as pa
import pytest

from etl_core.testing import ExtractorConformance, LoaderConformance, TypeCase

pytestmark = pytest.mark.spark

PARTITIONS = 4
TYPE_CASES = [
    TypeCase("c_int", "INT", (1, -(2**31), None), "int32"),
    TypeCase("c_bool", "BOOLEAN", (True, False, None), "bool_"),
    TypeCase("c_text", "STRING", ("héllo", "", None), "string"),
    TypeCase("c_date", "DATE", (dt.date(2024, 2, 29), dt.date(1, 1, 1), None), "date32"),
    TypeCase(
        "c_ts",
        "TIMESTAMP",
        (dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC), None),
        pa.timestamp("us", tz="UTC"),
    ),
    TypeCase("c_dec", "DECIMAL(12,3)", (decimal.Decimal("12.345"), None), pa.decimal128(12, 3)),
]


def _encode(value):
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError(type(value).__name__)


class KafkaHooks:
    component = "kafka"
    client = "confluent"
    type_cases = TYPE_CASES
    basic_types = {"id": "BIGINT", "name": "STRING", "amount": "DOUBLE"}
    no_refusal = (
        "librdkafka's mock cluster checks no SASL login: test bad credentials on a real broker"
    )

    @pytest.fixture(autouse=True)
    def _cluster(self, kafka_cluster):
        self.cluster = kafka_cluster
        self.schemas = {}

    @pytest.fixture
    def target(self):
        return self.cluster.topic(PARTITIONS)

    def create_target(self, target, columns, rows=(), key=()):
        self.schemas[target] = ", ".join(f"`{n}` {t}" for n, t in columns)
        self.add_rows(target, rows)

    def add_rows(self, target, rows):
        records = (
            (str(i).encode(), json.dumps(row, default=_encode).encode(), i % PARTITIONS)
            for i, row in enumerate(rows)
        )
        self.cluster.produce(target, records)

    def source_block(self, target, **options):
        return {
            "type": "kafka",
            "client": self.client,
            "connection": self.cluster.connection(self.client),
            "topics": [target],
            "format": "json",
            "read_schema": self.schemas.get(target, "id BIGINT, name STRING, amount DOUBLE"),
            **options,
        }

    def incremental_options(self):
        return {"by": "offset"}

    def partition_options(self, column, partitions):
        # Kafka splits by offset ranges, not by a column: more partitions, smaller ranges
        return {"records_per_split": max(1, 64 // partitions)}

    def failing_source_block(self, target):
        return {**self.source_block(target), "topics": ["etl-no-such-topic"]}

    def unreachable_options(self):
        return {"connection": {**self.cluster.connection(self.client),
                               "bootstrap_servers": "127.0.0.1:1", "timeout_s": 2}}  # fmt: skip


class TestKafkaConfluentExtractorConformance(KafkaHooks, ExtractorConformance):
    client = "confluent"


class TestKafkaPythonExtractorConformance(KafkaHooks, ExtractorConformance):
    client = "kafka-python"


#: what a row's JSON value holds for each type (the loader's mapping: Spark's `to_json`)
SINK_TYPE_CASES = [
    TypeCase("c_int", "INT", (1, -(2**31), None), "int32"),
    TypeCase("c_bool", "BOOLEAN", (True, False, None), "bool_"),
    TypeCase("c_text", "STRING", ("héllo", "", None), "string"),
    TypeCase("c_date", "DATE", (dt.date(2024, 2, 29), None), "date32", native=("2024-02-29", None)),
    TypeCase(
        "c_ts",
        "TIMESTAMP",
        (dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC), None),
        pa.timestamp("us", tz="UTC"),
        native=("2024-01-02T03:04:05.000006Z", None),
    ),
    TypeCase(
        "c_dec",
        "DECIMAL(12,3)",
        (decimal.Decimal("12.345"), None),
        pa.decimal128(12, 3),
        native=(12.345, None),
    ),
]


class KafkaSinkHooks(KafkaHooks):
    """Targets are topics; rows are JSON values (`format: json`), read back decoded."""

    type_cases = SINK_TYPE_CASES

    @pytest.fixture(autouse=True)
    def _staging(self, tmp_path_factory):
        self.staging = tmp_path_factory.mktemp("kafka-staging")

    def read_target(self, target):
        return [json.loads(value) for _key, value, _headers in self.cluster.records(target)]

    def sink_block(self, target, **options):
        return {
            "type": "kafka",
            "client": self.client,
            "connection": self.cluster.connection(self.client),
            "topic": target,
            "staging": str(self.staging / target),
            **options,
        }

    def failing_sink_block(self, target):
        return {**self.sink_block(target), "topic": "etl-no-such-topic"}

    def staging_leftovers(self, target):
        return sorted(str(p) for p in (self.staging / target / "tmp").rglob("*") if p.is_file())


class TestKafkaConfluentLoaderConformance(KafkaSinkHooks, LoaderConformance):
    client = "confluent"


class TestKafkaPythonLoaderConformance(KafkaSinkHooks, LoaderConformance):
    client = "kafka-python"

    def test_sigkill_during_staging_leaves_target_and_next_run_cleans_up(self):
        pytest.skip(
            "the kill lands in the staging, a Spark Parquet write that is the same whichever "
            "client publishes: TestKafkaConfluentLoaderConformance runs it (saves 14 s of CI)"
        )
