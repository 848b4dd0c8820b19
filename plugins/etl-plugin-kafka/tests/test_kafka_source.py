"""The kafka source's own behaviour, with each client, against the librdkafka mock cluster:
the Kafka columns of each format, explicit offsets and patterns, malformed JSON, and what
`etl validate` refuses."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from etl_core import ConfigError, EtlError, config
from etl_core.plugins import get_plugin_host

pytestmark = pytest.mark.spark
CLIENTS = ["confluent", "kafka-python"]


def pipeline(source, tmp_path, **extra):
    return {
        "name": "kafka_source",
        "sources": {"src": {"type": "kafka", **source}},
        "sinks": {"out": {"type": "files", "input": "src", "path": str(tmp_path / "out")}},
        **extra,
    }


def read_out(tmp_path):
    return sorted(
        pq.read_table(tmp_path / "out").to_pylist(), key=lambda r: (r["partition"], r["offset"])
    )


@pytest.mark.parametrize("client", CLIENTS)
def test_bytes_and_string_carry_every_kafka_column(kafka_cluster, etl_run, tmp_path, client):
    topic = kafka_cluster.topic(2)
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka_cluster.bootstrap})
    producer.produce(topic, key=b"k1", value=b"v1", partition=0, headers=[("h", b"x")],
                     timestamp=1_700_000_000_000)  # fmt: skip
    producer.produce(topic, key=None, value=None, partition=1)  # a tombstone
    assert producer.flush(10) == 0
    source = {"connection": kafka_cluster.connection(client), "topics": [topic],
              "client": client}  # fmt: skip
    etl_run(pipeline(source, tmp_path), plugins=True)
    first, tombstone = read_out(tmp_path)
    assert (first["key"], first["value"], first["topic"], first["offset"]) == (
        b"k1",
        b"v1",
        topic,
        0,
    )
    assert first["headers"] == [{"key": "h", "value": b"x"}]
    assert first["timestamp"].timestamp() == 1_700_000_000
    assert (tombstone["key"], tombstone["value"], tombstone["partition"]) == (None, None, 1)
    etl_run(pipeline({**source, "format": "string"}, tmp_path / "s"), plugins=True)
    strings = read_out(tmp_path / "s")
    assert (strings[0]["key"], strings[0]["value"]) == ("k1", "v1")


@pytest.mark.parametrize("client", CLIENTS)
def test_explicit_offsets_and_a_pattern_read_exactly_that_range(
    kafka_cluster, etl_run, tmp_path, client
):
    topic = kafka_cluster.topic(2, prefix="etl-pattern")
    kafka_cluster.produce(topic, ((None, str(i).encode(), i % 2) for i in range(20)))
    source = {
        "connection": kafka_cluster.connection(client),
        "pattern": f"{topic}",
        "client": client,
        "format": "string",
        "starting_offsets": {topic: {0: 2, 1: 0}},
        "ending_offsets": {topic: {0: 5, 1: 1}},
    }
    etl_run(pipeline(source, tmp_path), plugins=True)
    got = [(r["partition"], r["offset"], r["value"]) for r in read_out(tmp_path)]
    assert got == [(0, 2, "4"), (0, 3, "6"), (0, 4, "8"), (1, 0, "1")]


def produce_json(kafka_cluster, topic, partitions, count, bad_every):
    """``count`` JSON objects round-robin over ``partitions``; every ``bad_every``-th value is
    broken in one of three ways. Returns the broken values."""
    broken = [b"not json", b"[1, 2]", b'{"id": "seven", "amount": 1.5}']
    records, bad = [], []
    for i in range(count):
        value = json.dumps({"id": i, "amount": i / 2, "note": "x" * (i % 7)}).encode()
        if i % bad_every == bad_every - 1:
            value = broken[len(bad) % 3]
            bad.append(value)
        records.append((str(i).encode(), value, i % partitions))
    kafka_cluster.produce(topic, records)
    return bad


def test_malformed_json_goes_to_the_dead_letters_with_its_offset(kafka_cluster, etl_run, tmp_path):
    """The parsing is the same whichever client fetched the records: one client here."""
    client = "confluent"
    topic = kafka_cluster.topic(3)
    bad = produce_json(kafka_cluster, topic, 3, 3000, bad_every=50)
    source = {"connection": kafka_cluster.connection(client), "topics": [topic],
              "client": client, "format": "json", "records_per_split": 400,
              "read_schema": "id BIGINT, amount DOUBLE, note STRING"}  # fmt: skip
    dlq = {"dead_letter": {"type": "files", "path": str(tmp_path / "dlq")}}
    metrics = etl_run(pipeline(source, tmp_path, errors=dlq), plugins=True)
    extract = metrics.stage("src", "extract")
    assert (extract.rows_in, extract.rows_out, extract.dead_lettered) == (3000, 2940, 60)
    rows = read_out(tmp_path)
    assert len(rows) == 2940 and {r["id"] for r in rows} == {i for i in range(3000) if i % 50 != 49}
    assert all(int(r["key"]) == r["id"] and r["amount"] == r["id"] / 2 for r in rows)
    letters = [
        json.loads(line)
        for path in (tmp_path / "dlq").rglob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert sorted(r["row"].encode() for r in letters) == sorted(bad)
    # the position names the record: produced round-robin, value i sits at i // 3 of i % 3
    positions = {r["source_position"] for r in letters}
    assert positions == {f"{topic}[{i % 3}]@{i // 3}" for i in range(49, 3000, 50)}
    assert {r["errors"][0]["rule"] for r in letters} == {"malformed"}
    assert {(r["stage"], r["component"], r["dataset"]) for r in letters} == {
        ("extract", "kafka", "src")
    }


def test_malformed_json_without_a_dead_letter_sink_fails_naming_where(
    kafka_cluster, etl_run, tmp_path
):
    topic = kafka_cluster.topic(1)
    values = [json.dumps({"id": 1}).encode(), b"not json", json.dumps({"id": 3}).encode()]
    kafka_cluster.produce(topic, ((None, v, 0) for v in values))
    source = {"connection": kafka_cluster.connection(), "topics": [topic],
              "format": "json", "read_schema": "id BIGINT"}  # fmt: skip
    with pytest.raises(EtlError) as failure:
        etl_run(pipeline(source, tmp_path), plugins=True)
    text = str(failure.value)
    assert f"{topic}[0] offsets 0..2" in text and "the first at offset 1" in text, text
    assert "add a dead-letter sink" in text


def test_incremental_runs_read_each_record_once(kafka_cluster, etl_run, tmp_path):
    """The bookmark's shape and new records across partitions; the suites' incremental case
    runs with both clients."""
    client = "confluent"
    topic = kafka_cluster.topic(2)
    kafka_cluster.produce(topic, ((None, str(i).encode(), i % 2) for i in range(10)))
    source = {"connection": kafka_cluster.connection(client), "topics": [topic],
              "client": client, "format": "string", "incremental": {"by": "offset"}}  # fmt: skip
    spec = pipeline(source, tmp_path)
    spec["sinks"]["out"]["mode"] = "append"
    first = etl_run(spec, plugins=True)
    assert first.stage("src", "extract").rows_out == 10
    state = json.loads((tmp_path / ".etl" / "state" / "kafka_source.json").read_text())
    assert state == {"src": {topic: {"0": 5, "1": 5}}}
    kafka_cluster.produce(topic, ((None, str(i).encode(), i % 2) for i in range(10, 13)))
    assert etl_run(spec, plugins=True).stage("src", "extract").rows_out == 3
    assert etl_run(spec, plugins=True).stage("src", "extract").rows_out == 0
    values = sorted(int(r["value"]) for r in read_out(tmp_path))
    assert values == list(range(13))


def test_a_failed_run_leaves_the_offsets_bookmark_where_it_was(kafka_cluster, etl_run, tmp_path):
    topic = kafka_cluster.topic(1)
    kafka_cluster.produce(topic, ((None, b"1", 0), (None, b"2", 0)))
    source = {"connection": kafka_cluster.connection(), "topics": [topic],
              "format": "string", "incremental": {"by": "offset"}}  # fmt: skip
    spec = pipeline(source, tmp_path)
    spec["sinks"]["out"]["mode"] = "append"
    spec["validate"] = {"src": {"rules": [{"row_count": {"min": 5}}]}}
    with pytest.raises(EtlError, match="row_count"):
        etl_run(spec, plugins=True)
    assert not (tmp_path / ".etl" / "state" / "kafka_source.json").exists()
    del spec["validate"]
    assert etl_run(spec, plugins=True).stage("src", "extract").rows_out == 2


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            {"topics": ["a"], "pattern": "a.*"},
            "name the `topics` to read, or a `pattern`, not both",
        ),
        ({"topics": ["a"], "starting_offsets": {"a": {"zero": 1}}}, "starting_offsets: {'a'"),
        ({"topics": ["a"], "format": "avro"}, "sources.src.format"),
        ({"topics": ["a"], "incremental": {"column": "offset"}}, "write `incremental: {by: "),
    ],
)
def test_validate_refuses_what_cannot_be_read(tmp_path, options, expected):
    source = {"connection": {"bootstrap_servers": "localhost:9092"}, **options}
    with pytest.raises(ConfigError) as failure:
        config.check(data=pipeline(source, tmp_path), host=get_plugin_host())
    assert "sources.src" in str(failure.value) and expected in str(failure.value)


def test_json_needs_a_read_schema_and_free_column_names(kafka_cluster, etl_run, tmp_path):
    topic = kafka_cluster.topic(1)
    source = {"connection": kafka_cluster.connection(), "topics": [topic], "format": "json"}
    with pytest.raises(EtlError, match="declare them in the source's `read_schema`"):
        etl_run(pipeline(source, tmp_path), plugins=True)
    with pytest.raises(EtlError, match=r"column\(s\) offset clash with the Kafka columns"):
        etl_run(pipeline({**source, "read_schema": "offset BIGINT"}, tmp_path), plugins=True)
