"""MariaDB/MySQL connector figures, each beside its raw-client baseline in the same run.

    python benchmarks/bench_mysql.py [--rows 1000000] [--repeat 2] [--smoke]

1. Extract: a table of ROWS x 6 columns → Parquet through etl (``mysql`` source, 2 partitions,
   ``files`` sink) vs raw connectorx in one stream (``read_sql`` → ``pyarrow.parquet``).
2. Upsert: Parquet of ROWS rows (half of the keys new) → the table through etl (``mysql``
   sink, ``mode: upsert``) vs raw ``LOAD DATA LOCAL INFILE`` into a temporary table +
   ``INSERT … ON DUPLICATE KEY UPDATE`` with PyMySQL.

Needs the local MariaDB (127.0.0.1:3306, root without password). Creates and drops its own
database. Medians of ``--repeat`` runs; the machine is shared, so figures are noisy.
"""

from __future__ import annotations

import argparse
import decimal
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import connectorx
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pymysql

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


def timed(action: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_pipeline(pipeline: dict, base_dir: Path) -> None:
    from etl_core import Pipeline

    Pipeline(pipeline, base_dir=base_dir).run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="10k rows, one repeat")
    args = parser.parse_args()
    rows, repeat = (10_000, 1) if args.smoke else (args.rows, args.repeat)

    from etl_core.config import EngineSpec
    from etl_core.engine import get_spark

    os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
    get_spark(EngineSpec(master="local[2]", conf={"spark.sql.shuffle.partitions": "2"}))
    database = f"etl_bench_{uuid.uuid4().hex[:8]}"
    root = connect()
    with root.cursor() as cursor:
        cursor.execute("SET GLOBAL local_infile = 1")
        cursor.execute(f"CREATE DATABASE {database}")
    work = Path(tempfile.mkdtemp(prefix="etl-bench-mysql-"))
    connection = {"host": HOST, "port": PORT, "database": database}
    try:
        fill(database, rows)
        uri = f"mysql://root@{HOST}:{PORT}/{database}"

        # -- extract -----------------------------------------------------------------------
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
        run_pipeline(extract, work)  # warm-up: session, data source registration, JIT
        raw_s = timed(raw_extract, repeat)
        etl_s = timed(lambda: run_pipeline(extract, work), repeat)
        assert pq.read_table(work / "extract").num_rows == rows
        report("extract MariaDB → Parquet", rows, etl_s, raw_s, "connectorx 1 stream")

        # -- upsert ------------------------------------------------------------------------
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
                cursor.execute("INSERT INTO dst SELECT * FROM src")
            conn.close()

        def raw_upsert() -> None:
            path = work / "raw.csv"
            table = changes.set_column(5, "flag", changes.column("flag").cast(pa.int8()))
            pacsv.write_csv(
                table,
                path,
                pacsv.WriteOptions(
                    include_header=False, quoting_style="all_valid", null_string="NULL"
                ),
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

        upsert = {
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
        raw_times, etl_times = [], []
        for _ in range(repeat):
            reset()
            raw_times.append(timed(raw_upsert, 1))
            reset()
            etl_times.append(timed(lambda: run_pipeline(upsert, work), 1))
        check = connect(database)
        with check.cursor() as cursor:
            cursor.execute("SELECT COUNT(*), SUM(name = 'changed') FROM dst")
            total, changed = cursor.fetchone()
        check.close()
        assert (total, int(changed)) == (half + rows, rows), (total, changed)
        report(
            "upsert Parquet → MariaDB",
            rows,
            statistics.median(etl_times),
            statistics.median(raw_times),
            "LOAD DATA + ON DUPLICATE KEY",
        )
        print("note: 2 cores shared with other developers' test runs; figures are noisy")
    finally:
        with root.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {database}")
        root.close()
        shutil.rmtree(work, ignore_errors=True)


def report(label: str, rows: int, etl_s: float, raw_s: float, baseline: str) -> None:
    print(
        f"{label}: {rows} rows — etl {rows / etl_s:,.0f} rows/s ({etl_s:.2f} s), "
        f"{baseline} {rows / raw_s:,.0f} rows/s ({raw_s:.2f} s), ratio etl/raw "
        f"{raw_s / etl_s:.2f}x",
        flush=True,
    )


if __name__ == "__main__":
    main()
