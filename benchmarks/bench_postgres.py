"""PostgreSQL connector benchmarks, each beside its raw-client baseline in the same run.

1. extract: N rows x 6 columns PostgreSQL → Parquet via etl (partitioned, on the executors)
   vs raw ADBC in one stream (fetch_record_batch → pyarrow ParquetWriter);
2. upsert: N rows from Parquet into a PostgreSQL table holding N rows, half the keys new, via
   etl (staging + INSERT … ON CONFLICT at publish) vs raw psycopg COPY (csv from pyarrow) into
   a temp table + INSERT … ON CONFLICT.

Run: python benchmarks/bench_postgres.py [--rows 1000000] [--partitions 2]
Needs the machine's PostgreSQL (127.0.0.1:5432, database test, trust auth).
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

PG = {"host": "127.0.0.1", "port": 5432, "dbname": "test", "user": "postgres"}
CONNECTION = {"host": "127.0.0.1", "port": 5432, "database": "test", "sslmode": "disable"}
URI = "postgresql://postgres@127.0.0.1:5432/test?sslmode=disable"

FILL = """
INSERT INTO {table} SELECT i, (i % 1000)::int, i * 0.5, 'name ' || i,
  timestamptz '2024-01-01' + i * interval '1 second', (i % 100000) / 100.0
FROM generate_series({low}, {high}) i
"""
COLUMNS = (
    "(id bigint PRIMARY KEY, a int, b double precision, c text, d timestamptz, e numeric(12,2))"
)


def timed(label: str, fn) -> float:
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    print(f"  {label:<44} {seconds:7.2f} s")
    return seconds


def raw_adbc_extract(table: str, out: Path) -> None:
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(URI) as conn, conn.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")
        reader = cursor.fetch_record_batch()
        with pq.ParquetWriter(out, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)


def raw_psycopg_upsert(table: str, parquet: Path) -> None:
    data = pq.read_table(parquet)
    buffer = io.BytesIO()
    pacsv.write_csv(data, buffer, pacsv.WriteOptions(include_header=False))
    with psycopg.connect(**PG) as conn:
        conn.execute(f"CREATE TEMP TABLE tmp (LIKE {table}) ON COMMIT DROP")
        with conn.cursor().copy("COPY tmp FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write(buffer.getvalue())
        conn.execute(
            f"INSERT INTO {table} SELECT * FROM tmp ON CONFLICT (id) DO UPDATE SET "
            "a = EXCLUDED.a, b = EXCLUDED.b, c = EXCLUDED.c, d = EXCLUDED.d, e = EXCLUDED.e"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=2)
    args = parser.parse_args()
    rows = args.rows

    from etl_core.config import EngineSpec
    from etl_core.engine import get_spark
    from etl_core.plugins import get_plugin_host
    from etl_core.testing import run_pipeline

    os.environ["BENCH_PG_USER"], os.environ["BENCH_PG_PASSWORD"] = "postgres", "unused"
    credentials = {
        "pg": {
            "provider": "env",
            "fields": {"user": "BENCH_PG_USER", "password": "BENCH_PG_PASSWORD"},
        }
    }
    schema = f"bench_pg_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(**PG, autocommit=True)
    admin.execute(f"CREATE SCHEMA {schema}")
    work = Path(tempfile.mkdtemp(prefix="bench_pg_"))
    try:
        source = f"{schema}.src"
        admin.execute(f"CREATE TABLE {source} {COLUMNS}")
        admin.execute(FILL.format(table=source, low=1, high=rows))
        admin.execute(f"VACUUM ANALYZE {source}")
        spark = get_spark(EngineSpec(master="local[2]"), "bench-postgres")
        host = get_plugin_host()

        def etl(sources: dict, sinks: dict, base: Path) -> None:
            pipeline = {
                "name": "bench",
                "credentials": credentials,
                "sources": sources,
                "sinks": sinks,
            }
            run_pipeline(pipeline, spark=spark, host=host, base_dir=base)

        pg_source = {
            "type": "postgres",
            "table": source,
            "connection": CONNECTION,
            "credentials": "pg",
            "partition_column": "id",
            "partitions": args.partitions,
        }
        warm = work / "warm"
        warm.mkdir()
        etl(
            {"s": {**pg_source, "where": "id <= 1000"}},
            {"o": {"type": "files", "input": "s", "path": "o"}},
            warm,
        )  # JVM + workers warm

        print(f"extract: {rows:,} rows x 6 columns, PostgreSQL -> Parquet")
        raw = timed("raw ADBC, one stream", lambda: raw_adbc_extract(source, work / "raw.parquet"))
        base = work / "extract"
        base.mkdir()
        ours = timed(
            f"etl ({args.partitions} partitions, local[2])",
            lambda: etl(
                {"s": pg_source}, {"o": {"type": "files", "input": "s", "path": "o"}}, base
            ),
        )
        print(
            f"  rows/s: raw {rows / raw:,.0f}  etl {rows / ours:,.0f}  ratio etl/raw "
            f"{raw / ours:.2f}x"
        )

        print(f"upsert: {rows:,} rows (half new keys) Parquet -> PostgreSQL table of {rows:,}")
        parquet = work / "upsert.parquet"
        half = rows // 2
        scratch = f"{schema}.scratch"
        admin.execute(f"CREATE TABLE {scratch} {COLUMNS}")
        admin.execute(FILL.format(table=scratch, low=half + 1, high=half + rows))
        pq.write_table(psycopg_table(admin, scratch), parquet)
        results = {}
        for label, fn in (
            ("raw psycopg COPY + ON CONFLICT", lambda t: raw_psycopg_upsert(t, parquet)),
            (
                "etl (stage with ADBC, publish ON CONFLICT)",
                lambda t: etl(
                    {"s": {"type": "files", "format": "parquet", "path": str(parquet)}},
                    {
                        "o": {
                            "type": "postgres",
                            "input": "s",
                            "table": t,
                            "mode": "upsert",
                            "key": ["id"],
                            "connection": CONNECTION,
                            "credentials": "pg",
                        }
                    },
                    work / f"up-{uuid.uuid4().hex[:6]}",
                ),
            ),
        ):
            target = f"{schema}.t_{uuid.uuid4().hex[:6]}"
            admin.execute(f"CREATE TABLE {target} {COLUMNS}")
            admin.execute(FILL.format(table=target, low=1, high=rows))
            admin.execute(f"VACUUM ANALYZE {target}")
            (work / "up").mkdir(exist_ok=True)
            results[label] = timed(label, lambda fn=fn, target=target: fn(target))
            (count,) = admin.execute(f"SELECT count(*) FROM {target}").fetchone()
            assert count == rows + half, (label, count)
        raw_s, etl_s = results.values()
        print(
            f"  rows/s: raw {rows / raw_s:,.0f}  etl {rows / etl_s:,.0f}  ratio etl/raw "
            f"{raw_s / etl_s:.2f}x"
        )
        print("note: 2 shared cores; figures are noisy (other test runs share the machine)")
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def psycopg_table(conn: psycopg.Connection, table: str):
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(URI) as a, a.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")
        data = cursor.fetch_arrow_table()
    numeric = data.schema.get_field_index("e")
    import pyarrow as pa

    column = data.column(numeric)
    storage = pa.chunked_array([c.storage for c in column.chunks], pa.string())
    return data.set_column(numeric, "e", storage.cast(pa.decimal128(12, 2)))


if __name__ == "__main__":
    main()
