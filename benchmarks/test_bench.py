"""pytest-benchmark versions of the cases in ``bench_cases.py``: etl against plain PySpark.

Not part of the default test run (the root config's testpaths are core/tests and tests):

    pytest benchmarks/ --benchmark-only
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cases import CASES, compare_outputs, generate, run_baseline, run_etl

pytestmark = pytest.mark.spark

ROWS = 200_000
ROUNDS = 3


@pytest.fixture(scope="module")
def bench_data(etl_spark, tmp_path_factory):
    """Every case's inputs at ``ROWS`` rows, generated once, plus one untimed run of each side
    so the first measured round is not the session's first job of that shape."""
    data = tmp_path_factory.mktemp("bench-data")
    for case in CASES.values():
        generate(etl_spark, case, data, ROWS)
        warm = tmp_path_factory.mktemp(f"warm-{case.name}")
        run_etl(etl_spark, case, data, warm)
        run_baseline(etl_spark, case, data, warm)
    return data


@pytest.mark.parametrize("side", ["etl", "baseline"])
@pytest.mark.parametrize("name", list(CASES))
def test_case(benchmark, etl_spark, bench_data, tmp_path, name, side):
    case = CASES[name]
    benchmark.group = f"{name} ({ROWS:,} rows)"
    benchmark.extra_info["rows"] = ROWS
    fn = run_etl if side == "etl" else run_baseline
    benchmark.pedantic(fn, args=(etl_spark, case, bench_data, tmp_path), rounds=ROUNDS)
    if side == "etl":  # both sides of the case have run once the second one runs: compare
        return
    run_etl(etl_spark, case, bench_data, tmp_path)
    compare_outputs(etl_spark, case, tmp_path)
