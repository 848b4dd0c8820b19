"""What the database benchmarks (bench_postgres.py, bench_mysql.py) share: timing with CPU and
peak RSS, the Spark session (with the JDBC jars of the baselines on its class path), locating
or installing those jars, and the results table. See README.md ("Database connectors")."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import RssSampler, measure  # noqa: E402 - after the sys.path set-up above

#: Debian package → driver jar (DESIGN §13: no JDBC in the plugins; these feed baselines only)
JARS = {
    "postgresql": ("libpostgresql-jdbc-java", "/usr/share/java/postgresql.jar"),
    "mariadb": ("libmariadb-java", "/usr/share/java/mariadb-java-client.jar"),
}


class DriverRss(RssSampler):
    """Peak RSS of this Python process alone: the in-process baselines (raw client, dlt) do
    their work here, and the idle JVM beside them is not theirs."""

    def sample(self) -> int:
        with contextlib.suppress(psutil.Error):
            return int(self._root.memory_info().rss)
        return 0


def measure_driver(fn: Callable[[], Any]) -> dict[str, Any]:
    return measure(fn, DriverRss())


def jdbc_jar(name: str) -> tuple[str | None, str]:
    """The jar's path, installing the Debian package when it is missing (root + apt-get);
    else ``None`` and why."""
    package, path = JARS[name]
    if Path(path).exists():
        return path, "found"
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return None, f"not available: {path} missing (apt-get install -y {package})"
    install = ["apt-get", "install", "-y", "--no-install-recommends", package]
    done = subprocess.run(install, capture_output=True, text=True, check=False)
    if done.returncode != 0:  # a fresh machine may have no package lists yet
        subprocess.run(["apt-get", "update"], capture_output=True, check=False)
        done = subprocess.run(install, capture_output=True, text=True, check=False)
    if Path(path).exists():
        return path, f"installed {package}"
    tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
    return None, f"not available: apt-get install {package} failed: {tail[0]}"


def start_spark(jars: list[str], app: str) -> tuple[Any, float]:
    """The session etl starts (``local[2]``, 2g driver) plus the baselines' JDBC jars; returns
    it and its start-up seconds (a fixed cost of etl and of the Spark JDBC baseline)."""
    import time

    from etl_core.config import EngineSpec
    from etl_core.run.engine import get_spark

    conf = {"spark.jars": ",".join(jars)} if jars else {}
    start = time.perf_counter()
    spark = get_spark(EngineSpec(master="local[2]", conf=conf), app)
    spark.range(1).count()
    return spark, time.perf_counter() - start


def spark_floor(spark: Any, parquet: Path, out: Path, partitions: int = 2) -> Callable[[], None]:
    """Spark's own part of any Python-data-source extract, without a database: PARQUET (the raw
    baseline's output) read back with pyarrow in PARTITIONS slices, yielded to Spark as Arrow
    batches, and written by Spark's Parquet writer to OUT. A connector built on Spark's Python
    Data Source API (as the plugins are) cannot be faster than this on the same machine."""
    import pyarrow.parquet as pq
    from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
    from pyspark.sql.pandas.types import to_arrow_schema

    schema = spark.read.parquet(str(parquet)).schema
    path = str(out.with_name(out.name + "-input.parquet"))  # untimed: 64k-row groups to share
    pq.write_table(pq.read_table(parquet), path, row_group_size=65536)
    groups = pq.ParquetFile(path).num_row_groups

    class Slices(DataSourceReader):
        def partitions(self) -> list[InputPartition]:
            return [InputPartition(i) for i in range(partitions)]

        def read(self, partition: InputPartition) -> Any:
            import pyarrow.parquet as pq

            mine = [g for g in range(groups) if g * partitions // groups == partition.value]
            table = pq.ParquetFile(path).read_row_groups(mine)
            yield from table.cast(to_arrow_schema(schema, timezone="UTC")).to_batches(65536)

    class Floor(DataSource):
        @classmethod
        def name(cls) -> str:
            return "bench_floor"

        def schema(self) -> Any:
            return schema

        def reader(self, schema: Any) -> DataSourceReader:
            return Slices()

    spark.dataSource.register(Floor)

    def run() -> None:
        spark.read.format("bench_floor").load().write.mode("overwrite").parquet(str(out))

    return run


def dlt_available() -> tuple[bool, str]:
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")  # no calls home from a benchmark
    try:
        import dlt  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        return False, f"not available: {exc} (pip install -r benchmarks/requirements.txt)"
    return True, "dlt " + __import__("dlt").__version__


class Results:
    """Rows of the results table, printed as they come and written to results/*.json."""

    def __init__(self, name: str, args: dict[str, Any]):
        self.name = name
        self.rows: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.meta = {
            "benchmark": name,
            "args": args,
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
            "load_at_start": os.getloadavg(),
        }
        print(f"{name}: load average at start {os.getloadavg()[0]:.1f}", flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def add_spark(
        self,
        case: str,
        side: str,
        rows: int,
        action: Callable[[], Any],
        args: Any,
        session_s: float,
    ) -> None:
        """A side that runs in the Spark session: its first run timed apart, ``args.warmup``
        untimed runs, then ``args.repeat`` timed ones (steady); the session start counts in
        its end-to-end figure."""
        first = measure(action)
        for _ in range(args.warmup):
            action()
        runs = [measure(action) for _ in range(args.repeat)]
        self.add(case, side, rows, runs, first=first, fixed_s=session_s)

    def add(
        self,
        case: str,
        side: str,
        rows: int,
        runs: list[dict[str, Any]],
        *,
        first: dict[str, Any] | None = None,
        fixed_s: float = 0.0,
    ) -> dict[str, Any]:
        """``runs``: the steady-state repetitions; ``first``: the first (cold) run in this
        process, if it was measured apart; ``fixed_s``: the session start this side needs
        (added to the cold run for the end-to-end figure)."""
        steady = statistics.median(r["seconds"] for r in runs)
        cold = (first or runs[0])["seconds"]
        row = {
            "case": case,
            "side": side,
            "rows": rows,
            "steady_s": round(steady, 2),
            "steady_rows_s": round(rows / steady),
            "first_s": round(cold, 2),
            "end_to_end_s": round(cold + fixed_s, 2),
            "end_to_end_rows_s": round(rows / (cold + fixed_s)),
            "cpu_s": round(statistics.median(r["cpu_seconds"] for r in runs), 2),
            "peak_rss_mib": round(max(r["peak_rss"] for r in runs) / 2**20),
            "load1": [round(r["load1"], 1) for r in ([first] if first else []) + runs],
            "seconds": [round(r["seconds"], 2) for r in runs],
        }
        self.rows.append(row)
        print(
            f"  {case:<8} {side:<44} steady {row['steady_s']:7.2f} s {row['steady_rows_s']:>10,}"
            f" rows/s | first {row['first_s']:6.2f} s, end-to-end {row['end_to_end_s']:6.2f} s"
            f" {row['end_to_end_rows_s']:>10,} rows/s | cpu {row['cpu_s']:6.1f} s | rss "
            f"{row['peak_rss_mib']:>5} MiB | load {row['load1']}",
            flush=True,
        )
        return row

    def ratio(self, case: str, ours: str, base: str, target: float | None = None) -> None:
        mine = next(r for r in self.rows if r["case"] == case and r["side"] == ours)
        theirs = next((r for r in self.rows if r["case"] == case and r["side"] == base), None)
        if theirs is None:
            return
        steady = theirs["steady_s"] / mine["steady_s"]
        e2e = theirs["end_to_end_s"] / mine["end_to_end_s"]
        goal = ""
        if target is not None:
            goal = f" (target >= {target:.1f}x: {'met' if steady >= target else 'MISSED'})"
        side = "etl" if ours.startswith("etl") else ours
        print(f"  ratio {case}: {side} / {base}: steady {steady:.2f}x, end-to-end {e2e:.2f}x{goal}")
        self.meta.setdefault("ratios", []).append(
            {
                "case": case,
                "side": ours,
                "baseline": base,
                "steady": round(steady, 2),
                "end_to_end": round(e2e, 2),
            }
        )

    def write(self) -> Path:
        folder = HERE / "results"
        folder.mkdir(exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        path = folder / f"{stamp}-{self.name}.json"
        self.meta["load_at_end"] = os.getloadavg()
        path.write_text(json.dumps({**self.meta, "rows": self.rows, "notes": self.notes}, indent=2))
        print(f"results: {path}", flush=True)
        return path
