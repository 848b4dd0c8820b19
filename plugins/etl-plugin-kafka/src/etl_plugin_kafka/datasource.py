"""The Spark Python data source ``etl_kafka``: reading, each task reads its offset ranges of
topic partitions and yields Arrow batches; writing, each task produces its rows (the kafka
sink's publish). Imported on the executors from the installed package.

Reader options (strings): ``plan`` (JSON: ``client``, ``format``, ``splits``: one list of
ranges ``[topic, partition, start, end]`` per Spark partition), ``connection`` (JSON: the
client settings but the password), ``secret`` (JSON: the password or null, under that key so
that Spark redacts it from plans), ``what`` (the block, for errors).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs
import pyarrow as pa
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    DataSourceStreamReader,
    InputPartition,
    WriterCommitMessage,
)
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)
from pyspark.sql.types import StructType

from etl_core import PermanentError
from etl_core.datasources import arrow_schema
from etl_plugin_kafka.client import (
    META,
    ProducerSettings,
    Records,
    Settings,
    backend,
    commit_offsets,
    fill_splits,
    offset_of,
    producer,
    translate,
)

HEADERS = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))

log = logging.getLogger("etl.kafka")

NAME = "etl_kafka"
#: with a dead-letter sink, the json format adds this column: the text of each value that is
#: no JSON object of the read schema (null for the others)
UNREADABLE = "_etl_unreadable"


class KafkaDataSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return NAME

    def reader(self, schema: StructType) -> DataSourceReader:
        return KafkaReader(self.options, schema)

    def writer(self, schema: StructType, overwrite: bool) -> DataSourceArrowWriter:
        return KafkaWriter(self.options)

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        return KafkaStreamReader(self.options, schema)


def _settings(options: Mapping[str, str]) -> Settings:
    return attrs.evolve(
        Settings(**json.loads(options["connection"])),
        password=json.loads(options.get("secret", "null")),
    )


class KafkaReader(DataSourceReader):
    """One partition per split: a deterministic range, so a retried task reads the same."""

    def __init__(self, options: Mapping[str, str], schema: StructType):
        self.plan = json.loads(options["plan"])
        self.settings = _settings(options)
        self.what = options.get("what", "kafka source")
        self.schema = arrow_schema(schema)

    def partitions(self) -> list[InputPartition]:
        return [InputPartition(split) for split in self.plan["splits"]]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        return read_ranges(self.settings, self.plan, self.schema, self.what, partition.value)


def read_ranges(
    settings: Settings, plan: Mapping[str, Any], schema: pa.Schema, what: str, ranges: Any
) -> Iterator[pa.RecordBatch]:
    """A split's ranges ``[topic, partition, start, end]`` one after the other, with one
    consumer of ``plan["client"]``, as Arrow batches of ``schema`` in ``plan["format"]``."""
    where = what
    consumer = backend(settings, plan["client"], where)
    try:
        for topic, number, start, end in ranges:
            where = f"{what}, reading {topic}[{number}] offsets {start}..{end - 1}"
            for records in consumer.fetch(topic, number, start, end):
                try:
                    yield to_arrow(records, topic, number, plan["format"], schema)
                except ValueError as exc:
                    first, last = records.offsets[0], records.offsets[-1]
                    raise PermanentError(
                        f"{what}: {topic}[{number}] offsets {first}..{last}: {exc}"
                    ) from None
    except Exception as exc:  # noqa: BLE001 - every client error becomes a typed one
        raise translate(exc, where) from None
    finally:
        consumer.close()


class KafkaStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    """The topics as a stream. Offsets are ``{topic: {partition: next offset}}``, kept by
    Spark in the query's checkpoint: a restart resumes there. Each micro-batch reads from its
    start to its end offsets, which :meth:`latestOffset` fixes (at most ``max_records`` records
    with a read limit, spread over the partitions), in splits as a batch read makes them.
    ``commit`` arrives a batch late and nothing here depends on it.

    Options: ``plan`` (JSON: ``client``, ``format``, ``topics``, ``pattern``,
    ``starting_offsets``, ``max_records`` (or null), ``records_per_split`` (or null),
    ``parallelism``, ``group_id`` (or null)), ``connection``, ``secret``, ``what`` as the
    batch reader's."""

    def __init__(self, options: Mapping[str, str], schema: StructType):
        self.plan = json.loads(options["plan"])
        self.settings = _settings(options)
        self.what = options.get("what", "kafka source")
        self.schema = arrow_schema(schema)
        self.target: dict[str, dict[str, int]] | None = None
        self.recorded: dict | None = None
        #: where partitions that appeared after the stream began start (by starting_offsets)
        self.begins: dict[str, dict[str, int]] = {}

    def _watermarks(self) -> dict[str, dict[str, tuple[int, int]]]:
        consumer = backend(self.settings, self.plan["client"], self.what)
        try:
            marks: dict[str, dict[str, tuple[int, int]]] = {}
            for topic, partition in consumer.partitions(self.plan["topics"], self.plan["pattern"]):
                marks.setdefault(topic, {})[str(partition)] = consumer.watermarks(topic, partition)
            return marks
        except Exception as exc:  # noqa: BLE001 - every client error becomes a typed one
            raise translate(exc, self.what) from None
        finally:
            consumer.close()

    def initialOffset(self) -> dict:
        starting = self.plan["starting_offsets"]
        return {
            topic: {p: offset_of(starting, topic, int(p), low, high, "starting_offsets")
                    for p, (low, high) in parts.items()}
            for topic, parts in self._watermarks().items()
        }  # fmt: skip

    def getDefaultReadLimit(self) -> ReadLimit:
        limit = self.plan.get("max_records")
        return ReadAllAvailable() if limit is None else ReadMaxRows(int(limit))

    def prepareForTriggerAvailableNow(self) -> None:
        """``available_now``: read up to the ends there are now, and no further."""
        self.target = self.reportLatestOffset()

    def latestOffset(self, start: dict, limit: ReadLimit) -> dict:
        self._record(start)
        ends = self.target if self.target is not None else self.reportLatestOffset()
        begin = {t: {p: self._begin(start, t, p) for p in parts} for t, parts in ends.items()}
        if isinstance(limit, ReadMaxRows):
            return _capped(begin, ends, limit.max_rows)
        return {t: {p: max(begin[t][p], e) for p, e in parts.items()} for t, parts in ends.items()}

    def _begin(self, start: dict, topic: str, partition: str) -> int:
        """Where a batch reads ``topic[partition]`` from: the previous batch's end, or, for a
        partition that appeared since (a new topic matching the pattern), ``starting_offsets``
        within its offsets now (remembered: ``partitions`` asks again with the same start)."""
        if partition in start.get(topic, {}):
            return int(start[topic][partition])
        known = self.begins.get(topic, {}).get(partition)
        if known is None:
            low, high = self._watermarks().get(topic, {}).get(partition, (0, 0))
            starting = self.plan["starting_offsets"]
            known = offset_of(starting, topic, int(partition), low, high, "starting_offsets")
            self.begins.setdefault(topic, {})[partition] = known
        return known

    def reportLatestOffset(self) -> dict:
        """The partitions' ends now: Spark reports them, and etl the lag behind them."""
        return {t: {p: high for p, (_, high) in parts.items()}
                for t, parts in self._watermarks().items()}  # fmt: skip

    def partitions(self, start: dict, end: dict) -> list[InputPartition]:
        ranges = [
            [topic, int(p), self._begin(start, topic, p), stop]
            for topic, parts in end.items()
            for p, stop in parts.items()
        ]
        ranges = [r for r in ranges if r[2] < r[3]]
        total = sum(r[3] - r[2] for r in ranges)
        step = self.plan.get("records_per_split") or max(
            10_000, -(-total // int(self.plan.get("parallelism", 1)))
        )
        return [InputPartition(split) for split in fill_splits(ranges, step)]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        return read_ranges(self.settings, self.plan, self.schema, self.what, partition.value)

    def commit(self, end: dict) -> None:
        self._record(end)

    def _record(self, done: dict) -> None:
        """With ``group_id``: record ``done`` (offsets every record before which the query
        has processed) as that consumer group's offsets, for lag monitoring; nothing reads
        them back. Spark's ``commit`` comes a batch late, and not at all for a run's last
        batch; ``latestOffset``'s start is processed too, so both record."""
        group = self.plan.get("group_id")
        if group is None or not done or done == self.recorded:
            return
        try:
            commit_offsets(self.settings, self.plan["client"], group, done)
            self.recorded = done
        except Exception as exc:  # noqa: BLE001 - monitoring must never stop the stream
            log.warning("%s: could not commit offsets for group %r: %s", self.what, group, exc)


def _capped(
    begin: dict[str, dict[str, int]], ends: dict[str, dict[str, int]], most: int
) -> dict[str, dict[str, int]]:
    """End offsets that take at most ``most`` records in all, shared fairly: a round gives
    each partition with records left an equal part of what remains."""
    left = {(t, p): max(0, ends[t][p] - begin[t][p]) for t in ends for p in ends[t]}
    taken = dict.fromkeys(left, 0)
    budget = most
    while budget > 0:
        open_ = [k for k in left if left[k] > taken[k]]
        if not open_:
            break
        share = max(1, budget // len(open_))
        for key in open_:
            take = min(share, left[key] - taken[key], budget)
            taken[key] += take
            budget -= take
            if budget == 0:
                break
    return {t: {p: begin[t][p] + taken[t, p] for p in ends[t]} for t in ends}


class _Produced(WriterCommitMessage):
    def __init__(self, records: int):
        self.records = records


class KafkaWriter(DataSourceArrowWriter):
    """Produces each task's rows (columns ``key``, ``value``: binary, ``headers``) to the
    topic, and returns once every one is acknowledged. Options: ``connection``, ``secret``
    and ``what`` as the reader's, ``produce`` (JSON: :class:`ProducerSettings`), ``client``."""

    def __init__(self, options: Mapping[str, str]):
        self.settings = _settings(options)
        self.produce = ProducerSettings(**json.loads(options["produce"]))
        self.client = options["client"]
        self.what = options.get("what", "kafka sink")

    def write(self, iterator: Iterator[pa.RecordBatch]) -> WriterCommitMessage:
        where = f"{self.what}, producing to {self.produce.topic}"
        client = producer(self.settings, self.client, self.produce, where)
        count = 0
        try:
            for batch in iterator:
                keys, values = batch.column("key").to_pylist(), batch.column("value").to_pylist()
                headers = batch.column("headers").to_pylist()
                for key, value, pairs in zip(keys, values, headers, strict=True):
                    client.send(key, value, [(h["key"], h["value"]) for h in pairs or ()])
                count += batch.num_rows
            client.flush()
        except Exception as exc:  # noqa: BLE001 - every client error becomes a typed one
            raise translate(exc, where) from None
        finally:
            client.close()
        return _Produced(count)

    def commit(self, messages: list[WriterCommitMessage | None]) -> None:
        """Nothing to do: each task's records were acknowledged before it returned."""

    def abort(self, messages: list[WriterCommitMessage | None]) -> None:
        """Nothing can be taken back from a topic: the sink is at-least-once."""


def _text(values: Sequence[bytes | None]) -> list[str | None]:
    return [None if v is None else v.decode("utf-8", errors="replace") for v in values]


def to_arrow(
    records: Records, topic: str, partition: int, fmt: str, schema: pa.Schema
) -> pa.RecordBatch:
    """The records as a batch of ``schema`` (the read's Arrow schema): the key and value (or,
    for ``json``, the value's fields), then the Kafka columns."""
    n = len(records)
    if any(records.headers):
        pairs = [[{"key": k, "value": v} for k, v in h] for h in records.headers]
        headers = pa.array(pairs, HEADERS)
    else:
        headers = pa.array([[]] * n, HEADERS)
    meta = {
        "topic": pa.array([topic] * n, pa.string()),
        "partition": pa.array([partition] * n, pa.int32()),
        "offset": pa.array(records.offsets, pa.int64()),
        "timestamp": pa.array(records.timestamps, pa.timestamp("ms", tz="UTC")),
        "headers": headers,
    }
    keys, values = records.keys, records.values
    if fmt == "json":
        parsed, bad = parse_json(values, schema)
        if bad and UNREADABLE not in schema.names:
            raise ValueError(
                f"{len(bad)} value(s) are not a JSON object of the read schema, the first at "
                f"offset {records.offsets[bad[0]]}; fix `read_schema`, or add a dead-letter sink "
                "(`errors: {dead_letter: ...}`) to route such records there"
            )
        columns = {name: parsed.column(name).combine_chunks() for name in parsed.column_names}
        columns["key"] = pa.array(_text(keys), pa.string())
        unreadable: list[str | None] = [None] * n
        for i, text in zip(bad, _text([values[i] for i in bad]), strict=True):
            unreadable[i] = text
        columns[UNREADABLE] = pa.array(unreadable, pa.string())
    elif fmt == "string":
        columns = {"key": pa.array(_text(keys)), "value": pa.array(_text(values))}
    else:
        columns = {"key": pa.array(keys, pa.binary()), "value": pa.array(values, pa.binary())}
    columns.update(meta)
    arrays = [columns[field.name].cast(field.type) for field in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _as_text(kind: pa.DataType) -> bool:
    return pa.types.is_date(kind) or pa.types.is_timestamp(kind) or pa.types.is_decimal(kind)


def _read(lines: Sequence[bytes], options: Any, schema: pa.Schema) -> pa.Table:
    """One row of ``schema`` per line; ``ArrowInvalid`` when a line is no JSON object of it."""
    import pyarrow.json as pj

    table = pj.read_json(pa.py_buffer(b"\n".join(lines)), parse_options=options)
    if table.num_rows != len(lines):
        raise pa.ArrowInvalid("a line holds more than one JSON value")
    return table.cast(schema)  # text to dates, timestamps, decimals: may fail too


def _unreadable(lines: Sequence[bytes], options: Any, schema: pa.Schema, first: int) -> list[int]:
    """The indices of the lines that are no JSON object of ``schema``, found by halving: a
    batch without one costs one parse, each bad line about two parses per halving."""
    try:
        _read(lines, options, schema)
    except pa.ArrowInvalid:
        if len(lines) == 1:
            return [first]
        half = len(lines) // 2
        return _unreadable(lines[:half], options, schema, first) + _unreadable(
            lines[half:], options, schema, first + half
        )
    return []


def parse_json(values: Sequence[bytes | None], schema: pa.Schema) -> tuple[pa.Table, list[int]]:
    """The JSON values' fields named by ``schema`` (the value fields come first in it; Kafka's
    columns and the marker follow and are ignored here), one row per value, and the indices
    of the values that are not a JSON object of those fields (their rows are nulls). A null
    value (a tombstone) is a row of nulls."""
    import pyarrow.json as pj

    fields = pa.schema([f for f in schema if f.name not in (*META, "key", UNREADABLE)])
    wire = pa.schema([f.with_type(pa.string()) if _as_text(f.type) else f for f in fields])
    # a JSON text holds a raw newline only as whitespace: one value per line is safe
    lines = [b"{}" if v is None else v.replace(b"\n", b" ").replace(b"\r", b" ") for v in values]
    options = pj.ParseOptions(explicit_schema=wire, unexpected_field_behavior="ignore")
    try:
        return _read(lines, options, fields), []
    except pa.ArrowInvalid:
        bad = _unreadable(lines, options, fields, 0)
    for i in bad:
        lines[i] = b"{}"
    return _read(lines, options, fields), bad
