"""Named fault points (DESIGN §9): ``ETL_FAULT=<point>[:<n>]`` in the environment kills the
process with SIGKILL the n-th time (default: the first) a run reaches ``<point>``, so a test
hits each crash window of the commit protocol on purpose instead of by luck. Only the
environment sets it, never a pipeline file; without it, :func:`reach` does nothing.

- ``after_stage``: every sink staged, nothing checked or published;
- ``after_sink_commit``: a sink's publish committed, the next sinks and the run not yet;
- ``before_spark_commit``: a stream's micro-batch published everywhere, Spark's commit log
  not yet written (the batch runs again on restart).
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter

from etl_core.errors import EtlError

POINTS = ("after_stage", "after_sink_commit", "before_spark_commit")
_reached: Counter[str] = Counter()


def reach(point: str) -> None:
    """Die here if ``ETL_FAULT`` names this point and this is the occurrence it names."""
    wanted = os.environ.get("ETL_FAULT")
    if not wanted:
        return
    name, _, nth = wanted.partition(":")
    if name not in POINTS or not (nth or "1").isdigit():
        raise EtlError(
            f"ETL_FAULT={wanted}: not a fault point; use one of {', '.join(POINTS)}, "
            "optionally with :N for its N-th occurrence"
        )
    if name != point:
        return
    _reached[point] += 1
    if _reached[point] >= int(nth or 1):
        sys.stderr.write(f"etl: ETL_FAULT: killed at {point}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
