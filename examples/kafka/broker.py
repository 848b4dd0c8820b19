"""A Kafka broker for this example: librdkafka's mock cluster (the one etl-plugin-kafka's
tests use), with a topic ``events`` of 3 partitions holding ``--events`` order events: every
25th is not JSON, every 40th has country ``xx``. Prints ``KAFKA_BOOTSTRAP=host:port`` and runs
until Ctrl-C; a line ``more N`` on its standard input produces N more events.

    python examples/kafka/broker.py [--events 200]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from confluent_kafka import Producer


def produce(bootstrap: str, first: int, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 2})
    for i in range(first, first + count):
        country = "xx" if i % 40 == 39 else ("de", "fr")[i % 2]  # "xx" breaks the rule
        event = {"order_id": i, "amount": round(i * 1.25, 2), "country": country}
        value = b"{not json" if i % 25 == 24 else json.dumps(event).encode()
        producer.produce("events", value, str(i).encode(), partition=i % 3)
    if producer.flush(30):
        raise SystemExit("the broker did not take every event")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()
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
    produced = args.events
    try:
        for line in sys.stdin:
            words = line.split()
            if words[:1] == ["more"]:
                produce(bootstrap, produced, int(words[1]))
                produced += int(words[1])
                print(f"produced {produced}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.terminate()
        cluster.wait(10)


if __name__ == "__main__":
    main()
