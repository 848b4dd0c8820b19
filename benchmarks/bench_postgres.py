"""PostgreSQL connector benchmarks, each etl figure beside its baselines measured in the same run.

1. extract: ROWS x 6 columns, PostgreSQL → Parquet. etl (``postgres`` source with
   ``partitions``, ``files`` sink) vs raw ADBC in one stream (``fetch_record_batch`` →
   pyarrow ``ParquetWriter``), vs raw connectorx in one stream (``read_sql`` → Parquet), vs
   Spark's JDBC reader with 2 partitions (same session), vs dlt's ``sql_database``
   (connectorx backend) → parquet files. Then, each a fresh spawned process (``spawned.py``):
   ``etl run`` without and with the class-data archive, Spark JDBC, dlt: end to end, as a
   scheduler starts them.
2. upsert: UPSERT_ROWS rows from Parquet (two files) into a table holding UPSERT_ROWS rows,
   half of the keys new. etl (``postgres`` sink, ``mode: upsert``) vs raw psycopg ``COPY``
   (CSV from pyarrow) into a temp table + ``INSERT … ON CONFLICT``, vs dlt's ``merge``
   (postgres destination), and vs the floor of any one-transaction publish: the ``MERGE``
   alone, from a table already holding the rows.

Figures: *steady* = median of ``--repeat`` runs after the first run and ``--warmup`` untimed
ones at the same size (JVM warm: JIT-compiled, Python workers up); *first* = the first run;
*end-to-end* = first run + the Spark session start for the sides that need a session (etl,
Spark JDBC). See README.md ("Database connectors").

    python benchmarks/bench_postgres.py [--rows 1000000] [--upsert-rows N] [--repeat 2]
        [--warmup 1] [--partitions 2] [--cases extract,upsert]
        [--baselines raw,jdbc,dlt,floor,spawned]

Needs the machine's PostgreSQL (127.0.0.1:5432, database test, trust auth).
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import spawned
from dbbench import Results, dlt_available, jdbc_jar, measure, measure_driver, start_spark

PG = {"host": "127.0.0.1", "port": 5432, "dbname": "test", "user": "postgres"}
CONNECTION = {"host": "127.0.0.1", "port": 5432, "database": "test", "sslmode": "disable"}
URI = "postgresql://postgres:unused@127.0.0.1:5432/test?sslmode=disable"
JDBC_URL = "jdbc:postgresql://127.0.0.1:5432/test"

FILL = """
INSERT INTO {table} SELECT i, (i % 1000)::int, i * 0.5, '{prefix} ' || i,
  timestamptz '2024-01-01' + i * interval '1 second', (i % 100000) / 100.0
FROM generate_series({low}, {high}) i
"""
COLUMNS = (
    "(id bigint PRIMARY KEY, a int, b double precision, c text, d timestamptz, e numeric(12,2))"
)
SET = "a = EXCLUDED.a, b = EXCLUDED.b, c = EXCLUDED.c, d = EXCLUDED.d, e = EXCLUDED.e"
MERGE = (
    "MERGE INTO {target} AS t USING {source} AS s ON t.id = s.id WHEN MATCHED THEN UPDATE SET "
    "a = s.a, b = s.b, c = s.c, d = s.d, e = s.e "
    "WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.a, s.b, s.c, s.d, s.e)"
)


def fill(admin: psycopg.Connection, table: str, low: int, high: int, prefix: str = "name") -> None:
    admin.execute(f"CREATE TABLE {table} {COLUMNS}")
    admin.execute(FILL.format(table=table, low=low, high=high, prefix=prefix))
    admin.execute(f"VACUUM ANALYZE {table}")


def raw_adbc_extract(table: str, out: Path) -> None:
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(URI) as conn, conn.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")
        reader = cursor.fetch_record_batch()
        with pq.ParquetWriter(out, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)


def raw_connectorx_extract(table: str, out: Path) -> None:
    import connectorx

    data = connectorx.read_sql(URI, f"SELECT * FROM {table}", return_type="arrow")
    pq.write_table(data, out)


def raw_psycopg_upsert(table: str, parquet: Path) -> None:
    data = pq.read_table(parquet)
    buffer = io.BytesIO()
    pacsv.write_csv(data, buffer, pacsv.WriteOptions(include_header=False))
    with psycopg.connect(**PG) as conn:
        conn.execute(f"CREATE TEMP TABLE tmp (LIKE {table}) ON COMMIT DROP")
        with conn.cursor().copy("COPY tmp FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write(buffer.getvalue())
        conn.execute(f"INSERT INTO {table} SELECT * FROM tmp ON CONFLICT (id) DO UPDATE SET {SET}")


def spark_jdbc_extract(spark: Any, table: str, rows: int, out: Path) -> None:
    """Spark's JDBC reader, 2 partitions on the key range, 10,000 rows per fetch (the
    PostgreSQL driver's default fetch size 0 would buffer each partition whole)."""
    df = spark.read.jdbc(
        JDBC_URL,
        table,
        column="id",
        lowerBound=1,
        upperBound=rows + 1,
        numPartitions=2,
        properties={"user": "postgres", "driver": "org.postgresql.Driver", "fetchsize": "10000"},
    )
    df.write.mode("overwrite").parquet(str(out))


def dlt_extract(schema: str, table: str, out: Path) -> None:
    """dlt's sql_database source with its fastest backend here (connectorx, Arrow) →
    filesystem destination, parquet files (extract + normalize + load)."""
    import dlt
    from dlt.sources.sql_database import sql_table

    source = sql_table(
        credentials="postgresql://postgres:unused@127.0.0.1:5432/test?sslmode=disable",
        schema=schema,
        table=table,
        backend="connectorx",
        reflection_level="full_with_precision",
    )
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_pg_{uuid.uuid4().hex[:8]}",
        pipelines_dir=str(out / "pipelines"),
        destination=dlt.destinations.filesystem(bucket_url=str(out / "data")),
        dataset_name="extract",
        progress=None,
    )
    pipeline.run(source, loader_file_format="parquet")


def dlt_merge(dataset: str, parquet: Path, work: Path, *, initial: bool) -> None:
    """dlt's ``merge`` write disposition into PostgreSQL (staging dataset + merge SQL); the
    Arrow table goes in as dlt's fastest file format for this destination (csv, COPY)."""
    import dlt

    data = pq.read_table(parquet)
    resource = dlt.resource(
        [data],
        name="target",
        primary_key="id",
        write_disposition="replace" if initial else "merge",
    )
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_pg_merge_{dataset}",
        pipelines_dir=str(work / "dlt-pipelines"),
        destination=dlt.destinations.postgres(
            "postgresql://postgres:unused@127.0.0.1:5432/test?sslmode=disable"
        ),
        dataset_name=dataset,
        progress=None,
    )
    pipeline.run(resource, loader_file_format="csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the extract")
    parser.add_argument("--upsert-rows", type=int, help="rows of the upsert (default: --rows)")
    parser.add_argument("--repeat", type=int, default=2, help="steady-state repetitions")
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed runs between the first and the steady ones"
    )
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--cases", default="extract,upsert")
    parser.add_argument("--baselines", default="raw,jdbc,dlt,floor,spawned")
    args = parser.parse_args()
    rows, upsert_rows = args.rows, args.upsert_rows or args.rows
    cases, baselines = set(args.cases.split(",")), set(args.baselines.split(","))
    results = Results("postgres", vars(args))

    jar, jar_note = jdbc_jar("postgresql") if "jdbc" in baselines else (None, "not asked for")
    results.note(f"Spark JDBC baseline: {jar_note}")
    has_dlt, dlt_note = dlt_available() if "dlt" in baselines else (False, "not asked for")
    results.note(f"dlt baseline: {dlt_note}")

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
    dlt_datasets: list[str] = []
    try:
        spark, session_s = start_spark([jar] if jar else [], "bench-postgres")
        results.note(f"Spark session start (etl and Spark JDBC only): {session_s:.1f} s")
        host = get_plugin_host(autoload=True)

        def etl(sources: dict, sinks: dict) -> None:
            pipeline = {
                "name": "bench",
                "credentials": credentials,
                "sources": sources,
                "sinks": sinks,
            }
            base = work / f"run-{uuid.uuid4().hex[:8]}"
            base.mkdir()
            run_pipeline(pipeline, spark=spark, host=host, base_dir=base)

        def steady(fn: Any, driver: bool = False) -> list[dict[str, Any]]:
            return [(measure_driver if driver else measure)(fn) for _ in range(args.repeat)]

        if "extract" in cases:
            source = f"{schema}.src"
            fill(admin, source, 1, rows)
            pg_source = {
                "type": "postgres",
                "table": source,
                "connection": CONNECTION,
                "credentials": "pg",
                "partition_column": "id",
                "partitions": args.partitions,
            }
            sink = {"o": {"type": "files", "input": "s", "path": "out", "mode": "overwrite"}}
            print(f"extract: {rows:,} rows x 6 columns, PostgreSQL -> Parquet", flush=True)
            label = f"etl ({args.partitions} partitions, local[2])"

            def etl_extract() -> None:
                etl({"s": pg_source}, sink)

            results.add_spark("extract", label, rows, etl_extract, args, session_s)
            if "raw" in baselines:
                out = work / "raw.parquet"
                raw = steady(lambda: raw_adbc_extract(source, out), driver=True)
                assert pq.ParquetFile(out).metadata.num_rows == rows
                results.add("extract", "raw ADBC, one stream", rows, raw)
                results.ratio("extract", label, "raw ADBC, one stream", 1.0)
                raw = steady(lambda: raw_connectorx_extract(source, out), driver=True)
                assert pq.ParquetFile(out).metadata.num_rows == rows
                results.add("extract", "raw connectorx, one stream", rows, raw)
                results.ratio("extract", label, "raw connectorx, one stream", 1.0)
            if jar:
                out = work / "jdbc"
                jdbc = functools.partial(spark_jdbc_extract, spark, source, rows, out)
                results.add_spark(
                    "extract", "Spark JDBC, 2 partitions", rows, jdbc, args, session_s
                )
                assert spark.read.parquet(str(out)).count() == rows
                results.ratio("extract", label, "Spark JDBC, 2 partitions")
            if has_dlt:
                out = work / "dlt"
                runs = steady(lambda: dlt_extract(schema, "src", out), driver=True)
                files = list((out / "data" / "extract" / "src").glob("*.parquet"))
                assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == rows * args.repeat
                results.add("extract", "dlt sql_database (connectorx) -> parquet", rows, runs)
                results.ratio("extract", label, "dlt sql_database (connectorx) -> parquet")
            if "spawned" in baselines:
                pipeline = {"name": "bench", "engine": {"master": "local[2]"},
                            "credentials": credentials, "sources": {"s": pg_source},
                            "sinks": sink}  # fmt: skip
                jdbc_args = {"url": JDBC_URL, "driver": "org.postgresql.Driver", "jar": jar,
                             "table": source, "rows": rows, "out": str(work / "jdbc-spawned"),
                             "user": "postgres", "password": ""}  # fmt: skip
                dlt_args = {"credentials": URI, "schema": schema, "table": "src",
                            "out": str(work / "dlt-spawned")}  # fmt: skip
                others = {}
                if jar:
                    others["Spark JDBC, 2 partitions"] = spawned.jdbc_side(work, jdbc_args)
                if has_dlt:
                    others["dlt sql_table -> parquet"] = spawned.dlt_side(work, dlt_args)
                times = spawned.compare(pipeline, work, args.repeat, others)
                for name, took in times.items():
                    results.note(f"spawned, end to end: {name}: {took:.2f} s")

        if "upsert" in cases:
            n, half = upsert_rows, upsert_rows // 2
            print(
                f"upsert: {n:,} rows (half new keys), Parquet -> PostgreSQL table of {n:,}",
                flush=True,
            )
            changes = f"{schema}.changes"
            fill(admin, changes, half + 1, half + n, prefix="new")
            parquet = work / "upsert"  # two files, as Spark writes a dataset with 2 cores
            parquet.mkdir()
            data = arrow_table(changes)
            pq.write_table(data.slice(0, half), parquet / "part-0.parquet")
            pq.write_table(data.slice(half), parquet / "part-1.parquet")

            def target() -> str:
                name = f"{schema}.t_{uuid.uuid4().hex[:6]}"
                fill(admin, name, 1, n)
                return name

            def check(name: str) -> None:
                (total, new) = admin.execute(
                    f"SELECT count(*), count(*) FILTER (WHERE c LIKE 'new%') FROM {name}"
                ).fetchone()
                assert (total, new) == (n + half, n), (name, total, new)
                admin.execute(f"DROP TABLE {name}")

            def etl_upsert(name: str) -> None:
                etl(
                    {"s": {"type": "files", "format": "parquet", "path": str(parquet)}},
                    {
                        "o": {
                            "type": "postgres",
                            "input": "s",
                            "table": name,
                            "mode": "upsert",
                            "key": ["id"],
                            "connection": CONNECTION,
                            "credentials": "pg",
                        }
                    },
                )

            def runs_of(fn: Any, count: int, driver: bool = False) -> list[dict[str, Any]]:
                done = []
                for _ in range(count):
                    name = target()
                    done.append((measure_driver if driver else measure)(lambda name=name: fn(name)))
                    check(name)
                return done

            label = "etl (stage ADBC, publish in one transaction)"
            first = runs_of(etl_upsert, 1)[0]
            runs_of(etl_upsert, args.warmup)
            results.add(
                "upsert", label, n, runs_of(etl_upsert, args.repeat), first=first, fixed_s=session_s
            )
            if "raw" in baselines:
                raw = runs_of(lambda t: raw_psycopg_upsert(t, parquet), args.repeat, driver=True)
                results.add("upsert", "raw psycopg COPY + ON CONFLICT", n, raw)
                results.ratio("upsert", label, "raw psycopg COPY + ON CONFLICT", 1.5)
            if "floor" in baselines:

                def merge_alone(name: str) -> None:
                    """The publish's one transaction without the staging before it: the rows
                    are already in a table, MERGE (with etl's work_mem) moves them."""
                    with psycopg.connect(**PG) as conn:
                        conn.execute("SET LOCAL work_mem = '256MB'")
                        conn.execute(MERGE.format(target=name, source=changes))

                floor = "floor: MERGE alone, rows staged"
                results.add("upsert", floor, n, runs_of(merge_alone, args.repeat, driver=True))
                results.ratio("upsert", floor, "raw psycopg COPY + ON CONFLICT")
            if has_dlt:
                runs = []
                base = work / "upsert-base.parquet"
                fill(admin, f"{schema}.base", 1, n)
                pq.write_table(arrow_table(f"{schema}.base"), base)
                for _ in range(args.repeat):
                    dataset = f"bench_dlt_{uuid.uuid4().hex[:8]}"
                    dlt_datasets += [dataset, f"{dataset}_staging"]
                    dlt_merge(dataset, base, work, initial=True)  # untimed: dlt's own target
                    runs.append(
                        measure_driver(lambda d=dataset: dlt_merge(d, parquet, work, initial=False))
                    )
                    (total,) = admin.execute(f"SELECT count(*) FROM {dataset}.target").fetchone()
                    assert total == n + half, total
                results.add("upsert", "dlt merge (postgres, csv)", n, runs)
                results.ratio("upsert", label, "dlt merge (postgres, csv)")
        results.note(
            "2 cores shared with other agents' test runs: see the load averages; steady = "
            "median after one untimed run at the same size"
        )
        results.write()
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        for dataset in dlt_datasets:
            admin.execute(f"DROP SCHEMA IF EXISTS {dataset} CASCADE")
        admin.close()
        shutil.rmtree(work, ignore_errors=True)


def arrow_table(table: str) -> pa.Table:
    """A table read with ADBC, numeric as decimal128(12, 2)."""
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(URI) as conn, conn.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")
        data = cursor.fetch_arrow_table()
    numeric = data.schema.get_field_index("e")
    column = data.column(numeric)
    storage = pa.chunked_array([c.storage for c in column.chunks], pa.string())
    return data.set_column(numeric, "e", storage.cast(pa.decimal128(12, 2)))


if __name__ == "__main__":
    main()
