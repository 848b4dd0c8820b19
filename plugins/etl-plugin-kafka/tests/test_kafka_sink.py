"""The kafka sink's own behaviour against the librdkafka mock cluster: a topic copied record
for record, keys from columns, producer options, refusals, and Kafka as the dead-letter sink."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from etl_core import EtlError

pytestmark = pytest.mark.spark


def csv(schema):
    return {"type": "files", "format": "csv", "path": "in.csv", "read_schema": schema}


def kafka(cluster, client="confluent", **options):
    return {"type": "kafka", "connection": cluster.connection(client), "client": client,
            **options}  # fmt: skip


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_a_topic_is_copied_record_for_record(kafka_cluster, etl_run, tmp_path, client):
    source, target = kafka_cluster.topic(3), kafka_cluster.topic(2)
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka_cluster.bootstrap, "log_level": 2})
    for i in range(300):
        headers = [("n", str(i).encode()), ("empty", None)] if i % 3 == 0 else None
        key = None if i % 10 == 0 else f"k{i % 7}".encode()
        producer.produce(source, value=bytes([i % 256]) * (i % 5), key=key,
                         partition=i % 3, headers=headers)  # fmt: skip
    assert producer.flush(10) == 0
    spec = {
        "name": "copy",
        "sources": {"src": kafka(kafka_cluster, client, topics=[source])},
        "sinks": {
            "out": {**kafka(kafka_cluster, client, topic=target, format="bytes"), "input": "src"}
        },
    }
    metrics = etl_run(spec, plugins=True)
    assert metrics.stage("out", "load").rows_out == 300

    def records(topic, null=None):
        return Counter(
            (key, value, tuple((k, null if v is None else v) for k, v in headers))
            for key, value, headers in kafka_cluster.records(topic)
        )

    # kafka-python cannot send a null header value: it sends an empty one
    assert records(target) == records(source, None if client == "confluent" else b"")
    assert len(kafka_cluster.records(target)) == 300


def test_json_values_with_a_key_from_columns_and_producer_options(kafka_cluster, etl_run, tmp_path):
    target = kafka_cluster.topic(4)
    (tmp_path / "in.csv").write_text("id,city,n\n" + "".join(f"{i},c{i % 3},\n" for i in range(50)))
    sink = kafka(kafka_cluster, topic=target, message_key=["city"], acks=1,
                 compression="gzip", linger_ms=0)  # fmt: skip
    spec = {
        "name": "to_kafka",
        "sources": {"src": csv("id INT, city STRING, n BIGINT")},
        "sinks": {"out": {**sink, "input": "src"}},
    }
    etl_run(spec, plugins=True)
    got = kafka_cluster.records(target)
    assert sorted((json.loads(v)["id"], k) for k, v, _ in got) == [
        (i, f"c{i % 3}".encode()) for i in range(50)
    ]
    assert json.loads(got[0][1])["n"] is None  # nulls are kept, not dropped
    by_key = {}
    for partition_key, _value, _headers in got:
        by_key.setdefault(partition_key, set())
    assert len(by_key) == 3


def test_what_a_sink_cannot_write_is_refused_before_anything_is_produced(
    kafka_cluster, etl_run, tmp_path
):
    target = kafka_cluster.topic(1)
    (tmp_path / "in.csv").write_text("id\n1\n")
    spec = {
        "name": "refused",
        "sources": {"src": csv("id INT")},
        "sinks": {"out": {**kafka(kafka_cluster, topic=target, format="string"), "input": "src"}},
    }
    with pytest.raises(EtlError, match=r"sink 'out'.*lacks \(columns: id\); use `format: json`"):
        etl_run(spec, plugins=True)
    spec["sinks"]["out"].update(format="json", message_key=["nope"])
    with pytest.raises(EtlError, match=r"`message_key` column\(s\) nope not in the input"):
        etl_run(spec, plugins=True)
    spec["sinks"]["out"].update(message_key=[], topic="etl-no-such-topic")
    with pytest.raises(EtlError, match="no topic 'etl-no-such-topic' on the brokers"):
        etl_run(spec, plugins=True)
    assert kafka_cluster.records(target) == []


def test_kafka_as_the_dead_letter_sink(kafka_cluster, etl_run, tmp_path):
    dlq = kafka_cluster.topic(2)
    lines = [f"{i},{'oops' if i % 10 == 0 else i}" for i in range(100)]
    (tmp_path / "in.csv").write_text("id,amount\n" + "\n".join(lines) + "\n")
    spec = {
        "name": "with_dlq",
        "sources": {"src": csv("id INT, amount INT")},
        "sinks": {"out": {"type": "files", "input": "src", "path": "out"}},
        "errors": {"dead_letter": kafka(kafka_cluster, topic=dlq)},
    }
    metrics = etl_run(spec, plugins=True)
    assert metrics.stage("src", "extract").dead_lettered == 10
    letters = [json.loads(value) for key, value, _ in kafka_cluster.records(dlq)]
    assert len(letters) == 10
    assert sorted(r["row"] for r in letters) == sorted(lines[::10])
    first = letters[0]
    assert (first["pipeline"], first["run_id"], first["stage"]) == (
        "with_dlq",
        metrics.run_id,
        "extract",
    )
    assert first["errors"][0]["rule"] == "malformed"
    assert first["source_position"].endswith("in.csv")
