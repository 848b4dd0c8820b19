"""Quality rules' cost: the same files → Parquet pipeline without rules, with 8 rules, and a
plain PySpark job computing one aggregate over the same columns, in one session and one run.

    python benchmarks/bench_quality.py [--rows 10000000] [--repeat 1]

Also the 7 rules without ``unique`` and ``unique`` alone (the one rule that needs a shuffle), and
the same rules written by hand in PySpark (with and without ``unique``): the floor Spark sets.
Prints the median seconds, rows/s, CPU seconds and peak RSS of the process tree (JVM and
Python), and the ratios (rules / no rules, rules / one aggregate); every case runs once
untimed first, then the repetitions alternate their order.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import measure, start_spark, summarize  # the shared runner's helpers

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    from etl_core.testing import run_pipeline

    spark = start_spark({})
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

        def by_hand(unique: bool):
            """The same 8 rules written directly in PySpark (flag columns, a window for
            unique, the counts observed while writing): what Spark itself needs for them."""

            def action():
                from pyspark.sql import Observation, Window
                from pyspark.sql import functions as F

                def flag(column):
                    return F.coalesce(column, F.lit(False))

                df = spark.read.parquet(str(work / "orders"))
                flags = {
                    "f0": flag(F.col("id").isNull()) | flag(F.col("email").isNull()),
                    "f2": flag((F.col("amount") < 0) | (F.col("amount") > 1000)),
                    "f3": flag(~F.col("email").contains("@")),
                    "f4": flag(~F.col("status").isin("paid", "refunded", "pending")),
                    "f5": flag(~F.coalesce(F.expr("amount * 2 >= amount"), F.lit(False))),
                }
                if unique:
                    same_id = F.count(F.lit(1)).over(Window.partitionBy("id")) > 1
                    flags["f1"] = flag(same_id & F.col("id").isNotNull())
                sums = [F.sum(F.col(f).cast("long")) for f in flags]
                observation = Observation("by_hand")
                df.withColumns(flags).observe(
                    observation, F.count(F.lit(1)), F.max("updated_at"), *sums
                ).drop(*flags).write.mode("overwrite").parquet(str(work / "by_hand"))
                observation.get  # noqa: B018 - waits for the observed counts

            return action

        cases = {
            "no rules": etl(None),
            "8 rules": etl(RULES),
            "7 rules (no unique)": etl([r for r in RULES if "unique" not in r]),
            "unique only": etl([r for r in RULES if "unique" in r]),
            "one aggregate (PySpark)": one_aggregate,
            "8 rules by hand (PySpark)": by_hand(True),
            "7 by hand, no unique": by_hand(False),
        }
        for action in cases.values():  # warm-up: every plan once, untimed
            action()
        runs: dict[str, list] = {label: [] for label in cases}
        for repetition in range(args.repeat):  # alternate the order between repetitions
            order = list(cases) if repetition % 2 == 0 else list(reversed(cases))
            for label in order:
                runs[label].append(measure(cases[label]))
        results = {label: summarize(r, args.rows) for label, r in runs.items()}
        print(f"\n{args.rows:,} rows, median of {args.repeat}; load {os.getloadavg()[0]:.1f}")
        print(f"{'case':<26} {'seconds':>8} {'rows/s':>12} {'CPU s':>7} {'peak RSS MiB':>13}")
        for label, r in results.items():
            print(
                f"{label:<26} {r['median_s']:>8.2f} {r['rows_per_s']:>12,} "
                f"{r['median_cpu_s']:>7.1f} {r['peak_rss_max'] / 2**20:>13,.0f}"
            )
        base = results["no rules"]
        for label in ("8 rules", "7 rules (no unique)", "unique only"):
            print(
                f"{label + ' / no rules:':<30} {results[label]['median_s'] / base['median_s']:.2f}x"
                f" wall, {results[label]['median_cpu_s'] / base['median_cpu_s']:.2f}x CPU"
            )
        for label, hand in (
            ("8 rules", "8 rules by hand (PySpark)"),
            ("7 rules (no unique)", "7 by hand, no unique"),
        ):
            ratio = results[label]["median_s"] / results[hand]["median_s"]
            print(f"{label + ' / by hand:':<30} {ratio:.2f}x wall")
        agg = results["one aggregate (PySpark)"]
        ratio = results["8 rules"]["median_s"] / agg["median_s"]
        print(f"{'8 rules / one aggregate:':<30} {ratio:.2f}x wall")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
