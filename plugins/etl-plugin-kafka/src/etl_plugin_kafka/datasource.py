"""The Spark Python data source ``etl_kafka``: each task reads one offset range of one topic
partition and yields Arrow batches. Imported on the executors from the installed package.

Options (strings): ``plan`` (JSON: ``client``, ``format``, ``splits``: ``[topic, partition,
start, end]`` each), ``connection`` (JSON: the client settings but the password), ``secret``
(JSON: the password or null, under that key so that Spark redacts it from plans), ``what``
(the block, for errors).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import attrs
import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
from pyspark.sql.types import StructType

from etl_core import PermanentError
from etl_core.datasources import arrow_schema
from etl_plugin_kafka.client import META, Record, Settings, backend, translate

HEADERS = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))

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


def _text(values: Sequence[bytes | None]) -> list[str | None]:
    return [None if v is None else v.decode("utf-8", errors="replace") for v in values]


def to_arrow(
    records: Sequence[Record], topic: str, partition: int, fmt: str, schema: pa.Schema
) -> pa.RecordBatch:
    """The records as a batch of ``schema`` (the read's Arrow schema): the key and value (or,
    for ``json``, the value's fields), then the Kafka columns."""
    n = len(records)
    meta = {
        "topic": pa.array([topic] * n, pa.string()),
        "partition": pa.array([partition] * n, pa.int32()),
        "offset": pa.array([r.offset for r in records], pa.int64()),
        "timestamp": pa.array(
            [None if r.timestamp_ms is None else r.timestamp_ms * 1000 for r in records],
            pa.timestamp("us", tz="UTC"),
        ),
        "headers": pa.array(
            [[{"key": k, "value": v} for k, v in r.headers] for r in records], HEADERS
        ),
    }
    keys = [r.key for r in records]
    values = [r.value for r in records]
    if fmt == "json":
        parsed = parse_json(values, schema)
        columns = {name: parsed.column(name).combine_chunks() for name in parsed.column_names}
        columns["key"] = pa.array(_text(keys), pa.string())
    elif fmt == "string":
        columns = {"key": pa.array(_text(keys)), "value": pa.array(_text(values))}
    else:
        columns = {"key": pa.array(keys, pa.binary()), "value": pa.array(values, pa.binary())}
    columns.update(meta)
    arrays = [columns[field.name].cast(field.type) for field in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _as_text(kind: pa.DataType) -> bool:
    return pa.types.is_date(kind) or pa.types.is_timestamp(kind) or pa.types.is_decimal(kind)


def parse_json(values: Sequence[bytes | None], schema: pa.Schema) -> pa.Table:
    """The JSON values' fields named by ``schema`` (the value fields come first in it; Kafka's
    columns follow and are ignored here). A null value (a tombstone) is a row of nulls. Raises
    ``ValueError`` naming the first value that is not a JSON object."""
    import json

    import pyarrow.json as pj

    fields = [f for f in schema if f.name not in (*META, "key")]
    value_schema = pa.schema(fields)
    wire = pa.schema([f.with_type(pa.string()) if _as_text(f.type) else f for f in fields])
    # a JSON text holds a raw newline only as whitespace: one value per line is safe
    lines = [b"{}" if v is None else v.replace(b"\n", b" ").replace(b"\r", b" ") for v in values]
    options = pj.ParseOptions(explicit_schema=wire, unexpected_field_behavior="ignore")
    try:
        table = pj.read_json(pa.py_buffer(b"\n".join(lines)), parse_options=options)
    except pa.ArrowInvalid:
        for i, value in enumerate(lines):
            try:
                if not isinstance(json.loads(value), dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                raise ValueError(f"record {i} of the batch is not a JSON object: {exc}") from None
        raise
    if table.num_rows != len(values):
        raise ValueError(f"{len(values)} values gave {table.num_rows} JSON rows")
    return table.cast(value_schema)
