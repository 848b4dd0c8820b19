"""Class-data sharing for the driver's JVM: ``etl engine prepare`` records the classes a
representative Spark workload loads into an archive (a JDK 13+ dynamic CDS archive); every
later session of the same Java, pyspark and driver classpath maps it at start instead of
loading, verifying and linking those classes from Spark's jars again (measured on Java 17: a
one-shot run 4 to 5 s shorter, benchmarks/README.md "Where a cold run's time goes").

One archive per (java, Spark installation, ``spark.jars``/``spark.jars.packages``/
``spark.driver.extraClassPath``), in ``$XDG_CACHE_HOME/etl/jvm`` (``~/.cache/etl/jvm``). The JVM
checks it as well and ignores, silently, one that does not match. A truncated archive would
crash the JVM, so one is used only when its size is the size recorded when it was made, and
made only by writing it aside, checking that a JVM starts with it, then renaming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from etl_core.errors import EtlError

if TYPE_CHECKING:
    from collections.abc import Iterator

#: driver settings that change the JVM's classpath, so the archive
CLASSPATH_KEYS = ("spark.jars", "spark.jars.packages", "spark.driver.extraClassPath")
#: the JVM says nothing about the archive (a mismatch falls back to loading classes as usual)
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"


def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    return os.path.realpath(java) if java and os.path.exists(java) else None


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "etl" / "jvm"


def archive_path(conf: dict[str, str]) -> Path | None:
    """Where the archive for a session with ``conf`` lives (``None``: no java to key it on, or
    no home folder for the cache)."""
    java = _java()
    try:
        folder = cache_dir()
    except RuntimeError:  # no HOME
        return None
    if java is None:
        return None
    import pyspark

    spark_home = os.environ.get("SPARK_HOME") or os.path.dirname(pyspark.__file__)
    key = [java, pyspark.__version__, spark_home, *(conf.get(k, "") for k in CLASSPATH_KEYS)]
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
    return folder / f"spark-{pyspark.__version__}-{digest}.jsa"


def usable(path: Path) -> bool:
    """The archive at ``path`` is whole (the size recorded when it was made) and its path can
    go into the JVM's options (Spark splits them at whitespace)."""
    try:
        recorded = json.loads(path.with_suffix(".json").read_text())["size"]
        return bool(recorded == path.stat().st_size) and not any(c.isspace() for c in str(path))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def with_archive(conf: dict[str, str]) -> str:
    """The driver JVM's options, plus those that map the archive when there is one (and the
    options choose no class-data sharing of their own)."""
    options = conf.get("spark.driver.extraJavaOptions", "")
    if any(flag in options for flag in ("-Xshare", "SharedArchiveFile", "ArchiveClassesAtExit")):
        return options
    path = archive_path(conf)
    if path is None or not usable(path):
        return options
    return f"{options} -XX:SharedArchiveFile={path} {QUIET}".strip()


def install(partial: Path, path: Path) -> None:
    """Put the archive a recording JVM wrote at ``partial`` in place as ``path``, with the size
    that makes it :func:`usable`, once a JVM starts with it."""
    check(partial)
    os.replace(partial, path)
    meta = path.with_suffix(".json.tmp")
    meta.write_text(json.dumps({"size": path.stat().st_size, "java": _java()}))
    os.replace(meta, path.with_suffix(".json"))


def check(partial: Path) -> None:
    """A JVM starts with the archive (one cut short by a full disk would crash it)."""
    java = _java()
    if not partial.exists() or java is None:
        raise EtlError(f"the JVM wrote no class-data archive ({partial}): is the disk full?")
    done = subprocess.run(
        [java, f"-XX:SharedArchiveFile={partial}", *QUIET.split(), "-version"],
        capture_output=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise EtlError(f"the class-data archive the JVM wrote does not load ({partial})")


def workload(spark: object, work: Path) -> None:
    """What most runs do, small: a Python data source, a join, an aggregate, a window, and
    Parquet, CSV and JSON written and read back."""
    from pyspark.sql import SparkSession, Window
    from pyspark.sql import functions as F

    assert isinstance(spark, SparkSession)
    spark.dataSource.register(_sample_source())
    rows = spark.read.format("etl_prepare_sample").load()
    keys = spark.range(0, 100).withColumnRenamed("id", "key")
    joined = rows.join(keys, rows.id % 100 == keys.key, "left")
    ranked = joined.withColumn("rank", F.row_number().over(Window.partitionBy("key").orderBy("id")))
    ranked.write.mode("overwrite").parquet(str(work / "p"))
    back = spark.read.parquet(str(work / "p"))
    back.groupBy("name").agg(F.sum("amount"), F.max("at")).write.csv(str(work / "c"), header=True)
    back.select("id", "name").write.json(str(work / "j"))
    spark.read.csv(str(work / "c"), header=True, inferSchema=True).collect()
    spark.read.json(str(work / "j")).where("id > 1").count()
    spark.sql("SELECT 1 AS one").createOrReplaceTempView("one")
    spark.table("one").collect()


def _sample_source() -> type:
    """A Python data source of a few typed rows, as connectors yield them (Arrow batches)."""
    from pyspark.sql.datasource import DataSource, DataSourceReader

    class Reader(DataSourceReader):
        def read(self, partition: object) -> Iterator[object]:
            import datetime as dt
            from decimal import Decimal

            import pyarrow as pa

            ids = list(range(1000))
            at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
            yield pa.record_batch(
                [
                    pa.array(ids, pa.int64()),
                    pa.array([f"n{i % 7}" for i in ids]),
                    pa.array([Decimal(i) / 100 for i in ids], pa.decimal128(12, 2)),
                    pa.array([i / 3 for i in ids], pa.float64()),
                    pa.array([at] * len(ids), pa.timestamp("us", "UTC")),
                ],
                names=["id", "name", "amount", "ratio", "at"],
            )

    class Sample(DataSource):
        @classmethod
        def name(cls) -> str:
            return "etl_prepare_sample"

        def schema(self) -> str:
            return "id long, name string, amount decimal(12,2), ratio double, at timestamp"

        def reader(self, schema: object) -> DataSourceReader:
            return Reader()

    return Sample
