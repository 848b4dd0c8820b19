"""S3 connector benchmark, beside its raw-client baseline in the same run, on a moto server
it starts (S3 API on 127.0.0.1; no network, so this measures the connector's overhead, not
S3's bandwidth).

N rows x 6 columns of Parquet in S3 (one object, row groups of ``--row-group`` rows) → a
transform (a filter and two derived columns) → Parquet in S3:

- etl: an ``s3`` source (row groups read on the executors) → ``sql`` transform → ``s3`` sink
  (staged, then published with a manifest, ``mode: overwrite``), ``local[2]``: the whole
  ``config.check`` + run;
- raw: plain ``pyarrow.fs.S3FileSystem`` in a Python process of its own (started once,
  before the measurements): read the object, the same transform with pyarrow.compute, write
  one object.

Both sides run once untimed first; then ``--repeat`` rounds, alternating which side goes
first; the medians are reported.

Run: python benchmarks/bench_s3.py [--rows 1000000] [--repeat 3]

Figures per side: median wall seconds, rows/s (input rows / median seconds), CPU seconds
(user + system of its process tree) and peak RSS of its process tree — etl: the driver, the
JVM and the Python workers; raw: its own process — sampled every 0.2 s. The moto server is
left out of both and reported apart: its CPU seconds during each side's runs, its RSS at the
end (it holds every object in memory, so it grows with the runs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import RssSampler, measure, summarize  # the shared runner's helpers

BUCKET = "etl-bench"
QUERY = "SELECT id, a, b * 2 AS b2, upper(c) AS c, d, e, a % 7 AS bucket FROM s WHERE a % 10 <> 0"
KEY, SECRET = "bench-key", "bench-secret"


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


def raw_worker(endpoint_url: str) -> None:
    """``--raw-worker``: run ``raw`` once per ``run`` line on stdin, answer its seconds."""
    from etl_plugin_s3.client import Connection

    fs = Connection("us-east-1", endpoint_url, KEY, SECRET).filesystem()
    for line in sys.stdin:
        if line.strip() != "run":
            break
        start = time.perf_counter()
        raw(fs)
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


class TreeSampler(RssSampler):
    """``RssSampler`` of another process's tree, leaving out some processes (the moto
    server, the raw side's process) and their descendants."""

    def __init__(self, root: int, exclude: set[int] = frozenset()):
        super().__init__(root=root)
        self.exclude = set(exclude)


def _cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def measure_side(fn, sampler: TreeSampler, moto_pid: int) -> dict:
    """``run.measure`` of one side, plus the moto server's CPU seconds meanwhile."""
    moto_start = _cpu(moto_pid)
    result = measure(fn, sampler)
    result["moto_cpu_seconds"] = _cpu(moto_pid) - moto_start
    return result


def _rows_written(fs, root: str) -> int:
    from etl_core import manifests

    files = manifests.manifest_files(fs, root) or sorted(manifests.data_files(fs, root))
    total = 0
    for name in files:
        with fs.open_input_file(f"{root}/{name}") as source:
            total += pq.ParquetFile(source).metadata.num_rows
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--row-group", type=int, default=131_072)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--raw-worker", metavar="ENDPOINT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_worker:
        raw_worker(args.raw_worker)
        return
    rows = args.rows

    import boto3
    from etl_plugin_s3.client import Connection

    from etl_core.config import EngineSpec
    from etl_core.plugins import get_plugin_host
    from etl_core.run.engine import get_spark
    from etl_core.testing import moto_process, run_pipeline

    work = Path(tempfile.mkdtemp(prefix="bench_s3_"))
    with moto_process(work / "moto.log") as server:
        moto_pid = next(
            p.pid for p in psutil.Process().children() if "moto" in " ".join(p.cmdline())
        )
        session = boto3.Session(aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                                region_name="us-east-1")  # fmt: skip
        s3 = session.client("s3", endpoint_url=server.endpoint_url)
        s3.create_bucket(Bucket=BUCKET)
        buffer = io.BytesIO()
        pq.write_table(make_table(rows), buffer, row_group_size=args.row_group)
        s3.put_object(Bucket=BUCKET, Key="in/data.parquet", Body=buffer.getvalue())
        print(f"input: {rows:,} rows x 6 columns, {buffer.tell() / 2**20:.1f} MiB parquet, "
              f"row groups of {args.row_group:,} rows")  # fmt: skip
        fs = Connection("us-east-1", server.endpoint_url, KEY, SECRET).filesystem()

        worker = subprocess.Popen(
            [sys.executable, __file__, "--raw-worker", server.endpoint_url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

        def run_raw() -> None:
            worker.stdin.write("run\n")
            worker.stdin.flush()
            json.loads(worker.stdout.readline())

        os.environ["BENCH_S3_KEY"], os.environ["BENCH_S3_SECRET"] = KEY, SECRET
        started = time.perf_counter()
        spark = get_spark(EngineSpec(master="local[2]"), "bench-s3")
        print(f"session started in {time.perf_counter() - started:.1f} s")
        host = get_plugin_host()
        common = {"type": "s3", "bucket": BUCKET, "region": "us-east-1",
                  "endpoint_url": server.endpoint_url, "credentials": "lake"}  # fmt: skip

        def etl() -> None:
            (work / "run").mkdir(exist_ok=True)
            pipeline = {
                "name": "bench_s3",
                "credentials": {"lake": {"provider": "env", "fields": {
                    "access_key_id": "BENCH_S3_KEY", "secret_access_key": "BENCH_S3_SECRET"}}},
                "sources": {"s": {**common, "prefix": "in", "format": "parquet"}},
                "transforms": {"t": {"type": "sql", "inputs": ["s"], "query": QUERY}},
                "sinks": {"o": {**common, "input": "t", "prefix": "out", "mode": "overwrite"}},
            }  # fmt: skip
            run_pipeline(pipeline, spark=spark, host=host, base_dir=work / "run")

        samplers = {
            "etl": TreeSampler(os.getpid(), exclude={moto_pid, worker.pid}),
            "raw": TreeSampler(worker.pid),
        }
        sides = {"etl": etl, "raw": run_raw}
        clock = time.perf_counter()
        etl()  # untimed warm-up of both sides: JVM, Python workers, JIT, S3 clients
        run_raw()
        print(f"untimed warm-up round: {time.perf_counter() - clock:.1f} s")
        runs: dict[str, list[dict]] = {"etl": [], "raw": []}
        for index in range(args.repeat):
            order = ["etl", "raw"] if index % 2 == 0 else ["raw", "etl"]
            for side in order:
                result = measure_side(sides[side], samplers[side], moto_pid)
                runs[side].append(result)
                print(
                    f"  {side:<4} #{index + 1}: {result['seconds']:6.2f} s  "
                    f"CPU {result['cpu_seconds']:6.2f} s (moto {result['moto_cpu_seconds']:.2f})"
                    f"  peak RSS {result['peak_rss'] / 2**20:,.0f} MiB  "
                    f"(load {result['load1']:.2f})",
                    flush=True,
                )
        written = {"etl": _rows_written(fs, f"{BUCKET}/out"),
                   "raw": _rows_written(fs, f"{BUCKET}/raw")}  # fmt: skip
        if written["etl"] != written["raw"]:
            raise SystemExit(f"the sides wrote different row counts: {written}")
        moto_rss = psutil.Process(moto_pid).memory_info().rss
        worker.stdin.close()
        worker.wait()
        spark.stop()

    results = {side: summarize(r, rows) for side, r in runs.items()}
    for side, r in results.items():
        r["median_moto_cpu_s"] = round(
            statistics.median(x["moto_cpu_seconds"] for x in runs[side]), 2
        )
    etl_r, raw_r = results["etl"], results["raw"]
    print(
        f"\nS3 parquet -> filter + derive -> S3 parquet, {rows:,} rows ({written['etl']:,} "
        f"written), median of {args.repeat}; {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
        f"load {os.getloadavg()[0]:.2f} (during the runs: "
        f"{min(etl_r['load1'] + raw_r['load1']):.1f}-{max(etl_r['load1'] + raw_r['load1']):.1f})"
    )
    print(f"{'side':<34} {'seconds':>8} {'rows/s':>11} {'CPU s':>6} {'moto CPU s':>10} "
          f"{'peak RSS MiB':>13}")  # fmt: skip
    labels = {"etl": "etl s3 -> sql -> s3 (local[2])", "raw": "raw pyarrow.fs (one process)"}
    for side, r in results.items():
        print(
            f"{labels[side]:<34} {r['median_s']:>8.2f} {r['rows_per_s']:>11,} "
            f"{r['median_cpu_s']:>6.2f} {r['median_moto_cpu_s']:>10.2f} "
            f"{r['peak_rss_max'] / 2**20:>13,.0f}"
        )
    print(
        f"etl/raw: throughput {raw_r['median_s'] / etl_r['median_s']:.2f}x, "
        f"CPU {etl_r['median_cpu_s'] / raw_r['median_cpu_s']:.1f}x, "
        f"peak RSS {etl_r['peak_rss_max'] / raw_r['peak_rss_max']:.1f}x; "
        f"moto server RSS at the end {moto_rss / 2**20:,.0f} MiB"
    )


if __name__ == "__main__":
    main()
