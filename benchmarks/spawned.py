"""One-shot runs as a scheduler starts them, for every database benchmark: etl, Spark JDBC and
dlt each as a fresh spawned process doing the same extract (table -> Parquet), so that their end
to end times, session start and first-run warm-up included, compare fairly. See README.md
("Cold start").
"""

from __future__ import annotations

import itertools
import json
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

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


def compare(
    pipeline: dict[str, Any],
    work: Path,
    repeat: int,
    jdbc: dict[str, Any] | None,
    dlt: dict[str, Any] | None,
) -> dict[str, float]:
    """Median wall times of the spawned sides, printed as they come: etl with and without the
    class-data archive (``etl engine prepare`` first: a one-time step), Spark JDBC (``jdbc``:
    the :data:`JDBC` script's arguments, or ``None``) and dlt (``dlt``: :data:`DLT`'s, or
    ``None``)."""
    spawn([ETL, "engine", "prepare"])  # nothing to do when the archive is there
    times: dict[str, float] = {}

    def side(name: str, run: Any) -> None:
        times[name] = statistics.median(run() for _ in range(repeat))
        ratios = ""
        if name.startswith(("Spark JDBC", "dlt")):
            ours = times["etl, class-data archive"]
            plain = times["etl, no archive"]
            ratios = f": etl is {times[name] / ours:.2f}x (no archive: {times[name] / plain:.2f}x)"
        print(f"  spawned, end to end: {name:<32} {times[name]:6.2f} s{ratios}", flush=True)

    side(
        "etl, no archive", lambda: etl_once(pipeline, work, "--set=engine.class_data_sharing=false")
    )
    side("etl, class-data archive", lambda: etl_once(pipeline, work))
    if jdbc is not None:
        command = [*script(work, "jdbc_side", JDBC), json.dumps(jdbc)]
        side("Spark JDBC, 2 partitions", lambda: spawn(command)[0])
    if dlt is not None:
        command = script(work, "dlt_side", DLT)
        fresh = itertools.count()  # a new pipeline folder each time: no state carried over
        side(
            "dlt sql_table -> parquet",
            lambda: spawn([*command, json.dumps({**dlt, "out": f"{dlt['out']}{next(fresh)}"})])[0],
        )
    return times
