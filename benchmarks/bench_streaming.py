"""Streaming latency benchmark (issue 19): Kafka → PostgreSQL, end to end, beside its floor.

For each rate (events per second), a producer process writes events ``{"id", "produced_us"}``
(the wall clock in microseconds at produce time) to a new topic of librdkafka's mock cluster,
8 partitions, for ``--seconds``; meanwhile:

- etl: a streaming pipeline (``trigger: {processing_time: 1s}``) reads the topic and appends
  the events to a PostgreSQL table whose column ``committed_us`` defaults to
  ``clock_timestamp()`` at the insert, inside the publish transaction that commits it (with
  the stream ledger row). Latency = ``committed_us - produced_us``, over the events produced
  after ``--warmup-s``.
- floor: the same source (etl's kafka stream reader, the same trigger) with a ``foreachBatch``
  that only collects each batch's ``produced_us`` to the driver: what Spark's micro-batch and
  the Python worker cost before any sink. Latency = the time the batch reached the driver
  minus ``produced_us``.

Both sides run once untimed first (5 s at the lowest rate: Python workers, imports, JIT are
a cold start's cost, not a stream's). Printed per rate and side: latency p50/p95/p99, how far
behind the stream was when the producer stopped (sustained: the last event landed within 5 s
of its production), and the CPU seconds per 1,000 events of the Spark side (this process,
the JVM and its Python workers; the producer and the mock cluster run in processes of their
own and are left out) and its peak RSS, summed over that process tree.

    python benchmarks/bench_streaming.py [--rates 2000,5000,10000] [--seconds 30]
        [--warmup-s 5] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_kafka import create_topic, start_cluster  # noqa: E402
from run import RssSampler  # noqa: E402

PARTITIONS = 8
PG = {"host": "127.0.0.1", "port": 5432, "dbname": "test", "user": "postgres"}
SCHEMA = "etl_bench_stream"


def produce(bootstrap: str, topic: str, rate: int, seconds: float) -> None:
    """The producer process: ``rate`` events a second, spread over the partitions, paced in
    10 ms steps; prints the count and the last produce time when done."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "log_level": 2})
    start, sent = time.monotonic(), 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(rate * elapsed)
        while sent < due:
            value = json.dumps({"id": sent, "produced_us": time.time_ns() // 1000})
            try:
                producer.produce(topic, value.encode(), partition=sent % PARTITIONS)
            except BufferError:
                producer.poll(0.01)
                continue
            sent += 1
        producer.poll(0)
        time.sleep(0.01)
    producer.flush(30)
    print(json.dumps({"sent": sent}), flush=True)


def start_producer(bootstrap: str, topic: str, rate: int, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--produce", bootstrap, topic, str(rate), str(seconds)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def tree_cpu(exclude: set[int]) -> float:
    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        if proc.pid in exclude:
            continue
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def quantiles(latencies_us: list[int]) -> dict[str, float]:
    cuts = statistics.quantiles(latencies_us, n=100, method="inclusive")
    return {"p50": cuts[49] / 1e6, "p95": cuts[94] / 1e6, "p99": cuts[98] / 1e6}


def pipeline(bootstrap: str, topic: str, table: str, work: Path) -> dict[str, Any]:
    return {
        "name": f"bench_{topic}",
        "execution": "streaming",
        "trigger": {"processing_time": "1s"},
        "checkpoint": str(work / f"checkpoint-{topic}"),
        "credentials": {"pg": {"provider": "env", "fields": {"user": "ETL_BENCH_PG_USER"}}},
        "sources": {
            "events": {"type": "kafka", "connection": {"bootstrap_servers": bootstrap},
                       "topics": [topic], "format": "json",
                       "read_schema": "id BIGINT, produced_us BIGINT"},
        },
        "transforms": {"rows": {"type": "select", "inputs": ["events"],
                                "columns": ["id", "produced_us"]}},
        "sinks": {"db": {"type": "postgres", "input": "rows", "table": table, "mode": "append",
                         "credentials": "pg",
                         "connection": {"host": PG["host"], "port": PG["port"],
                                        "database": PG["dbname"], "sslmode": "disable"}}},
    }  # fmt: skip


class Side:
    """One side at one rate: start the stream, produce, wait until every event landed (or
    60 s passed), stop; then the figures."""

    def __init__(self, spark: Any, bootstrap: str, cluster: subprocess.Popen, work: Path):
        self.spark, self.bootstrap, self.cluster, self.work = spark, bootstrap, cluster, work
        self.floor_seen: list[tuple[int, int]] = []

    def run(self, side: str, rate: int, seconds: float, warmup_s: float) -> dict[str, Any]:
        topic = f"{side}_{rate}_{int(time.time())}"
        create_topic(self.cluster, topic, PARTITIONS)
        start = self.start_stream(side, topic)
        time.sleep(3)  # the query's first (empty) batches: not part of the measured work
        cpu_before = tree_cpu({self.cluster.pid})
        produced_from = time.time_ns() // 1000 + int(warmup_s * 1e6)
        with RssSampler() as memory:
            producer = start_producer(self.bootstrap, topic, rate, seconds)
            RssSampler.exclude.add(producer.pid)
            sent = json.loads(producer.communicate()[0])["sent"]
            deadline = time.monotonic() + 60
            while self.landed(side, topic) < sent and time.monotonic() < deadline:
                time.sleep(0.2)
            cpu = tree_cpu({self.cluster.pid, producer.pid}) - cpu_before
        self.stop_stream(side, start)
        latencies, behind = self.latencies(side, topic, produced_from)
        return {
            "side": side,
            "rate": rate,
            "events": sent,
            "landed": self.landed(side, topic),
            **quantiles(latencies),
            "behind_s": behind,
            "sustained": behind < 5.0 and self.landed(side, topic) == sent,
            "cpu_s_per_1k": cpu / sent * 1000,
            "peak_rss_mib": memory.peak / 2**20,
        }

    # --- the two sides ----------------------------------------------------------------------

    def start_stream(self, side: str, topic: str) -> Any:
        from etl_core import config
        from etl_core.health import RunControl
        from etl_core.plugins import get_plugin_host

        host = get_plugin_host(autoload=True)
        table = f"{SCHEMA}.{topic}"
        spec = pipeline(self.bootstrap, topic, table, self.work)
        bound = config.check(data=spec, base_dir=self.work, host=host)
        if side == "floor":
            return self.start_floor(bound, host)
        import psycopg

        with psycopg.connect(**PG, autocommit=True) as conn:
            conn.execute(
                f"CREATE TABLE {table} (id BIGINT, produced_us BIGINT, committed_us BIGINT "
                "DEFAULT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)"
            )
        from etl_core.run.runner import run

        control = RunControl()
        failure: list[BaseException] = []

        def stream() -> None:
            try:
                run(bound, host, spark=self.spark, control=control, progress=lambda m: None)
            except BaseException as exc:  # reported after the stop
                failure.append(exc)

        thread = threading.Thread(target=stream, name="bench-stream")
        thread.start()
        return control, thread, failure

    def start_floor(self, bound: Any, host: Any) -> Any:
        from etl_core.run import stream
        from etl_core.run.credentials import Secrets

        options = Secrets(bound, host).options_for(stream.streamed_source(bound))
        seen: list[tuple[int, int]] = []  # (produced_us, arrived_us)

        def batch(df: Any, batch_id: int) -> None:
            rows = df.select("produced_us").collect()
            now = time.time_ns() // 1000
            seen.extend((r[0], now) for r in rows)

        query = (
            stream.open_stream(bound, self.spark, options)
            .writeStream.foreachBatch(batch)
            .trigger(processingTime="1 second")
            .option("checkpointLocation", str(self.work / f"floor-{bound.spec.name}"))
            .start()
        )
        self.floor_seen = seen
        return query

    def stop_stream(self, side: str, started: Any) -> None:
        if side == "floor":
            started.stop()
            return
        control, thread, failure = started
        control.request_stop(signal.SIGTERM)
        thread.join(timeout=120)
        if failure:
            raise SystemExit(f"the etl stream failed: {failure[0]}")

    def landed(self, side: str, topic: str) -> int:
        if side == "floor":
            return len(self.floor_seen)
        import psycopg

        with psycopg.connect(**PG) as conn:
            return conn.execute(f"SELECT count(*) FROM {SCHEMA}.{topic}").fetchone()[0]

    def latencies(self, side: str, topic: str, produced_from: int) -> tuple[list[int], float]:
        if side == "floor":
            pairs = list(self.floor_seen)
        else:
            import psycopg

            with psycopg.connect(**PG) as conn:
                pairs = conn.execute(
                    f"SELECT produced_us, committed_us FROM {SCHEMA}.{topic}"
                ).fetchall()
        last = max(pairs)
        latencies = [done - made for made, done in pairs if made >= produced_from]
        return latencies or [done - made for made, done in pairs], (last[1] - last[0]) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="2000,5000,10000")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--smoke", action="store_true", help="one rate (1000/s) for 4 s")
    parser.add_argument("--produce", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.produce:
        bootstrap, topic, rate, seconds = args.produce
        produce(bootstrap, topic, int(rate), float(seconds))
        return 0
    rates = [1000] if args.smoke else [int(r) for r in args.rates.split(",")]
    seconds, warmup = (4.0, 1.0) if args.smoke else (args.seconds, args.warmup_s)
    import os

    import psycopg

    from etl_core.config.model import EngineSpec
    from etl_core.run.engine import get_spark

    os.environ.setdefault("ETL_BENCH_PG_USER", PG["user"])
    with psycopg.connect(**PG, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
    cluster, bootstrap = start_cluster()
    RssSampler.exclude.add(cluster.pid)
    print(f"bench_streaming: load average at start {os.getloadavg()[0]:.1f}", flush=True)
    spark = get_spark(EngineSpec(), app_name="etl:bench_streaming")
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="etl-bench-stream-") as work:
            sides = Side(spark, bootstrap, cluster, Path(work))
            for side in ("floor", "etl") if not args.smoke else ():  # untimed: workers, JIT
                sides.run(side, rates[0], 5.0, 0.0)
            for rate in rates:
                for side in ("floor", "etl"):
                    row = sides.run(side, rate, seconds, warmup)
                    results.append(row)
                    print(
                        f"{side:>5} {rate:>6} ev/s: p50 {row['p50']:.2f} s, p95 {row['p95']:.2f}"
                        f" s, p99 {row['p99']:.2f} s; {row['landed']}/{row['events']} landed, "
                        f"{row['behind_s']:.1f} s behind at the end "
                        f"({'sustained' if row['sustained'] else 'NOT sustained'}); "
                        f"{row['cpu_s_per_1k']:.3f} CPU s per 1k events, "
                        f"peak RSS {row['peak_rss_mib']:,.0f} MiB",
                        flush=True,
                    )
    finally:
        cluster.kill()
        spark.stop()
        with psycopg.connect(**PG, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    sustained = [r["rate"] for r in results if r["side"] == "etl" and r["sustained"]]
    print(f"highest sustained rate (etl): {max(sustained) if sustained else 'none'} ev/s")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_streaming.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
