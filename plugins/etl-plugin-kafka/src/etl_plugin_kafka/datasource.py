"""The Spark Python data source ``etl_kafka``: each task reads one offset range of one topic
partition and yields Arrow batches. Imported on the executors from the installed package.

Options (strings): ``plan`` (JSON: ``client``, ``format``, ``splits``: ``[topic, partition,
start, end]`` each), ``connection`` (JSON: the client settings but the password), ``secret``
(JSON: the password or null, under that key so that Spark redacts it from plans), ``what``
(the block, for errors).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import attrs
import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
from pyspark.sql.types import StructType

from etl_core import PermanentError
from etl_core.datasources import arrow_schema
from etl_plugin_kafka.client import Settings, backend, to_arrow, translate

NAME = "etl_kafka"


class KafkaDataSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return NAME

    def reader(self, schema: StructType) -> DataSourceReader:
        return KafkaReader(self.options, schema)


class KafkaReader(DataSourceReader):
    """One partition per split: a deterministic range, so a retried task reads the same."""

    def __init__(self, options: dict[str, str], schema: StructType):
        self.plan = json.loads(options["plan"])
        self.settings = attrs.evolve(
            Settings(**json.loads(options["connection"])),
            password=json.loads(options.get("secret", "null")),
        )
        self.what = options.get("what", "kafka source")
        self.schema = arrow_schema(schema)

    def partitions(self) -> list[InputPartition]:
        return [InputPartition(tuple(split)) for split in self.plan["splits"]]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        topic, number, start, end = partition.value
        where = f"{self.what}, reading {topic}[{number}] offsets {start}..{end - 1}"
        consumer = backend(self.settings, self.plan["client"], where)
        try:
            for records in consumer.fetch(topic, number, start, end):
                try:
                    yield to_arrow(records, topic, number, self.plan["format"], self.schema)
                except ValueError as exc:
                    first, last = records[0].offset, records[-1].offset
                    raise PermanentError(
                        f"{self.what}: {topic}[{number}] offsets {first}..{last}: {exc}"
                    ) from None
        except Exception as exc:  # noqa: BLE001 - every client error becomes a typed one
            raise translate(exc, where) from None
        finally:
            consumer.close()
