"""Quality rules' cost: the same files → Parquet pipeline without rules, with 8 rules, and a
plain PySpark job computing one aggregate over the same columns, in one session and one run.

    python benchmarks/bench_quality.py [--rows 10000000] [--repeat 1]

Prints seconds, rows/s and the ratios (rules / no rules, rules / one aggregate).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

RULES = [
    {"not_null": ["id", "email"]},
    {"unique": ["id"]},
    {"range": {"column": "amount", "min": 0, "max": 1000}},
    {"regex": {"column": "email", "pattern": "@"}},
    {"accepted_values": {"column": "status", "values": ["paid", "refunded", "pending"]}},
    {"sql": "amount * 2 >= amount"},
    {"row_count": {"min": 1}},
    {"freshness": {"column": "updated_at", "max_age": "3650d"}},
]


def generate(spark, folder: Path, rows: int) -> None:
    spark.range(rows, numPartitions=8).selectExpr(
        "id",
        "concat('u', id, '@example.org') AS email",
        "cast(id % 1000 AS double) AS amount",
        "element_at(array('paid', 'refunded', 'pending'), cast(id % 3 AS int) + 1) AS status",
        "timestamp_seconds(1700000000 + id % 86400) AS updated_at",
    ).write.mode("overwrite").parquet(str(folder / "orders"))


def pipeline(rules: list | None) -> dict:
    spec = {
        "name": "bench_quality",
        "sources": {"orders": {"type": "files", "format": "parquet", "path": "orders"}},
        "sinks": {"out": {"type": "files", "input": "orders", "path": "out", "mode": "overwrite"}},
    }
    if rules:
        spec["validate"] = {"orders": {"rules": rules, "on_failure": "continue"}}
    return spec


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    from etl_core.config import EngineSpec
    from etl_core.engine import get_spark
    from etl_core.testing import run_pipeline

    spark = get_spark(EngineSpec(master="local[*]"), "bench-quality")
    work = Path(tempfile.mkdtemp(prefix="etl-bench-quality-"))
    try:
        generate(spark, work, args.rows)

        def etl(rules):
            return lambda: run_pipeline(pipeline(rules), spark=spark, base_dir=work)

        def one_aggregate():
            df = spark.read.parquet(str(work / "orders"))
            df.selectExpr(
                "count(email)", "max(amount)", "count_if(email rlike '@')", "max(updated_at)"
            ).collect()

        etl(None)()  # warm-up
        results = {}
        for label, action in (
            ("no rules", etl(None)),
            ("8 rules", etl(RULES)),
            ("one aggregate (PySpark)", one_aggregate),
        ):
            results[label] = statistics.median(timed(action) for _ in range(args.repeat))
        print(f"{'case':<26} {'seconds':>8} {'rows/s':>12}")
        for label, seconds in results.items():
            print(f"{label:<26} {seconds:>8.2f} {args.rows / seconds:>12,.0f}")
        print(f"8 rules / no rules:        {results['8 rules'] / results['no rules']:.2f}x")
        print(
            f"8 rules / one aggregate:   "
            f"{results['8 rules'] / results['one aggregate (PySpark)']:.2f}x"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
