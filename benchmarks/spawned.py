"""One-shot runs as a scheduler starts them, for the database and files benchmarks: etl and each
baseline (Spark JDBC, dlt, plain PySpark) as a fresh spawned process doing the same work, so
that their end to end times, session start and first-run warm-up included, compare fairly. See
README.md ("Cold start").
"""

from __future__ import annotations

import itertools
import json
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ETL = str(Path(sys.executable).with_name("etl"))  # not a pyenv shim, which adds its own start

#: argv[1]: JSON {url, driver, table, rows, out, user, password, jar}
JDBC = """
import json, sys
from pyspark.sql import SparkSession
a = json.loads(sys.argv[1])
spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
         .config("spark.jars", a["jar"]).getOrCreate())
(spark.read.format("jdbc").option("url", a["url"]).option("dbtable", a["table"])
 .option("user", a["user"]).option("password", a["password"]).option("driver", a["driver"])
 .option("fetchsize", 10000).option("partitionColumn", "id").option("lowerBound", 1)
 .option("upperBound", a["rows"] + 1).option("numPartitions", 2).load()
 .write.mode("overwrite").parquet(a["out"]))
spark.stop()
"""

#: argv[1]: JSON {credentials, schema, table, out}
DLT = """
import json, sys
import dlt
from dlt.sources.sql_database import sql_table
a = json.loads(sys.argv[1])
source = sql_table(credentials=a["credentials"], schema=a["schema"], table=a["table"],
                   backend="connectorx")
pipeline = dlt.pipeline(pipeline_name="cold", pipelines_dir=a["out"] + "/p",
                        destination=dlt.destinations.filesystem(bucket_url=a["out"] + "/data"),
                        dataset_name="cold")
pipeline.run(source, loader_file_format="parquet")
"""


def spawn(command: list[str], **kwargs: Any) -> tuple[float, str]:
    """Run ``command``; its wall time and standard output (exit on failure, with its output)."""
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return took, done.stdout


def script(work: Path, name: str, text: str) -> list[str]:
    path = work / f"{name}.py"  # not dlt.py: it would shadow the dlt package
    path.write_text(textwrap.dedent(text))
    return [sys.executable, str(path)]


def etl_once(pipeline: dict[str, Any], work: Path, *extra: str) -> float:
    """``etl run`` of ``pipeline`` (written beside its relative paths, in ``work``)."""
    path = work / "spawned-pipeline.json"
    path.write_text(json.dumps(pipeline))
    return spawn([ETL, "run", str(path), *extra])[0]


#: argv[1]: JSON {here, case, data, out}: a case of bench_cases.py in plain PySpark
BASELINE = """
import json, sys
from pathlib import Path
a = json.loads(sys.argv[1])
sys.path.insert(0, a["here"])
from pyspark.sql import SparkSession
import bench_cases
spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
bench_cases.CASES[a["case"]].baseline(spark, Path(a["data"]), Path(a["out"]))
spark.stop()
"""


def jdbc_side(work: Path, arguments: dict[str, Any]) -> Callable[[], list[str]]:
    """Spark JDBC: :data:`JDBC` with ``arguments``."""
    command = [*script(work, "jdbc_side", JDBC), json.dumps(arguments)]
    return lambda: command


def dlt_side(work: Path, arguments: dict[str, Any]) -> Callable[[], list[str]]:
    """dlt: :data:`DLT` with ``arguments``, in a new pipeline folder each time (no state)."""
    command, fresh = script(work, "dlt_side", DLT), itertools.count()
    return lambda: [*command, json.dumps({**arguments, "out": f"{arguments['out']}{next(fresh)}"})]


def pyspark_side(work: Path, case: str, data: Path) -> Callable[[], list[str]]:
    """Plain PySpark: a case of bench_cases.py (:data:`BASELINE`)."""
    arguments = {"here": str(HERE), "case": case, "data": str(data), "out": str(work / "plain")}
    command = [*script(work, "pyspark_side", BASELINE), json.dumps(arguments)]
    return lambda: command


def compare(
    pipeline: dict[str, Any],
    work: Path,
    repeat: int,
    others: dict[str, Callable[[], list[str]]],
) -> dict[str, float]:
    """Median wall times of the spawned sides, printed as they come: ``etl run`` of
    ``pipeline`` without and with the class-data archive (``etl engine prepare`` first: a
    one-time step), then each of ``others`` (name: a function giving its command)."""
    spawn([ETL, "engine", "prepare"])  # nothing to do when the archive is there
    times: dict[str, float] = {}

    def side(name: str, run: Callable[[], float]) -> None:
        times[name] = statistics.median(run() for _ in range(repeat))
        ratios = ""
        if name not in ("etl, no archive", "etl, class-data archive"):
            ours, plain = times["etl, class-data archive"], times["etl, no archive"]
            ratios = f": etl is {times[name] / ours:.2f}x (no archive: {times[name] / plain:.2f}x)"
        print(f"  spawned, end to end: {name:<32} {times[name]:6.2f} s{ratios}", flush=True)

    no_archive = "--set=engine.class_data_sharing=false"
    side("etl, no archive", lambda: etl_once(pipeline, work, no_archive))
    side("etl, class-data archive", lambda: etl_once(pipeline, work))
    for name, command in others.items():
        side(name, lambda command=command: spawn(command())[0])  # type: ignore[misc]
    return times
