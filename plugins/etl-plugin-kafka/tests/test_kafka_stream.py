"""The kafka source as a stream (`execution: streaming`) against the mock cluster: offsets in
the checkpoint, read limits, `available_now`, restarts, malformed values."""

from __future__ import annotations

import json

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from etl_core import EtlError
from etl_core.manifests import manifest_files

pytestmark = pytest.mark.spark


def published(path):
    names = manifest_files(pafs.LocalFileSystem(), str(path)) or []
    return [row for name in names for row in pq.read_table(path / name).to_pylist()]


def stream(kafka_cluster, topic, **source):
    return {
        "name": "kafka_stream",
        "execution": "streaming",
        "trigger": {"available_now": True},
        "sources": {
            "events": {
                "type": "kafka",
                "connection": kafka_cluster.connection(),
                "topics": [topic],
                "format": "json",
                "read_schema": "id BIGINT, amount DOUBLE",
                **source,
            }
        },
        "sinks": {"out": {"type": "files", "input": "events", "path": "out"}},
        "errors": {"dead_letter": {"type": "files", "path": "dlq"}},
    }


def produce(kafka_cluster, topic, ids, partitions=3):
    kafka_cluster.produce(
        topic,
        ((None, json.dumps({"id": i, "amount": i / 2}).encode(), i % partitions) for i in ids),
    )


def test_a_stream_reads_each_record_once_across_restarts_in_capped_batches(
    kafka_cluster, etl_run, tmp_path
):
    topic = kafka_cluster.topic(3)
    produce(kafka_cluster, topic, range(100))
    spec = stream(kafka_cluster, topic, max_records_per_batch=40)
    first = etl_run(spec, plugins=True)
    assert [b.batch_id for b in first.streaming] == [0, 1, 2]  # 40 + 40 + 20
    assert first.stage("events", "extract").rows_out == 100
    assert [b.lag for b in first.streaming] == [60, 20, 0]  # behind the ends after each batch
    assert first.streaming[0].lag_by_partition == {f"{topic}[{p}]": 20 for p in range(3)}
    produce(kafka_cluster, topic, range(100, 130))
    second = etl_run(spec, plugins=True)
    assert [b.batch_id for b in second.streaming] == [3]
    ids = sorted(row["id"] for row in published(tmp_path / "out"))
    assert ids == list(range(130))
    assert etl_run(spec, plugins=True).streaming == []


def test_malformed_values_of_a_stream_go_to_the_dead_letters(kafka_cluster, etl_run, tmp_path):
    topic = kafka_cluster.topic(1)
    kafka_cluster.produce(
        topic, [(None, b'{"id": 1, "amount": 1}', 0), (None, b"oops", 0), (None, b'{"id": 3}', 0)]
    )
    metrics = etl_run(stream(kafka_cluster, topic), plugins=True)
    assert sorted(row["id"] for row in published(tmp_path / "out")) == [1, 3]
    assert metrics.stage("events", "extract").dead_lettered == 1
    letters = [
        json.loads(line)
        for path in (tmp_path / "dlq").rglob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert [(r["row"], r["source_position"]) for r in letters] == [("oops", f"{topic}[0]@1")]


def test_brokers_that_cannot_be_reached_stop_the_stream_with_a_clear_error(
    kafka_cluster, etl_run, tmp_path
):
    spec = stream(kafka_cluster, "events")
    spec["sources"]["events"]["connection"] = {"bootstrap_servers": "127.0.0.1:1", "timeout_s": 2}
    with pytest.raises(EtlError) as failure:
        etl_run(spec, plugins=True)
    text = str(failure.value)
    assert "sources.events: the stream stopped" in text and "cannot reach" in text, text
    assert "Traceback" not in text


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_group_id_records_where_the_stream_is_for_monitoring(
    kafka_cluster, etl_run, tmp_path, client
):
    """After a run, the group's offsets are where the stream is: every record before them
    processed (two capped batches here)."""
    from confluent_kafka import Consumer, TopicPartition

    topic = kafka_cluster.topic(2)
    produce(kafka_cluster, topic, range(40), partitions=2)
    group = f"monitor-{client}"
    spec = stream(kafka_cluster, topic, max_records_per_batch=20, group_id=group, client=client)
    spec["sources"]["events"]["connection"] = kafka_cluster.connection(client)
    assert [b.batch_id for b in etl_run(spec, plugins=True).streaming] == [0, 1]
    consumer = Consumer({"bootstrap.servers": kafka_cluster.bootstrap, "group.id": group})
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in range(2)], timeout=10)
    finally:
        consumer.close()
    assert [tp.offset for tp in committed] == [20, 20]  # 40 records, 20 per partition


def test_a_topic_that_appears_later_is_read_from_its_start(kafka_cluster, etl_run, tmp_path):
    first = kafka_cluster.topic(2, prefix="etl-grow")
    prefix = first.rsplit("-", 1)[0]
    produce(kafka_cluster, first, range(10), partitions=2)
    spec = stream(kafka_cluster, first)
    del spec["sources"]["events"]["topics"]
    spec["sources"]["events"]["pattern"] = f"{prefix}-.*"
    assert etl_run(spec, plugins=True).stage("events", "extract").rows_out == 10
    second = kafka_cluster.topic(3, prefix="etl-grow")  # matches the pattern
    produce(kafka_cluster, second, range(100, 106))
    produce(kafka_cluster, first, range(10, 12), partitions=2)
    assert etl_run(spec, plugins=True).stage("events", "extract").rows_out == 8
    ids = sorted(row["id"] for row in published(tmp_path / "out"))
    assert ids == [*range(12), *range(100, 106)]
