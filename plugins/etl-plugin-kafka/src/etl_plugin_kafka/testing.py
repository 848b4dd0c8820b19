"""pytest plugin (entry point ``pytest11: etl_kafka``): a Kafka cluster for tests.

Fixtures:

- ``kafka_cluster``: one librdkafka mock cluster (:mod:`etl_plugin_kafka.mock_cluster`) per
  test session, in its own process, started on first use. ``.bootstrap`` is its address;
  ``.topic(partitions)`` creates a topic with a fresh name (the mock refuses the admin API's
  CreateTopics); ``.produce(topic, records)`` writes ``(key, value, partition)`` records;
  ``.records(topic)`` reads every ``(key, value, headers)`` back; ``.connection(client)`` is
  the `connection:` block (kafka-python pinned to API 2.3.0, which the mock needs).

The mock speaks the Kafka protocol but keeps at most about 5 MiB per partition: size tests
below that. Tests written against it should pass on a real broker too.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

STARTUP_TIMEOUT_S = 30


class KafkaCluster:
    def __init__(self, process: subprocess.Popen[str], bootstrap: str):
        self.process = process
        self.bootstrap = bootstrap
        self._lock = threading.Lock()

    def topic(self, partitions: int = 4, prefix: str = "etl-test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        with self._lock:
            assert self.process.stdin is not None and self.process.stdout is not None
            self.process.stdin.write(f"topic {name} {partitions}\n")
            self.process.stdin.flush()
            answer = self.process.stdout.readline().strip()
        if answer != "ok":
            pytest.fail(f"the mock cluster could not create topic {name}: {answer}")
        return name

    def produce(
        self, topic: str, records: Iterable[tuple[bytes | None, bytes | None, int]], **conf: Any
    ) -> int:
        """Write ``(key, value, partition)`` records with an idempotent producer; return how
        many were acknowledged."""
        from confluent_kafka import Producer

        producer = Producer(
            {"bootstrap.servers": self.bootstrap, "enable.idempotence": True, **conf}
        )
        failed: list[Any] = []
        count = 0
        for key, value, partition in records:
            producer.produce(
                topic,
                key=key,
                value=value,
                partition=partition,
                on_delivery=lambda err, _msg: failed.append(err) if err else None,
            )
            count += 1
            if count % 10_000 == 0:
                producer.poll(0)
        remaining = producer.flush(30)
        if remaining or failed:
            pytest.fail(f"{remaining} records not delivered, {len(failed)} failed: {failed[:3]}")
        return count

    def records(self, topic: str) -> list[tuple[bytes | None, bytes | None, list[Any]]]:
        """Every ``(key, value, headers)`` record of ``topic``, partition by partition."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(
            {"bootstrap.servers": self.bootstrap, "group.id": "etl-test", "log_level": 2}
        )
        found: list[tuple[bytes | None, bytes | None, list[Any]]] = []
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            for partition in sorted(partitions):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
                consumer.assign([TopicPartition(topic, partition, low)])
                position = low
                while position < high:
                    messages = consumer.consume(high - position, 10)
                    if not messages:
                        pytest.fail(f"{topic}[{partition}]: no record at offset {position}")
                    for message in messages:
                        if message.error() is None:
                            found.append((message.key(), message.value(), message.headers() or []))
                            position = message.offset() + 1
        finally:
            consumer.close()
        return found

    def connection(self, client: str = "confluent") -> dict[str, Any]:
        block: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "timeout_s": 10}
        if client == "kafka-python":
            block["api_version"] = "2.3.0"  # the mock answers API probing badly
        return block


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[KafkaCluster]:
    process = subprocess.Popen(
        [sys.executable, "-m", "etl_plugin_kafka.mock_cluster"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    timer = threading.Timer(STARTUP_TIMEOUT_S, process.kill)
    timer.start()
    bootstrap = process.stdout.readline().strip()
    timer.cancel()
    if not bootstrap:
        pytest.fail(
            "the Kafka mock cluster did not start (python -m etl_plugin_kafka.mock_cluster)"
        )
    try:
        yield KafkaCluster(process, bootstrap)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
