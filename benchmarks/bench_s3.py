"""S3 connector benchmark, beside its raw-client baseline in the same run, on a moto server
it starts (S3 API on 127.0.0.1; no network, so this measures the connector's overhead, not
S3's bandwidth).

N rows x 6 columns of Parquet in S3 → a transform (a filter and two derived columns) →
Parquet in S3:

- etl: an ``s3`` source (one partition per row group, on the executors) → ``sql`` transform
  → ``s3`` sink (staged, then published with a manifest), ``local[2]``;
- raw: plain ``pyarrow.fs.S3FileSystem`` in one process: read the object, the same
  transform with pyarrow.compute, write one object.

Run: python benchmarks/bench_s3.py [--rows 1000000]
Peak RSS is of the whole process tree (driver, JVM, Python workers) and includes the moto
server, which holds every object in memory; its own RSS is printed apart.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import boto3
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from run import RssSampler

BUCKET = "etl-bench"
QUERY = "SELECT id, a, b * 2 AS b2, upper(c) AS c, d, e, a % 7 AS bucket FROM s WHERE a % 10 <> 0"


def make_table(rows: int) -> pa.Table:
    ids = pa.array(range(rows), pa.int64())
    return pa.table(
        {
            "id": ids,
            "a": pc.cast(pc.bit_wise_and(ids, 1023), pa.int32()),
            "b": pc.multiply(pc.cast(ids, pa.float64()), 0.5),
            "c": pc.binary_join_element_wise("name ", pc.cast(ids, pa.string()), ""),
            "d": pc.cast(pc.multiply(ids, 1_000_000), pa.timestamp("us", tz="UTC")),
            "e": pc.cast(pc.divide(pc.cast(ids, pa.float64()), 100.0), pa.float64()),
        }
    )


def _mod(values: pa.ChunkedArray, by: int) -> pa.ChunkedArray:
    return pc.subtract(values, pc.multiply(pc.divide(values, by), by))  # integer division


def raw(fs) -> None:
    """The same work with plain pyarrow.fs: read the object, filter + derive, write one."""
    with fs.open_input_file(f"{BUCKET}/in/data.parquet") as source:
        table = pq.read_table(source)
    kept = table.filter(pc.not_equal(_mod(table["a"], 10), 0))
    out = pa.table(
        {
            "id": kept["id"],
            "a": kept["a"],
            "b2": pc.multiply(kept["b"], 2),
            "c": pc.utf8_upper(kept["c"]),
            "d": kept["d"],
            "e": kept["e"],
            "bucket": _mod(kept["a"], 7),
        }
    )
    with fs.open_output_stream(f"{BUCKET}/raw/out.parquet") as sink:
        pq.write_table(out, sink)


def measure(label: str, rows: int, fn) -> dict:
    with RssSampler() as rss:
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
    print(f"  {label:<46} {seconds:7.2f} s  {rows / seconds:>12,.0f} rows/s  "
          f"peak RSS {rss.peak / 2**20:,.0f} MiB")  # fmt: skip
    return {"seconds": seconds, "peak_rss": rss.peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--row-group", type=int, default=131_072)
    args = parser.parse_args()
    rows = args.rows

    from etl_plugin_s3.s3 import Connection

    from etl_core.config import EngineSpec
    from etl_core.engine import get_spark
    from etl_core.plugins import get_plugin_host
    from etl_core.testing import moto_process, run_pipeline

    work = Path(tempfile.mkdtemp(prefix="bench_s3_"))
    with moto_process(work / "moto.log") as server:
        moto_pid = [p.pid for p in psutil.Process().children() if "moto" in " ".join(p.cmdline())]
        session = boto3.Session(aws_access_key_id="bench", aws_secret_access_key="bench",
                                region_name="us-east-1")  # fmt: skip
        s3 = session.client("s3", endpoint_url=server.endpoint_url)
        s3.create_bucket(Bucket=BUCKET)
        buffer = io.BytesIO()
        pq.write_table(make_table(rows), buffer, row_group_size=args.row_group)
        s3.put_object(Bucket=BUCKET, Key="in/data.parquet", Body=buffer.getvalue())
        print(f"input: {rows:,} rows x 6 columns, {buffer.tell() / 2**20:.1f} MiB parquet")
        fs = Connection("us-east-1", server.endpoint_url, "bench", "bench").filesystem()

        os.environ["BENCH_S3_KEY"], os.environ["BENCH_S3_SECRET"] = "bench", "bench"
        spark = get_spark(EngineSpec(master="local[2]"), "bench-s3")
        host = get_plugin_host()
        common = {"type": "s3", "bucket": BUCKET, "region": "us-east-1",
                  "endpoint_url": server.endpoint_url, "credentials": "lake"}  # fmt: skip

        def etl(prefix: str, out: str, base: Path) -> None:
            base.mkdir(exist_ok=True)
            pipeline = {
                "name": "bench_s3",
                "credentials": {"lake": {"provider": "env", "fields": {
                    "access_key_id": "BENCH_S3_KEY", "secret_access_key": "BENCH_S3_SECRET"}}},
                "sources": {"s": {**common, "prefix": prefix, "format": "parquet"}},
                "transforms": {"t": {"type": "sql", "inputs": ["s"], "query": QUERY}},
                "sinks": {"o": {**common, "input": "t", "prefix": out, "mode": "overwrite"}},
            }  # fmt: skip
            run_pipeline(pipeline, spark=spark, host=host, base_dir=base)

        etl("in", "warm", work / "warm")  # JVM and Python workers warm
        raw(fs)
        print(f"S3 parquet -> filter + derive -> S3 parquet, {rows:,} rows")
        first = measure("raw pyarrow.fs (one process)", rows, lambda: raw(fs))
        ours = measure("etl s3 -> sql -> s3 (local[2])", rows,
                       lambda: etl("in", "out", work / "run"))  # fmt: skip
        print(f"  ratio etl/raw throughput {first['seconds'] / ours['seconds']:.2f}x; "
              f"RSS etl/raw {ours['peak_rss'] / first['peak_rss']:.2f}x")  # fmt: skip
        for pid in moto_pid:
            print(f"  moto server RSS now {psutil.Process(pid).memory_info().rss / 2**20:,.0f} MiB")
        spark.stop()


if __name__ == "__main__":
    main()
