"""A Kafka broker for this example: librdkafka's mock cluster (the one etl-plugin-kafka's
tests use), with a topic ``events`` of 3 partitions holding ``--events`` order events: every
25th is not JSON, every 40th has country ``xx``. Prints ``KAFKA_BOOTSTRAP=host:port`` and runs
until Ctrl-C or SIGTERM.

    python examples/kafka/broker.py [--events 200]
    python examples/kafka/broker.py --more 50     # 50 more events to $KAFKA_BOOTSTRAP
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys

from confluent_kafka import Consumer, Producer, TopicPartition


def produce(bootstrap: str, first: int, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 2})
    for i in range(first, first + count):
        country = "xx" if i % 40 == 39 else ("de", "fr")[i % 2]  # "xx" breaks the rule
        event = {"order_id": i, "amount": round(i * 1.25, 2), "country": country}
        value = b"{not json" if i % 25 == 24 else json.dumps(event).encode()
        producer.produce("events", value, str(i).encode(), partition=i % 3)
    if producer.flush(30):
        raise SystemExit("the broker did not take every event")


def held(bootstrap: str) -> int:
    """How many events the topic holds."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "example", "log_level": 2})
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition("events", p), 10)[1] for p in range(3)
        )
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--more", type=int, help="produce this many more events and exit")
    args = parser.parse_args()
    if args.more is not None:
        bootstrap = os.environ["KAFKA_BOOTSTRAP"]
        produce(bootstrap, held(bootstrap), args.more)
        print(f"the topic holds {held(bootstrap)} events")
        return
    cluster = subprocess.Popen(
        [sys.executable, "-m", "etl_plugin_kafka.mock_cluster"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert cluster.stdin is not None and cluster.stdout is not None
    bootstrap = cluster.stdout.readline().strip()
    cluster.stdin.write("topic events 3\n")
    cluster.stdin.flush()
    if cluster.stdout.readline().strip() != "ok":
        raise SystemExit("could not create the topic")
    produce(bootstrap, 0, args.events)
    print(f"KAFKA_BOOTSTRAP={bootstrap}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        cluster.wait()  # until Ctrl-C or SIGTERM
    except KeyboardInterrupt:
        pass
    finally:
        cluster.terminate()
        cluster.wait(10)


if __name__ == "__main__":
    main()
