"""etl pipelines against plain PySpark doing the same work, in one process and one SparkSession.

    python benchmarks/run.py [--rows 1000000,10000000] [--cases NAME,...] [--smoke]

For each case and size: the inputs are generated once (not timed); the session is warmed up
once, and each case runs both sides once untimed at each size; then the etl pipeline
(``config.check`` + ``runner.run``) and the baseline script run N times each, alternating
which goes first, and the medians are reported with the peak RSS of the
whole process tree (Python driver + JVM + any Python workers). Then, unless ``--no-spawned``,
each side once more as a scheduler starts it, a fresh process each (``spawned.py``): ``etl run``
without and with the class-data archive, and the baseline. Results go to stdout and to
``benchmarks/results/<timestamp>.json``. See README.md beside this file.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_cases import (  # noqa: E402 - after the sys.path set-up above
    CASES,
    Case,
    compare_outputs,
    generate,
    run_baseline,
    run_etl,
)

SMOKE_ROWS = 10_000
WARMUP_ROWS = 10_000


class RssSampler:
    """Peak resident memory of this process and all its descendants (the JVM that PySpark
    launched, Python workers), summed, sampled every ``interval`` seconds in a thread.
    Processes in ``exclude`` (e.g. a test server a benchmark started) and their descendants
    are left out, from RSS and CPU."""

    #: process ids left out of every sampler, with their descendants
    exclude: ClassVar[set[int]] = set()

    def __init__(self, interval: float = 0.2, root: int | None = None):
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._root = psutil.Process(root)

    def _tree(self) -> list[psutil.Process]:
        procs = [self._root]
        with contextlib.suppress(psutil.NoSuchProcess):
            procs += self._root.children(recursive=True)
        left_out = set(self.exclude)
        for pid in self.exclude:
            with contextlib.suppress(psutil.NoSuchProcess):
                left_out |= {p.pid for p in psutil.Process(pid).children(recursive=True)}
        return [p for p in procs if p.pid not in left_out]

    def sample(self) -> int:
        total = 0
        for proc in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += proc.memory_info().rss
        return total

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the process tree (reaped children included)."""
        total = 0.0
        for proc in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                times = proc.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
        return total

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._take()

    def _take(self) -> None:
        self.peak = max(self.peak, self.sample())
        self.samples += 1

    def __enter__(self) -> RssSampler:
        self.peak, self.samples = 0, 0
        self._stop.clear()
        self._take()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._take()


def measure(fn: Callable[[], Any], sampler: RssSampler | None = None) -> dict[str, Any]:
    """Wall and CPU seconds, peak RSS of ``sampler``'s process tree (default: this one)."""
    gc.collect()
    load = os.getloadavg()[0]
    with sampler or RssSampler() as rss:
        cpu_start = rss.cpu_seconds()
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
        cpu = rss.cpu_seconds() - cpu_start
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_rss": rss.peak,
        "rss_samples": rss.samples,
        "load1": load,
    }


def summarize(runs: list[dict[str, Any]], rows: int) -> dict[str, Any]:
    median = statistics.median(r["seconds"] for r in runs)
    return {
        "seconds": [round(r["seconds"], 3) for r in runs],
        "median_s": round(median, 3),
        "rows_per_s": round(rows / median),
        "cpu_seconds": [round(r["cpu_seconds"], 2) for r in runs],
        "median_cpu_s": round(statistics.median(r["cpu_seconds"] for r in runs), 2),
        "peak_rss": [r["peak_rss"] for r in runs],
        "peak_rss_max": max(r["peak_rss"] for r in runs),
        "load1": [round(r["load1"], 2) for r in runs],
    }


def start_spark(conf: dict[str, str]) -> Any:
    """The session ``etl run`` would start with an engine block left at its defaults
    (plus any ``--conf``), shared by both sides."""
    from etl_core.config import EngineSpec
    from etl_core.run.engine import get_spark

    return get_spark(EngineSpec(conf=conf), app_name="etl-benchmarks")


@contextlib.contextmanager
def explaining(enabled: bool) -> Iterator[None]:
    """With ``--explain``: print the physical plan of every DataFrame the files sink stages
    (the exact frame the runner hands to the loader, observations included)."""
    if not enabled:
        yield
        return
    from etl_core.builtins.files import FilesLoader

    original = FilesLoader.stage

    def stage(self: Any, ctx: Any, df: Any, options: Any) -> Any:
        print(f"\n== etl plan for sink {ctx.dataset!r} ({ctx.pipeline})")
        df.explain(mode="formatted")
        return original(self, ctx, df, options)

    FilesLoader.stage = stage  # type: ignore[method-assign]
    try:
        yield
    finally:
        FilesLoader.stage = original  # type: ignore[method-assign]


def explain_baseline(spark: Any, case: Case, data: Path) -> None:
    """The baseline's plan: its script with ``write`` swapped for ``explain``."""
    from pyspark.sql import DataFrameWriter

    def explain_instead(self: Any, path: str, *args: Any, **kwargs: Any) -> None:
        print(f"\n== baseline plan for {case.name}")
        self._df.explain(mode="formatted")

    original = DataFrameWriter.parquet
    DataFrameWriter.parquet = explain_instead  # type: ignore[method-assign,assignment]
    try:
        case.baseline(spark, data, Path("/nonexistent"))
    finally:
        DataFrameWriter.parquet = original  # type: ignore[method-assign]


def bench_case(
    spark: Any,
    case: Case,
    rows: int,
    repeat: int,
    work: Path,
    explain: bool,
    warm: bool,
    one_shot: bool = False,
) -> dict[str, Any]:
    data = work / "data" / str(rows)
    base_dir = work / case.name / str(rows)
    base_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    generate(spark, case, data, rows)
    print(
        f"[{case.name} {rows:,}] inputs ready in {time.perf_counter() - started:.1f} s; "
        f"{repeat} repetition(s)",
        flush=True,
    )
    etl_runs: list[dict[str, Any]] = []
    base_runs: list[dict[str, Any]] = []
    metrics: Any = None

    def etl() -> None:
        nonlocal metrics
        metrics = run_etl(spark, case, data, base_dir)

    if warm:  # the first run at a new size is slower on both sides (JIT of the hot loops)
        clock = time.perf_counter()
        with explaining(explain):
            run_etl(spark, case, data, base_dir)
        run_baseline(spark, case, data, base_dir)
        print(f"  untimed warm-up round: {time.perf_counter() - clock:.1f} s", flush=True)
    for index in range(repeat):
        order = [("etl", etl, etl_runs), ("baseline", None, base_runs)]
        if index % 2:  # alternate who goes first, so drift in the machine's load evens out
            order.reverse()
        for side, fn, into in order:
            with explaining(explain and not warm and side == "etl" and index == 0):
                result = measure(fn or (lambda: run_baseline(spark, case, data, base_dir)))
            into.append(result)
            print(
                f"  {side:<8} #{index + 1}: {result['seconds']:6.2f} s  "
                f"CPU {result['cpu_seconds']:6.2f} s  "
                f"peak RSS {result['peak_rss'] / 2**20:,.0f} MiB  (load {result['load1']:.2f})",
                flush=True,
            )
    if explain:
        explain_baseline(spark, case, data)
    compare_outputs(spark, case, base_dir)
    etl_summary, base_summary = summarize(etl_runs, rows), summarize(base_runs, rows)
    spawned_s = spawned_sides(case, data, base_dir / "spawned") if one_shot else None
    return {
        "spawned_end_to_end_s": spawned_s,
        "case": case.name,
        "summary": case.summary,
        "rows": rows,
        "repetitions": repeat,
        "warm_up_round": warm,
        "etl": etl_summary,
        "baseline": base_summary,
        "ratio": round(etl_summary["median_s"] / base_summary["median_s"], 3),
        "cpu_ratio": round(etl_summary["median_cpu_s"] / base_summary["median_cpu_s"], 3),
        "etl_rows_observed": {f"{m.dataset}/{m.stage}": m.rows_out for m in metrics.stages},
    }


def spawned_sides(case: Case, data: Path, folder: Path) -> dict[str, float]:
    """The case as a scheduler runs it, once each, a fresh process per side: ``etl run`` (without
    and with the class-data archive) and the plain PySpark baseline (dlt does not do this work:
    it runs no filters, joins or aggregates)."""
    import spawned

    folder.mkdir(parents=True, exist_ok=True)
    pipeline = {**case.pipeline(data), "engine": {"master": "local[2]"}}
    others = {"plain PySpark": spawned.pyspark_side(folder, case.name, data)}
    return spawned.compare(pipeline, folder, 1, others)


def warm_up(spark: Any, cases: list[Case], work: Path, full: bool = True) -> float:
    """First jobs on a fresh session are slow (class loading, JIT): run every case once,
    both sides, at a tiny size, before anything is measured (``full=False``: one tiny job)."""
    started = time.perf_counter()
    spark.range(1000).selectExpr("sum(id)").collect()
    for case in cases if full else []:
        data, base_dir = work / "warmup" / "data", work / "warmup" / case.name
        generate(spark, case, data, WARMUP_ROWS)
        run_etl(spark, case, data, base_dir)
        run_baseline(spark, case, data, base_dir)
    return time.perf_counter() - started


def mib(value: int) -> str:
    return f"{value / 2**20:,.0f}"


def table(results: list[dict[str, Any]]) -> str:
    header = (
        "case",
        "rows",
        "etl s",
        "etl rows/s",
        "base s",
        "base rows/s",
        "etl/base",
        "etl CPU s",
        "base CPU s",
        "CPU etl/base",
        "etl peak RSS MiB",
        "base peak RSS MiB",
    )
    lines = [
        (
            r["case"],
            f"{r['rows']:,}",
            f"{r['etl']['median_s']:.2f}",
            f"{r['etl']['rows_per_s']:,}",
            f"{r['baseline']['median_s']:.2f}",
            f"{r['baseline']['rows_per_s']:,}",
            f"{r['ratio']:.2f}",
            f"{r['etl']['median_cpu_s']:.1f}",
            f"{r['baseline']['median_cpu_s']:.1f}",
            f"{r['cpu_ratio']:.2f}",
            mib(r["etl"]["peak_rss_max"]),
            mib(r["baseline"]["peak_rss_max"]),
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in lines:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def environment(spark: Any) -> dict[str, Any]:
    import pyspark

    conf = spark.sparkContext.getConf()
    return {
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "java": spark.sparkContext._jvm.System.getProperty("java.version"),  # noqa: SLF001
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "master": conf.get("spark.master"),
        "driver_memory": conf.get("spark.driver.memory"),
        "shuffle_partitions": spark.conf.get("spark.sql.shuffle.partitions"),
        "adaptive": spark.conf.get("spark.sql.adaptive.enabled"),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1000000,10000000", help="comma-separated sizes")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument(
        "--repeat", type=int, help="repetitions per size (default 3 up to 1M rows, then 1)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help=f"{SMOKE_ROWS:,} rows, 1 repetition: a quick check"
    )
    parser.add_argument("--workdir", type=Path, help="where inputs and outputs go (default: tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir afterwards")
    parser.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Spark setting for the shared session (repeatable)",
    )
    parser.add_argument("--explain", action="store_true", help="print both sides' Spark plans")
    parser.add_argument(
        "--no-spawned",
        dest="spawned",
        action="store_false",
        help="skip the one-shot sides (etl run and plain PySpark, each a fresh process)",
    )
    parser.add_argument(
        "--results", type=Path, default=HERE / "results", help="folder for the JSON results"
    )
    args = parser.parse_args(argv)
    try:
        args.rows = [int(r.replace("_", "")) for r in args.rows.split(",") if r]
    except ValueError:
        parser.error(f"--rows takes comma-separated integers, got {args.rows!r}")
    names = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    args.cases = [CASES[n] for n in names]
    if any("=" not in c for c in args.conf):
        parser.error("--conf takes KEY=VALUE")
    args.conf = dict(c.split("=", 1) for c in args.conf)
    if args.smoke:
        args.rows, args.repeat = [SMOKE_ROWS], 1
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started_at = dt.datetime.now(dt.UTC)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="etl-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work dir {work}; starting Spark", flush=True)
    clock = time.perf_counter()
    spark = start_spark(args.conf)
    print(f"session up in {time.perf_counter() - clock:.1f} s", flush=True)
    results: list[dict[str, Any]] = []
    try:
        print(
            f"warm-up done in {warm_up(spark, args.cases, work, not args.smoke):.1f} s", flush=True
        )
        for rows in args.rows:
            repeat = args.repeat or (3 if rows <= 1_000_000 else 1)
            for case in args.cases:
                results.append(
                    bench_case(
                        spark, case, rows, repeat, work, args.explain, not args.smoke, args.spawned
                    )
                )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(results))
    if args.smoke:
        print("(smoke run: no warm-up, tiny inputs; these figures only show the harness works)")
    report = {
        "started_at": started_at.isoformat(),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        "argv": sys.argv[1:] if argv is None else argv,
        "smoke": args.smoke,
        "conf": args.conf,
        "environment": environment(spark),
        "results": results,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    out = args.results / f"{stamp}{'-smoke' if args.smoke else ''}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nresults written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
