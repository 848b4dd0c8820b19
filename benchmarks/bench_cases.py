"""The benchmark cases, shared by ``run.py`` and ``test_bench.py``.

Each case has input tables (generated once per size by Spark itself, never timed), an etl
pipeline built only from the core's built-ins, and a plain PySpark baseline that does exactly
the same work with the same expressions. Both write Parquet (snappy, Spark's default).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl_core import config
from etl_core.plugins import PluginHost, get_plugin_host
from etl_core.run.runner import run

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

STATUSES = ("paid", "pending", "refunded", "cancelled")
CATEGORIES = tuple(f"cat{i:02d}" for i in range(20))
COUNTRIES = tuple(f"C{i:02d}" for i in range(30))
SEGMENTS = ("consumer", "small", "mid", "enterprise", "public")


def users_for(rows: int) -> int:
    """The size of the users dimension for ``rows`` orders: one user per 100 orders."""
    return max(1_000, rows // 100)


def _pick(values: tuple[str, ...], seed: int) -> str:
    array = ", ".join(f"'{v}'" for v in values)
    return f"element_at(array({array}), CAST(pmod(xxhash64(id, {seed}), {len(values)}) AS INT) + 1)"


def _files(rows: int) -> int:
    return max(2, min(16, rows // 500_000))


def generate_orders(spark: SparkSession, path: Path, rows: int) -> None:
    """``id, user_id, amount, status, category, ts``: 6 columns, pseudo-random but reproducible."""
    users = users_for(rows)
    (
        spark.range(rows, numPartitions=_files(rows))
        .selectExpr(
            "id",
            f"pmod(xxhash64(id, 1), {users}) AS user_id",
            "CAST(pmod(xxhash64(id, 2), 100000) AS DOUBLE) / 100 AS amount",
            f"{_pick(STATUSES, 3)} AS status",
            f"{_pick(CATEGORIES, 4)} AS category",
            "timestamp_seconds(1700000000 + pmod(xxhash64(id, 5), 7776000)) AS ts",
        )
        .write.mode("overwrite")
        .parquet(str(path))
    )


def generate_users(spark: SparkSession, path: Path, rows: int) -> None:
    """``user_id, name, country, segment`` for the users that ``rows`` orders refer to."""
    (
        spark.range(users_for(rows), numPartitions=1)
        .selectExpr(
            "id AS user_id",
            "concat('user', id) AS name",
            f"{_pick(COUNTRIES, 6)} AS country",
            f"{_pick(SEGMENTS, 7)} AS segment",
        )
        .write.mode("overwrite")
        .parquet(str(path))
    )


#: table name -> generator; tables are shared by the cases that read them
TABLES: dict[str, Callable[[SparkSession, Path, int], None]] = {
    "orders": generate_orders,
    "users": generate_users,
}


@dataclass(frozen=True)
class Case:
    name: str
    summary: str
    tables: tuple[str, ...]
    #: the pipeline mapping, given the folder that holds the input tables
    pipeline: Callable[[Path], dict[str, Any]]
    #: the same work in plain PySpark: (spark, input folder, output folder)
    baseline: Callable[[SparkSession, Path, Path], None]
    #: what to compare between the two outputs (aggregate expressions), to check they agree
    checks: tuple[str, ...]


def _sink(input_name: str) -> dict[str, Any]:
    return {
        "type": "files",
        "input": input_name,
        "format": "parquet",
        "path": "etl_out",
        "mode": "overwrite",
    }


def _source(data: Path, table: str) -> dict[str, Any]:
    return {"type": "files", "format": "parquet", "path": str(data / table)}


# -- filter_derive: files -> filter + two derived columns -> Parquet --------------------------

FILTER = "status = 'paid' AND amount >= 10"
DERIVED = ("round(amount * 1.2, 2) AS amount_gross", "to_date(ts) AS day")


def filter_derive_pipeline(data: Path) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "bench_filter_derive",
        "sources": {"orders": _source(data, "orders")},
        "transforms": {
            "paid": {"type": "filter", "inputs": ["orders"], "condition": FILTER},
            "derived": {"type": "select", "inputs": ["paid"], "columns": ["*", *DERIVED]},
        },
        "sinks": {"out": _sink("derived")},
    }


def filter_derive_baseline(spark: SparkSession, data: Path, out: Path) -> None:
    df = spark.read.parquet(str(data / "orders"))
    df = df.filter(FILTER).selectExpr("*", *DERIVED)
    df.write.mode("overwrite").parquet(str(out))


# -- join_aggregate: two file sources joined, then group by + sum/count -> Parquet -------------

AGGREGATE = (
    "SELECT country, segment, status, count(*) AS orders, sum(amount) AS revenue "
    "FROM joined GROUP BY country, segment, status"
)


def join_aggregate_pipeline(data: Path) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "bench_join_aggregate",
        "sources": {"orders": _source(data, "orders"), "users": _source(data, "users")},
        "transforms": {
            "joined": {"type": "join", "inputs": ["orders", "users"], "on": ["user_id"]},
            # `aggregate` is not a built-in yet: the aggregation is a `sql` transform
            "totals": {"type": "sql", "inputs": ["joined"], "query": AGGREGATE},
        },
        "sinks": {"out": _sink("totals")},
    }


def join_aggregate_baseline(spark: SparkSession, data: Path, out: Path) -> None:
    from pyspark.sql import functions as F

    orders = spark.read.parquet(str(data / "orders"))
    users = spark.read.parquet(str(data / "users"))
    df = (
        orders.join(users, on=["user_id"], how="inner")
        .groupBy("country", "segment", "status")
        .agg(F.count("*").alias("orders"), F.sum("amount").alias("revenue"))
    )
    df.write.mode("overwrite").parquet(str(out))


CASES: dict[str, Case] = {
    case.name: case
    for case in (
        Case(
            "filter_derive",
            "Parquet -> filter + 2 derived columns -> Parquet",
            ("orders",),
            filter_derive_pipeline,
            filter_derive_baseline,
            ("count(*)", "round(sum(amount_gross), 2)", "count(DISTINCT day)"),
        ),
        Case(
            "join_aggregate",
            "2 Parquet sources joined -> group by + count/sum -> Parquet",
            ("orders", "users"),
            join_aggregate_pipeline,
            join_aggregate_baseline,
            ("count(*)", "sum(orders)", "round(sum(revenue), 2)"),
        ),
    )
}


def generate(spark: SparkSession, case: Case, data: Path, rows: int) -> None:
    """Write the case's input tables under ``data`` unless they are already there."""
    for table in case.tables:
        if not (data / table).is_dir():
            TABLES[table](spark, data / table, rows)


def run_etl(
    spark: SparkSession,
    case: Case,
    data: Path,
    base_dir: Path,
    host: PluginHost | None = None,
) -> Any:
    """The etl side, as ``etl run`` does it: ``config.check`` then ``runner.run``."""
    host = host or get_plugin_host(autoload=False)
    bound = config.check(data=case.pipeline(data), base_dir=base_dir, host=host)
    metrics = run(bound, host, spark=spark)
    if metrics.status != "succeeded":  # run() raises on failure; this is belt and braces
        raise RuntimeError(f"{case.name}: etl run {metrics.status}: {metrics.error}")
    return metrics


def run_baseline(spark: SparkSession, case: Case, data: Path, base_dir: Path) -> None:
    case.baseline(spark, data, base_dir / "baseline_out")


def _summary(df: DataFrame, checks: tuple[str, ...]) -> Mapping[str, Any]:
    return df.selectExpr(*checks).first().asDict()


def compare_outputs(spark: SparkSession, case: Case, base_dir: Path) -> None:
    """Both sides must have written the same result (checked outside the timings)."""
    etl = _summary(spark.read.parquet(str(base_dir / "etl_out")), case.checks)
    baseline = _summary(spark.read.parquet(str(base_dir / "baseline_out")), case.checks)
    if etl != baseline:
        raise AssertionError(f"{case.name}: etl wrote {etl}, the baseline {baseline}")
