"""Named fault points (``ETL_FAULT``): the n-th occurrence of the named point kills the
process with SIGKILL; other points, and no ``ETL_FAULT``, do nothing; an unknown name is an
error, not a silent no-op."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from etl_core import EtlError
from etl_core.run import faults

SCRIPT = """
from etl_core.run import faults
for i in range(3):
    faults.reach("after_sink_commit")
    faults.reach("after_stage")
    print("passed", i, flush=True)
"""


def reach_in_a_process(value):
    env = {**os.environ, "ETL_FAULT": value}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=False
    )


def test_the_nth_occurrence_of_the_named_point_kills_the_process():
    done = reach_in_a_process("after_stage:2")
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split("\n")[:-1] == ["passed 0"]  # killed at the second after_stage
    assert "killed at after_stage" in done.stderr


def test_a_point_not_named_never_fires(monkeypatch):
    monkeypatch.delenv("ETL_FAULT", raising=False)
    faults.reach("after_stage")
    monkeypatch.setenv("ETL_FAULT", "before_spark_commit")
    faults.reach("after_stage")


def test_an_unknown_fault_point_is_an_error(monkeypatch):
    monkeypatch.setenv("ETL_FAULT", "after_everything")
    with pytest.raises(EtlError, match="not a fault point"):
        faults.reach("after_stage")
