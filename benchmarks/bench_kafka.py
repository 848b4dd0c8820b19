"""Kafka source benchmark, each etl figure beside its baselines measured in the same run.

MESSAGES messages of ~100 bytes (an 8-byte key, a 92-byte value) on PARTITIONS partitions of
librdkafka's mock cluster (started here, in its own process) → Parquet:

- etl with ``client: confluent`` and with ``client: kafka-python``: a ``kafka`` source
  (``format: bytes``: key, value, topic, partition, offset, timestamp, headers; the source's
  default splits: the records spread over the 2 cores, ten topic partitions per split, or
  ``--records-per-split``) → ``files`` sink, ``local[2]``, the whole ``config.check`` + run;
- raw, per client: one consumer of that client in this process, assigned every partition,
  reading until each partition's end offset into Arrow columns of the same shape →
  ``pyarrow.parquet.write_table``; for confluent also *tuned*, with librdkafka's pause on a
  full prefetch queue cut from 1 s to 10 ms (``fetch.queue.backoff.ms``), as etl sets it: with
  the default, one consumer waits most of its time;
- floor: Spark's own part of any Python data source extract, without Kafka: the raw side's
  Parquet read back in slices by a trivial Python data source and written by Spark's Parquet
  writer (``dbbench.spark_floor``), 2 partitions as the 2 cores allow.

Targets (issue 17): etl with confluent >= 0.8x raw confluent; etl with kafka-python >= 1.5x
raw kafka-python (it reads partitions in parallel). Figures as in bench_postgres.py: *steady*
= median of ``--repeat`` runs after the first and ``--warmup`` untimed ones; *first*; *end to
end* = first + the Spark session start, for the sides that need one. CPU seconds and peak RSS
are of the whole process tree for the Spark sides (driver, JVM, Python workers) and of this
process for the raw ones; the mock cluster's process is left out of both.

    python benchmarks/bench_kafka.py [--messages 800000] [--partitions 20] [--repeat 2]
        [--warmup 1] [--clients confluent,kafka-python] [--baselines raw,floor]
        [--records-per-split N]
"""

from __future__ import annotations

import argparse
import functools
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dbbench import Results, measure_driver, spark_floor, start_spark  # noqa: E402
from run import RssSampler  # noqa: E402

VALUE_BYTES = 92


def cpu_of(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def start_cluster() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "etl_plugin_kafka.mock_cluster"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    bootstrap = process.stdout.readline().strip()
    if not bootstrap:
        raise SystemExit("the mock cluster did not start (python -m etl_plugin_kafka.mock_cluster)")
    return process, bootstrap


def create_topic(cluster: subprocess.Popen[str], name: str, partitions: int) -> None:
    assert cluster.stdin is not None and cluster.stdout is not None
    cluster.stdin.write(f"topic {name} {partitions}\n")
    cluster.stdin.flush()
    answer = cluster.stdout.readline().strip()
    if answer != "ok":
        raise SystemExit(f"the mock cluster could not create {name}: {answer}")


def produce(bootstrap: str, topic: str, messages: int, partitions: int) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "log_level": 2})
    pad = b"x" * VALUE_BYTES
    for i in range(messages):
        value = (b'{"n": %d, "pad": "' % i + pad)[: VALUE_BYTES - 2] + b'"}'
        while True:
            try:
                producer.produce(topic, value, b"%08d" % i, partition=i % partitions)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(60):
        raise SystemExit("the producer could not deliver every message")
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "log_level": 2})
    kept = [consumer.get_watermark_offsets(TopicPartition(topic, p), 10) for p in range(partitions)]
    consumer.close()
    if any(low != 0 for low, _ in kept) or sum(high for _, high in kept) != messages:
        raise SystemExit(f"the mock cluster kept (low, high) offsets {kept}: fewer messages")


def to_table(topic: str, keys: list, values: list, parts: list, offsets: list,
             stamps: list) -> pa.Table:  # fmt: skip
    n = len(keys)
    headers = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))
    return pa.table(
        {
            "key": pa.array(keys, pa.binary()),
            "value": pa.array(values, pa.binary()),
            "topic": pa.array([topic] * n, pa.string()),
            "partition": pa.array(parts, pa.int32()),
            "offset": pa.array(offsets, pa.int64()),
            "timestamp": pa.array([s * 1000 for s in stamps], pa.timestamp("us", tz="UTC")),
            "headers": pa.array([[]] * n, headers),
        }
    )


def raw_confluent(
    bootstrap: str, topic: str, partitions: int, out: Path, tuned: bool = False
) -> int:
    """One confluent-kafka consumer, every partition assigned, to Parquet. ``tuned``: with
    librdkafka's pause when its prefetch queue is full cut from 1 s to 10 ms, as etl's."""
    from confluent_kafka import Consumer, TopicPartition

    tuning = {"fetch.queue.backoff.ms": 10} if tuned else {}
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-raw",
                         "enable.auto.commit": False, "log_level": 2, **tuning})  # fmt: skip
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
            for p in range(partitions)}  # fmt: skip
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    keys, values, parts, offsets, stamps = [], [], [], [], []
    left = sum(ends.values())
    while left:
        for message in consumer.consume(10_000, 10):
            if message.error() is not None:
                continue
            keys.append(message.key())
            values.append(message.value())
            parts.append(message.partition())
            offsets.append(message.offset())
            stamps.append(message.timestamp()[1])
            left -= 1
    consumer.close()
    pq.write_table(to_table(topic, keys, values, parts, offsets, stamps), out)
    return len(keys)


def raw_kafka_python(bootstrap: str, topic: str, partitions: int, out: Path) -> int:
    """One kafka-python consumer, every partition assigned, to Parquet."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], group_id=None,
                             enable_auto_commit=False, api_version=(2, 3, 0))  # fmt: skip
    assigned = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(assigned)
    consumer.seek_to_beginning()
    ends = consumer.end_offsets(assigned)
    keys, values, parts, offsets, stamps = [], [], [], [], []
    left = sum(ends.values())
    while left:
        for records in consumer.poll(timeout_ms=10_000, max_records=10_000).values():
            for r in records:
                keys.append(r.key)
                values.append(r.value)
                parts.append(r.partition)
                offsets.append(r.offset)
                stamps.append(r.timestamp)
            left -= len(records)
    consumer.close()
    pq.write_table(to_table(topic, keys, values, parts, offsets, stamps), out)
    return len(keys)


#: the raw sides of each client: label → function
RAW = {
    "confluent": {
        "raw confluent, one consumer": raw_confluent,
        "raw confluent, one consumer, tuned": functools.partial(raw_confluent, tuned=True),
    },
    "kafka-python": {"raw kafka-python, one consumer": raw_kafka_python},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=800_000)
    parser.add_argument("--partitions", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=2, help="steady-state repetitions")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs after the first")
    parser.add_argument("--clients", default="confluent,kafka-python")
    parser.add_argument("--baselines", default="raw,floor")
    parser.add_argument("--records-per-split", type=int, help="default: the source's (auto)")
    args = parser.parse_args()
    n, partitions = args.messages, args.partitions
    clients, baselines = args.clients.split(","), set(args.baselines.split(","))
    results = Results("kafka", vars(args))
    work = Path(tempfile.mkdtemp(prefix="bench_kafka_"))
    cluster, bootstrap = start_cluster()
    RssSampler.exclude = {cluster.pid}  # the mock cluster is neither side's
    try:
        topic = "bench"
        create_topic(cluster, topic, partitions)
        produce(bootstrap, topic, n, partitions)
        print(f"input: {n:,} messages of ~100 bytes on {partitions} partitions", flush=True)

        from etl_core.plugins import get_plugin_host
        from etl_core.testing import run_pipeline

        spark, session_s = start_spark([], "bench-kafka")
        results.note(f"Spark session start (etl and the floor only): {session_s:.1f} s")
        host = get_plugin_host(autoload=True)

        def written(folder: Path) -> int:
            return sum(pq.ParquetFile(f).metadata.num_rows for f in folder.rglob("*.parquet"))

        for client in clients:
            connection = {"bootstrap_servers": bootstrap}
            if client == "kafka-python":
                connection["api_version"] = "2.3.0"  # the mock answers API probing badly
            source = {"type": "kafka", "client": client, "connection": connection,
                      "topics": [topic], "format": "bytes"}  # fmt: skip
            if args.records_per_split:
                source["records_per_split"] = args.records_per_split
            base = work / f"etl-{client}"
            base.mkdir()

            def etl(source: dict[str, Any] = source, base: Path = base) -> None:
                pipeline = {
                    "name": "bench_kafka",
                    "sources": {"k": source},
                    "sinks": {
                        "o": {"type": "files", "input": "k", "path": "out", "mode": "overwrite"}
                    },
                }
                run_pipeline(pipeline, spark=spark, host=host, base_dir=base)

            splits = -(-n // (args.records_per_split or -(-n // 2)))
            label = f"etl {client} ({splits} splits, local[2])"
            before = cpu_of(cluster.pid)
            results.add_spark(client, label, n, etl, args, session_s)
            broker = (cpu_of(cluster.pid) - before) / (1 + args.warmup + args.repeat)
            results.note(f"the mock cluster's CPU per etl {client} run: {broker:.1f} s")
            if written(base / "out") != n:
                raise SystemExit(
                    f"etl with {client} wrote {written(base / 'out'):,} rows, not {n:,}"
                )
            if "raw" in baselines:
                out = work / f"raw-{client}.parquet"
                for side, raw in RAW[client].items():
                    runs = [
                        measure_driver(functools.partial(raw, bootstrap, topic, partitions, out))
                        for _ in range(args.repeat)
                    ]
                    if pq.ParquetFile(out).metadata.num_rows != n:
                        raise SystemExit(f"{side} read a different count")
                    results.add(client, side, n, runs)
                    results.ratio(client, label, side, 0.8 if client == "confluent" else 1.5)
        if "floor" in baselines:
            parquet = work / "floor-input.parquet"
            if not any(work.glob("raw-*.parquet")):
                raw_confluent(bootstrap, topic, partitions, parquet)
            else:
                shutil.copy(next(work.glob("raw-*.parquet")), parquet)
            floor = spark_floor(spark, parquet, work / "floor-out", partitions=2)
            results.add_spark("floor", "floor: Arrow batches from memory", n, floor, args,
                              session_s)  # fmt: skip
            floor_row = next(r for r in results.rows if r["case"] == "floor")
            for client in clients:
                mine = next(r for r in results.rows if r["side"].startswith(f"etl {client}"))
                print(f"  etl {client} / floor: steady "
                      f"{floor_row['steady_s'] / mine['steady_s']:.2f}x")  # fmt: skip
                raws = [r for r in results.rows if r["side"].startswith(f"raw {client},")]
                if raws:
                    raw_row = min(
                        raws, key=lambda r: r["steady_s"]
                    )  # the consumer's CPU and Spark's, spread on 2 cores
                    best = (raw_row["cpu_s"] + floor_row["cpu_s"]) / 2
                    results.note(
                        f"{client}: the fastest raw consumer's CPU ({raw_row['cpu_s']:.1f} s) plus "
                        f"Spark's part ({floor_row['cpu_s']:.1f} s), spread over 2 idle cores, "
                        f"take {best:.2f} s at best: a ceiling of "
                        f"{raw_row['steady_s'] / best:.2f}x the raw consumer (the mock "
                        "cluster's own CPU, above, is next to nothing)"
                    )
        results.note(
            "the mock cluster runs on the same 2 cores; steady = median after one untimed run"
        )
        results.write()
    finally:
        cluster.terminate()
        cluster.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
