"""Cold start: one-shot runs as a scheduler starts them, each side a fresh spawned process,
measured in one run beside the floors Spark itself sets.

Sides (wall time of the whole process, median of ``--repeat``):

- ``etl --help`` and ``etl plugins`` (no Spark);
- floor ``spark.range``: a fresh process starts a session and runs ``spark.range(...).count()``
  twice; the first job's extra time over the second is what Spark charges any first job;
- floor Python data source: the same with a trivial Python data source (one Arrow batch): what
  Spark charges the first job of a Python data source (worker daemon, the data source lookup,
  the Python side's imports);
- etl in process, twice: the PostgreSQL → Parquet pipeline run twice on one session: the first
  run's penalty over the second, against the Python data source floor's;
- one-shot, each a fresh spawned process (``spawned.py``, as the database benchmarks): ``etl
  run`` without and with the class-data archive of ``etl engine prepare`` (run first: a
  one-time step, timed), Spark JDBC (the PostgreSQL jar, 2 partitions → Parquet) and dlt's
  ``sql_table`` (connectorx) → parquet files.

``--profile`` instead takes one spawned ``etl run`` apart, without and with the archive: its
progress lines, each Python worker process Spark starts (with what it imports, ``python -X
importtime``) and Spark's event log (application, SQL execution, job and task times), on one
time line from the command's start.

    python benchmarks/bench_coldstart.py [--rows 2000000] [--repeat 3] [--smoke] [--profile]

Needs the machine's PostgreSQL (127.0.0.1:5432, database test, trust auth). See README.md
("Where a cold run's time goes").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import spawned
from bench_postgres import COLUMNS, CONNECTION, FILL, JDBC_URL, PG, URI
from dbbench import dlt_available, jdbc_jar
from spawned import ETL, script, spawn

SESSION = """
import json, sys, time
t0 = time.monotonic()
from pyspark.sql import SparkSession
spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
t1 = time.monotonic()
"""

FLOOR_RANGE = (
    SESSION
    + """
def job():
    return spark.range(0, 1_000_000, numPartitions=2).selectExpr("sum(id)").collect()
t2 = time.monotonic(); job(); t3 = time.monotonic(); job(); t4 = time.monotonic()
spark.stop()
print(json.dumps({"session": t1 - t0, "first": t3 - t2, "second": t4 - t3}))
"""
)

FLOOR_DATA_SOURCE = (
    SESSION
    + """
import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceReader

class One(DataSource):
    @classmethod
    def name(cls):
        return "one_batch"
    def schema(self):
        return "id long"
    def reader(self, schema):
        return Reader()

class Reader(DataSourceReader):
    def read(self, partition):
        yield pa.record_batch([pa.array(range(1000), pa.int64())], names=["id"])

def job():  # registering is part of a read's work (the first one initialises session state)
    spark.dataSource.register(One)
    return spark.read.format("one_batch").load().selectExpr("sum(id)").collect()
t2 = time.monotonic(); job(); t3 = time.monotonic(); job(); t4 = time.monotonic()
spark.stop()
print(json.dumps({"session": t1 - t0, "first": t3 - t2, "second": t4 - t3}))
"""
)

ETL_TWICE = """
import json, sys, time
t0 = time.monotonic()
from etl_core.config.model import EngineSpec
from etl_core.run.engine import get_spark
from etl_core.testing import run_pipeline
spark = get_spark(EngineSpec(master="local[2]", class_data_sharing=sys.argv[2] == "on"))
t1 = time.monotonic()
times = []
for _ in range(2):
    started = time.monotonic()
    run_pipeline(sys.argv[1], spark=spark, plugins=True)
    times.append(time.monotonic() - started)
spark.stop()
print(json.dumps({"session": t1 - t0, "first": times[0], "second": times[1]}))
"""

WORKER = """#!/bin/sh
# a Spark Python worker (or daemon), started with -X importtime: its start and imports logged
echo "$(date +%s.%N) $$ $*" >> {log}/workers.log
exec {python} -X importtime "$@" 2>>{log}/imports.$$
"""


def profile(pipeline: Path, work: Path, archive: bool) -> None:
    """One spawned ``etl run`` taken apart: its progress lines, the start of each Python worker
    process Spark launches (and what each imports, ``-X importtime``), and Spark's event log
    (application, SQL execution, job, stage and task times), on one time line from the
    command's start."""
    log = work / f"profile-{archive}"
    (log / "events").mkdir(parents=True)
    wrapper = log / "python.sh"
    wrapper.write_text(WORKER.format(log=log, python=sys.executable))
    wrapper.chmod(0o755)
    spec = json.loads(pipeline.read_text())
    spec["engine"]["class_data_sharing"] = archive
    spec["engine"]["conf"] = {
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": str(log / "events"),
        "spark.eventLog.compress": "false",
        "spark.eventLog.rolling.enabled": "false",
    }
    (log / "pipeline.json").write_text(json.dumps(spec))
    t0 = time.time()
    env = {**os.environ, "PYSPARK_PYTHON": str(wrapper)}
    process = subprocess.Popen(
        [ETL, "run", str(log / "pipeline.json")], stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    line: list[tuple[float, str]] = []
    assert process.stderr is not None
    for text in process.stderr:
        line.append((time.time() - t0, "etl: " + text.strip()))
    assert process.wait() == 0, "\n".join(text for _, text in line)
    line.append((time.time() - t0, "etl run exited (its JVM stopped)"))
    for entry in (log / "workers.log").read_text().splitlines():
        at, pid, *command = entry.split()
        imports = log / f"imports.{pid}"
        rows = [r.split("|") for r in imports.read_text().splitlines() if r.startswith("import")]
        top = [(r[2].strip(), int(r[1])) for r in rows[1:] if not r[2].startswith("  ")]
        total = sum(us for _, us in top) / 1000
        ours = sum(us for name, us in top if name.startswith("etl_")) / 1000
        line.append((float(at) - t0, f"Python worker {command[-1]} started: imports "
                     f"{total:.0f} ms in all, etl's modules {ours:.0f} ms"))  # fmt: skip
    for entry in (next((log / "events").iterdir())).read_text().splitlines():
        event = json.loads(entry)
        kind = event["Event"].rsplit(".", 1)[-1]
        if kind == "SparkListenerTaskEnd":
            info, m = event["Task Info"], event.get("Task Metrics", {})
            took = (info["Finish Time"] - info["Launch Time"]) / 1000
            cpu, gc = m.get("Executor CPU Time", 0) / 1e6, m.get("JVM GC Time", 0)
            what = f"task {info['Task ID']}: {took:.2f} s (JVM CPU {cpu:.0f} ms, GC {gc} ms)"
            line.append((info["Launch Time"] / 1000 - t0, what))
        elif kind in ("SparkListenerJobStart", "SparkListenerJobEnd"):
            at = event.get("Submission Time") or event.get("Completion Time")
            line.append((at / 1000 - t0, f"{kind[13:]} {event['Job ID']}"))
        elif kind in ("SparkListenerSQLExecutionStart", "SparkListenerSQLExecutionEnd"):
            line.append((event["time"] / 1000 - t0, f"{kind[13:]} {event['executionId']}"))
        elif kind in ("SparkListenerApplicationStart", "SparkListenerExecutorAdded"):
            line.append((event["Timestamp"] / 1000 - t0, kind[13:]))
    print(f"profile of one spawned etl run ({'with' if archive else 'without'} the archive):")
    for at, what in sorted(line):
        print(f"  {at:6.2f} s  {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="10,000 rows, one repetition")
    parser.add_argument(
        "--profile", action="store_true", help="take one spawned etl run apart, then stop"
    )
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    rows, repeat = (10_000, 1) if args.smoke else (args.rows, args.repeat)
    os.environ["BENCH_PG_USER"] = "postgres"
    work = Path(tempfile.mkdtemp(prefix="etl-cold-")).resolve()
    schema = f"bench_cold_{os.getpid()}"
    admin = psycopg.connect(**PG, autocommit=True)
    try:
        admin.execute(f"CREATE SCHEMA {schema}")
        admin.execute(f"CREATE TABLE {schema}.src {COLUMNS}")
        admin.execute(FILL.format(table=f"{schema}.src", low=1, high=rows, prefix="name"))
        admin.execute(f"ANALYZE {schema}.src")
        pipeline = work / "pipeline.yaml"
        pipeline.write_text(json.dumps(pipeline_spec(schema, work)))
        prepared = time.monotonic()
        spawn([ETL, "engine", "prepare"])  # nothing to do when the archive is there
        prepared = time.monotonic() - prepared
        if args.profile:
            profile(pipeline, work, archive=False)
            profile(pipeline, work, archive=True)
            return
        compare(pipeline, work, schema, rows, repeat, prepared)
    finally:
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()
        shutil.rmtree(work, ignore_errors=True)


def pipeline_spec(schema: str, work: Path) -> dict[str, Any]:
    return {
        "name": "cold",
        "engine": {"master": "local[2]"},
        "credentials": {"pg": {"provider": "env", "fields": {"user": "BENCH_PG_USER"}}},
        "sources": {
            "src": {
                "type": "postgres",
                "connection": CONNECTION,
                "table": f"{schema}.src",
                "credentials": "pg",
                "partition_column": "id",
                "partitions": 2,
            }
        },
        "sinks": {
            "out": {
                "type": "files",
                "input": "src",
                "format": "parquet",
                "path": str(work / "etl-out"),
                "mode": "overwrite",
            }
        },
    }


def compare(
    pipeline: Path, work: Path, schema: str, rows: int, repeat: int, prepared: float
) -> None:
    print(f"cold start: {rows:,} rows x 6 columns, PostgreSQL -> Parquet, {repeat} runs each")
    print(f"  etl engine prepare                      {prepared:6.2f} s (once; ~0 when made)")
    for name, command in (("etl --help", [ETL, "--help"]), ("etl plugins", [ETL, "plugins"])):
        took = statistics.median([spawn(command)[0] for _ in range(repeat)])
        print(f"  {name:<40} {took:6.2f} s (target < 1 s)")

    floors = {}
    for name, text in (("spark.range", FLOOR_RANGE), ("Python data source", FLOOR_DATA_SOURCE)):
        runs = [json.loads(spawn(script(work, "floor", text))[1]) for _ in range(repeat)]
        floor = {k: statistics.median([r[k] for r in runs]) for k in runs[0]}
        floors[name] = floor
        print(
            f"  floor {name:<34} session {floor['session']:5.2f} s, first job "
            f"{floor['first']:5.2f} s, second {floor['second']:5.2f} s: first-job penalty "
            f"{floor['first'] - floor['second']:5.2f} s"
        )
    floor_penalty = floors["Python data source"]["first"] - floors["Python data source"]["second"]
    for archive in ("off", "on"):
        runs = [
            json.loads(spawn([*script(work, "twice", ETL_TWICE), str(pipeline), archive])[1])
            for _ in range(repeat)
        ]
        twice = {k: statistics.median([r[k] for r in runs]) for k in runs[0]}
        penalty = twice["first"] - twice["second"]
        print(
            f"  etl in process, twice, archive {archive:<4}    session {twice['session']:5.2f} s, "
            f"first run {twice['first']:5.2f} s, second {twice['second']:5.2f} s: first-run "
            f"penalty {penalty:5.2f} s = {penalty / floor_penalty:.2f}x the Python data source "
            "floor's (target <= 1.5x)"
        )

    jar, why = jdbc_jar("postgresql")
    if jar is None:
        print(f"  Spark JDBC: {why}")
    jdbc = {"url": JDBC_URL, "driver": "org.postgresql.Driver", "jar": jar, "rows": rows,
            "table": f"{schema}.src", "out": str(work / "jdbc"), "user": "postgres",
            "password": ""}  # fmt: skip
    has_dlt, dlt_note = dlt_available()
    if not has_dlt:
        print(f"  dlt: {dlt_note}")
    dlt = {"credentials": URI, "schema": schema, "table": "src", "out": str(work / "dlt")}
    others = {}
    if jar:
        others["Spark JDBC, 2 partitions"] = spawned.jdbc_side(work, jdbc)
    if has_dlt:
        others["dlt sql_table -> parquet"] = spawned.dlt_side(work, dlt)
    spawned.compare(pipeline_spec(schema, work), work, repeat, others)


if __name__ == "__main__":
    main()
