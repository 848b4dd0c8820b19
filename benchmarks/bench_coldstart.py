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
- etl one-shot: ``etl run pipeline.yaml`` as a process, its progress lines time-stamped by
  this script to cut the wall time into phases (start → preflight → Spark up → staged →
  published → exit);
- Spark JDBC one-shot: a process that starts a session with the PostgreSQL JDBC jar, reads
  the table with 2 partitions and writes Parquet;
- dlt one-shot: a process running dlt's ``sql_table`` (connectorx) → parquet files.

    python benchmarks/bench_coldstart.py [--rows 2000000] [--repeat 3] [--smoke]

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
import textwrap
import time
from pathlib import Path
from typing import Any

import psycopg
from bench_postgres import COLUMNS, CONNECTION, FILL, JDBC_URL, PG
from dbbench import dlt_available, jdbc_jar

HERE = Path(__file__).resolve().parent
ETL = str(Path(sys.executable).with_name("etl"))  # not a pyenv shim, which adds its own start

SESSION = """
import json, sys, time
t0 = time.monotonic()
from pyspark.sql import SparkSession
builder = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
for jar in sys.argv[2:]:
    builder = builder.config("spark.jars", jar)
spark = builder.getOrCreate()
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

spark.dataSource.register(One)
def job():
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
spark = get_spark(EngineSpec(master="local[2]"))
t1 = time.monotonic()
times = []
for _ in range(2):
    started = time.monotonic()
    run_pipeline(sys.argv[1], spark=spark, plugins=True)
    times.append(time.monotonic() - started)
spark.stop()
print(json.dumps({"session": t1 - t0, "first": times[0], "second": times[1]}))
"""

JDBC = (
    SESSION
    + """
table, out, rows = sys.argv[1].split(",")
df = (spark.read.format("jdbc").option("url", "{url}").option("dbtable", table)
      .option("user", "postgres").option("driver", "org.postgresql.Driver")
      .option("fetchsize", 10000).option("partitionColumn", "id").option("lowerBound", 1)
      .option("upperBound", int(rows) + 1).option("numPartitions", 2).load())
df.write.mode("overwrite").parquet(out)
spark.stop()
"""
)

DLT = """
import sys
import dlt
from dlt.sources.sql_database import sql_table
schema, table, out = sys.argv[1:4]
source = sql_table(credentials="postgresql://postgres@127.0.0.1:5432/test", schema=schema,
                   table=table, backend="connectorx")
pipeline = dlt.pipeline(pipeline_name="cold", pipelines_dir=out + "/p",
                        destination=dlt.destinations.filesystem(bucket_url=out + "/data"),
                        dataset_name="cold")
pipeline.run(source, loader_file_format="parquet")
"""


def spawn(command: list[str], **kwargs: Any) -> tuple[float, str, str]:
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return took, done.stdout, done.stderr


def script(work: Path, name: str, text: str) -> list[str]:
    path = work / f"{name}.py"
    path.write_text(textwrap.dedent(text))
    return [sys.executable, str(path)]


def etl_phases(pipeline: Path) -> dict[str, float]:
    """``etl run`` as a process; each progress line's time since the start, and the exit."""
    started = time.monotonic()
    process = subprocess.Popen(
        [ETL, "run", str(pipeline)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    marks: dict[str, float] = {}
    assert process.stderr is not None
    for line in process.stderr:
        text = line.lstrip("· ").strip()
        for key in ("preflight passed", "starting Spark", "staging", "staged", "publishing"):
            if text.startswith(key) and key not in marks:
                marks[key] = time.monotonic() - started
    if process.wait() != 0:
        raise SystemExit(f"etl run {pipeline} failed")
    marks["exit"] = time.monotonic() - started
    return marks


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="10,000 rows, one repetition")
    args = parser.parse_args()
    rows, repeat = (10_000, 1) if args.smoke else (args.rows, args.repeat)
    os.environ["BENCH_PG_USER"] = "postgres"
    work = Path(tempfile.mkdtemp(prefix="etl-cold-"))
    schema = f"bench_cold_{os.getpid()}"
    admin = psycopg.connect(**PG, autocommit=True)
    try:
        admin.execute(f"CREATE SCHEMA {schema}")
        admin.execute(f"CREATE TABLE {schema}.src {COLUMNS}")
        admin.execute(FILL.format(table=f"{schema}.src", low=1, high=rows, prefix="name"))
        admin.execute(f"ANALYZE {schema}.src")
        pipeline = work / "pipeline.yaml"
        pipeline.write_text(
            json.dumps(
                {
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
            )
        )
        print(f"cold start: {rows:,} rows x 6 columns, PostgreSQL -> Parquet, {repeat} runs each")

        for name, command in (("etl --help", [ETL, "--help"]), ("etl plugins", [ETL, "plugins"])):
            took = median([spawn(command)[0] for _ in range(repeat)])
            print(f"  {name:<40} {took:6.2f} s (target < 1 s)")

        floors = {}
        for name, text in (("spark.range", FLOOR_RANGE), ("Python data source", FLOOR_DATA_SOURCE)):
            runs = [json.loads(spawn(script(work, "floor", text))[1]) for _ in range(repeat)]
            floor = {k: median([r[k] for r in runs]) for k in runs[0]}
            floors[name] = floor
            print(
                f"  floor {name:<34} session {floor['session']:5.2f} s, first job "
                f"{floor['first']:5.2f} s, second {floor['second']:5.2f} s: first-job penalty "
                f"{floor['first'] - floor['second']:5.2f} s"
            )

        runs = [
            json.loads(spawn([*script(work, "twice", ETL_TWICE), str(pipeline)])[1])
            for _ in range(repeat)
        ]
        twice = {k: median([r[k] for r in runs]) for k in runs[0]}
        penalty = twice["first"] - twice["second"]
        floor_penalty = (
            floors["Python data source"]["first"] - floors["Python data source"]["second"]
        )
        print(
            f"  etl in process, twice                   session {twice['session']:5.2f} s, "
            f"first run {twice['first']:5.2f} s, second {twice['second']:5.2f} s: first-run "
            f"penalty {penalty:5.2f} s = {penalty / floor_penalty:.2f}x the Python data source "
            "floor's (target <= 1.5x)"
        )

        phases = [etl_phases(pipeline) for _ in range(repeat)]
        marks = {k: median([p[k] for p in phases]) for k in phases[0]}
        etl_wall = marks["exit"]
        print(f"  etl run (spawned)                       {etl_wall:6.2f} s end to end; phases:")
        previous = 0.0
        for key, at in marks.items():
            print(f"      {key:<22} at {at:6.2f} s  (+{at - previous:5.2f} s)")
            previous = at

        jar, why = jdbc_jar("postgresql")
        if jar is not None:
            jdbc = script(work, "jdbc", JDBC.replace("{url}", JDBC_URL))
            target = f"{schema}.src,{work / 'jdbc-out'},{rows}"
            took = median([spawn([*jdbc, target, jar])[0] for _ in range(repeat)])
            print(
                f"  Spark JDBC (spawned)                    {took:6.2f} s end to end: etl is "
                f"{took / etl_wall:.2f}x (target >= 1.0x)"
            )
        else:
            print(f"  Spark JDBC: {why}")
        has_dlt, dlt_note = dlt_available()
        if has_dlt:
            dlt = script(work, "dlt_side", DLT)
            took = median(
                [spawn([*dlt, schema, "src", str(work / f"dlt{i}")])[0] for i in range(repeat)]
            )
            print(
                f"  dlt sql_table -> parquet (spawned)      {took:6.2f} s end to end: etl is "
                f"{took / etl_wall:.2f}x"
            )
        else:
            print(f"  dlt: {dlt_note}")
    finally:
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
