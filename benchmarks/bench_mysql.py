"""MariaDB/MySQL connector figures, each beside its raw-client baseline in the same run.

    python benchmarks/bench_mysql.py [--rows 1000000] [--repeat 2] [--smoke]

1. Extract: a table of ROWS x 6 columns → Parquet through etl (``mysql`` source, 2 partitions,
   ``files`` sink) vs raw connectorx in one stream (``read_sql`` → ``pyarrow.parquet``), vs
   Spark's JDBC reader (MariaDB Connector/J from Debian's ``libmariadb-java``, 2 partitions),
   and vs the Spark floor: the raw side's Parquet file fed to Spark by a Python data source
   from memory and written by Spark (what any Python-data-source connector costs, no database).
   Then, each a fresh spawned process (``spawned.py``): ``etl run`` without and with the
   class-data archive, Spark JDBC and dlt (``sql_table``, connectorx): end to end.
2. Upsert: Parquet of ROWS rows (half of the keys new) → the table through etl (``mysql``
   sink, ``mode: upsert``) vs raw ``LOAD DATA LOCAL INFILE`` into a temporary table +
   ``INSERT … ON DUPLICATE KEY UPDATE`` with PyMySQL.

Needs the local MariaDB (127.0.0.1:3306, root without password). Creates and drops its own
database. Figures as in bench_postgres.py: *steady* = median of ``--repeat`` runs after one
untimed run at the same size, *first* = that run, *end-to-end* = first + Spark session start
(etl and Spark JDBC). The machine is shared, so figures are noisy: see the load averages.
"""

from __future__ import annotations

import argparse
import decimal
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import connectorx
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pymysql
import spawned
from dbbench import (
    Results,
    dlt_available,
    jdbc_jar,
    measure,
    measure_driver,
    spark_floor,
    start_spark,
)

HOST, PORT = "127.0.0.1", 3306


def connect(database: str | None = None) -> pymysql.Connection:
    return pymysql.connect(
        host=HOST,
        port=PORT,
        user="root",
        password="",
        database=database,
        autocommit=True,
        local_infile=True,
        init_command="SET time_zone = '+00:00'",
    )


def fill(database: str, rows: int) -> None:
    """ROWS x 6 columns: id, user_id, amount, name, created_at, flag (server-side, untimed)."""
    conn = connect(database)
    with conn.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE src (id BIGINT PRIMARY KEY, user_id INT, amount DECIMAL(12,2), "
            "name VARCHAR(40), created_at DATETIME(6), flag TINYINT(1))"
        )
        cursor.execute(
            "INSERT INTO src SELECT seq, seq % 1000, (seq % 100000) / 100, "
            "CONCAT('name-', seq), '2024-01-01' + INTERVAL seq SECOND, seq % 2 "
            f"FROM seq_1_to_{rows}"
        )
    conn.close()


def run_pipeline(pipeline: dict, base_dir: Path) -> None:
    from etl_core import Pipeline

    Pipeline(pipeline, base_dir=base_dir).run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--upsert-rows", type=int, help="rows of the upsert (default: --rows)")
    parser.add_argument("--repeat", type=int, default=2, help="steady-state repetitions")
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed runs between the first and the steady ones"
    )
    parser.add_argument("--cases", default="extract,upsert")
    parser.add_argument("--baselines", default="raw,jdbc,floor,spawned")
    parser.add_argument("--smoke", action="store_true", help="10k rows, one repeat, no JDBC")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.upsert_rows, args.repeat = 10_000, None, 1
        args.baselines = "raw,floor,spawned"
        args.warmup = 0
    rows, repeat = args.rows, args.repeat
    if (args.upsert_rows or rows) > rows:
        parser.error("--upsert-rows must not exceed --rows (the upsert's target is a copy of src)")
    cases, baselines = set(args.cases.split(",")), set(args.baselines.split(","))
    results = Results("mysql", vars(args))
    jar, jar_note = jdbc_jar("mariadb") if "jdbc" in baselines else (None, "not asked for")
    results.note(f"Spark JDBC baseline: {jar_note}")

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark, session_s = start_spark([jar] if jar else [], "bench-mysql")
    results.note(f"Spark session start (etl and Spark JDBC only): {session_s:.1f} s")
    database = f"etl_bench_{uuid.uuid4().hex[:8]}"
    root = connect()
    with root.cursor() as cursor:
        cursor.execute("SET GLOBAL local_infile = 1")
        cursor.execute(f"CREATE DATABASE {database}")
    work = Path(tempfile.mkdtemp(prefix="etl-bench-mysql-"))
    connection = {"host": HOST, "port": PORT, "database": database}

    def steady(fn: Callable[[], None], driver: bool = False) -> list[dict]:
        return [(measure_driver if driver else measure)(fn) for _ in range(repeat)]

    try:
        fill(database, rows)
        uri = f"mysql://root@{HOST}:{PORT}/{database}"

        # -- extract -----------------------------------------------------------------------
        if "extract" in cases:
            print(f"extract: {rows:,} rows x 6 columns, MariaDB -> Parquet", flush=True)

            def raw_extract() -> None:
                table = connectorx.read_sql(uri, "SELECT * FROM src", return_type="arrow")
                pq.write_table(table, work / "raw.parquet")

            extract = {
                "name": "bench_extract",
                "sources": {
                    "src": {
                        "type": "mysql",
                        "connection": connection,
                        "table": "src",
                        "partition_column": "id",
                        "partitions": 2,
                    }
                },
                "sinks": {
                    "out": {"type": "files", "input": "src", "path": "extract", "mode": "overwrite"}
                },
            }
            label = "etl (2 partitions, local[2])"
            results.add_spark(
                "extract", label, rows, lambda: run_pipeline(extract, work), args, session_s
            )
            assert pq.read_table(work / "extract").num_rows == rows
            if "raw" in baselines:
                results.add(
                    "extract", "raw connectorx, one stream", rows, steady(raw_extract, True)
                )
                results.ratio("extract", label, "raw connectorx, one stream", 1.0)
            if "floor" in baselines and "raw" in baselines:
                floor = spark_floor(spark, work / "raw.parquet", work / "floor")
                floor_label = "Spark floor: Python data source, no database"
                results.add_spark("extract", floor_label, rows, floor, args, session_s)
                results.ratio("extract", floor_label, "raw connectorx, one stream")
            if jar:

                def jdbc() -> None:
                    spark.read.jdbc(
                        # jdbc:mysql: (MariaDB's driver takes it) selects Spark's MySQL dialect,
                        # which quotes names with backquotes ("id" would be a string)
                        f"jdbc:mysql://{HOST}:{PORT}/{database}",
                        "src",
                        column="id",
                        lowerBound=1,
                        upperBound=rows + 1,
                        numPartitions=2,
                        properties={
                            "user": "root",
                            "password": "",
                            "driver": "org.mariadb.jdbc.Driver",
                            "fetchsize": "10000",
                        },
                    ).write.mode("overwrite").parquet(str(work / "jdbc"))

                results.add_spark(
                    "extract", "Spark JDBC, 2 partitions", rows, jdbc, args, session_s
                )
                assert spark.read.parquet(str(work / "jdbc")).count() == rows
                results.ratio("extract", label, "Spark JDBC, 2 partitions")
            if "spawned" in baselines:
                jdbc_args = {
                    "url": f"jdbc:mysql://{HOST}:{PORT}/{database}",
                    "driver": "org.mariadb.jdbc.Driver",
                    "jar": jar,
                    "table": "src",
                    "rows": rows,
                    "out": str(work / "jdbc-spawned"),
                    "user": "root",
                    "password": "",
                }
                has_dlt, dlt_note = dlt_available()
                results.note(f"dlt (spawned only): {dlt_note}")
                dlt_args = {
                    "credentials": f"mysql+pymysql://root@{HOST}:{PORT}/{database}",
                    "schema": database,
                    "table": "src",
                    "out": str(work / "dlt"),
                }
                extract["engine"] = {"master": "local[2]"}
                others = {}
                if jar:
                    others["Spark JDBC, 2 partitions"] = spawned.jdbc_side(work, jdbc_args)
                if has_dlt:
                    others["dlt sql_table -> parquet"] = spawned.dlt_side(work, dlt_args)
                times = spawned.compare(extract, work, repeat, others)
                for name, took in times.items():
                    results.note(f"spawned, end to end: {name}: {took:.2f} s")

        # -- upsert ------------------------------------------------------------------------
        if "upsert" in cases:
            upsert(database, args.upsert_rows or rows, work, connection, results, args, session_s)
        results.note(
            "2 cores shared with other agents' test runs: see the load averages; steady = "
            "median after one untimed run at the same size"
        )
        results.write()
    finally:
        with root.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {database}")
        root.close()
        shutil.rmtree(work, ignore_errors=True)


def upsert(
    database: str,
    rows: int,
    work: Path,
    connection: dict,
    results: Results,
    args: argparse.Namespace,
    session_s: float,
) -> None:
    print(
        f"upsert: {rows:,} rows (half new keys), Parquet -> MariaDB table of {rows:,}", flush=True
    )
    half = rows // 2
    ids = pa.array(range(half + 1, half + 1 + rows), pa.int64())  # half old, half new
    changes = pa.table(
        {
            "id": ids,
            "user_id": pa.array([7] * rows, pa.int32()),
            "amount": pa.array([decimal.Decimal("1.00")] * rows, pa.decimal128(12, 2)),
            "name": pa.array(["changed"] * rows),
            "created_at": pa.array([0] * rows, pa.int64()).cast(pa.timestamp("us")),
            "flag": pa.array([True] * rows),
        }
    )
    (work / "changes").mkdir()
    for i in range(2):
        pq.write_table(
            changes.slice(i * half, half if i == 0 else rows - half),
            work / "changes" / f"part-{i}.parquet",
        )

    def reset() -> None:
        conn = connect(database)
        with conn.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS dst")
            cursor.execute("CREATE TABLE dst LIKE src")
            cursor.execute(f"INSERT INTO dst SELECT * FROM src WHERE id <= {rows}")
        conn.close()

    def check() -> None:
        conn = connect(database)
        with conn.cursor() as cursor:
            cursor.execute("SELECT COUNT(*), SUM(name = 'changed') FROM dst")
            total, changed = cursor.fetchone()
        conn.close()
        assert (total, int(changed)) == (half + rows, rows), (total, changed)

    def raw_upsert() -> None:
        path = work / "raw.csv"
        table = pq.read_table(work / "changes")
        table = table.set_column(5, "flag", table.column("flag").cast(pa.int8()))
        pacsv.write_csv(
            table,
            path,
            pacsv.WriteOptions(include_header=False, quoting_style="all_valid", null_string="NULL"),
        )
        conn = connect(database)
        conn.autocommit(False)
        with conn.cursor() as cursor:
            cursor.execute("CREATE TEMPORARY TABLE stage LIKE dst")
            cursor.execute(
                "LOAD DATA LOCAL INFILE %s INTO TABLE stage CHARACTER SET utf8mb4 FIELDS "
                "TERMINATED BY ',' ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY '\\n'",
                (str(path),),
            )
            cursor.execute(
                "INSERT INTO dst SELECT * FROM stage ON DUPLICATE KEY UPDATE "
                "user_id = VALUES(user_id), amount = VALUES(amount), name = VALUES(name), "
                "created_at = VALUES(created_at), flag = VALUES(flag)"
            )
        conn.commit()
        conn.close()

    pipeline = {
        "name": "bench_upsert",
        "sources": {"changes": {"type": "files", "format": "parquet", "path": "changes"}},
        "sinks": {
            "out": {
                "type": "mysql",
                "input": "changes",
                "connection": connection,
                "table": "dst",
                "mode": "upsert",
                "key": ["id"],
            }
        },
    }

    def runs_of(fn: Callable[[], None], count: int, driver: bool = False) -> list[dict]:
        done = []
        for _ in range(count):
            reset()
            done.append((measure_driver if driver else measure)(fn))
            check()
        return done

    label = "etl (stage LOAD DATA, publish in one transaction)"
    etl = lambda: run_pipeline(pipeline, work)  # noqa: E731
    first = runs_of(etl, 1)[0]
    runs_of(etl, args.warmup)
    results.add("upsert", label, rows, runs_of(etl, args.repeat), first=first, fixed_s=session_s)
    raw = runs_of(raw_upsert, args.repeat, True)
    results.add("upsert", "raw LOAD DATA + ON DUPLICATE KEY", rows, raw)
    results.ratio("upsert", label, "raw LOAD DATA + ON DUPLICATE KEY")


if __name__ == "__main__":
    main()
