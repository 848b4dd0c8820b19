"""What reaches a user's terminal: typed errors raised in Spark tasks, the JVM's stderr, the
report's load lines. No Spark: the inputs are the texts Spark produces."""

from __future__ import annotations

import io

from etl_core.api import RunMetrics, StageMetrics
from etl_core.errors import LoadError, PermanentError, TransientError, task_error
from etl_core.report import render_report
from etl_core.run.engine import _forward_filtered

#: how a PermanentError raised in a data source's read reaches the driver (abridged)
TASK_FAILURE = """\
An error occurred while calling o123.save.
: org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 in stage 3.0 \
failed 1 times, most recent failure: Lost task 0.0 in stage 3.0 (TID 7) (127.0.0.1 executor \
driver): org.apache.spark.api.python.PythonException: Traceback (most recent call last):
  File "/x/pyspark/worker.py", line 1883, in main
    process()
  File "/x/etl_plugin_postgres/datasource.py", line 88, in read
    raise adbc_error(exc, info, what) from None
etl_core.errors.TransientError: source 'flights' (public.flights): 127.0.0.1:5432/test is \
unreachable or busy: connection failed
\tat org.apache.spark.api.python.BasePythonRunner$ReaderIterator.handlePythonException
"""


def test_a_typed_error_from_a_task_keeps_its_type_and_names_its_component_first():
    error = task_error(RuntimeError(TASK_FAILURE))
    assert isinstance(error, TransientError)
    assert str(error) == (
        "source 'flights' (public.flights): 127.0.0.1:5432/test is unreachable or busy: "
        "connection failed"
    )
    permanent = TASK_FAILURE.replace("errors.TransientError", "errors.PermanentError")
    assert isinstance(task_error(RuntimeError(permanent)), PermanentError)
    assert isinstance(task_error(RuntimeError(permanent.replace("Permanent", "Load"))), LoadError)
    assert task_error(RuntimeError("java.lang.OutOfMemoryError: Java heap space")) is None


def test_the_jvm_stderr_keeps_errors_and_drops_worker_tracebacks():
    """A cancelled task's worker daemon prints a BrokenPipeError traceback; Spark's launcher
    prints a banner. Neither is for the user; the JVM's own error lines are (``--debug`` keeps
    the tracebacks)."""
    text = (
        "Using Spark's default log4j profile: org/apache/spark/log4j2-defaults.properties\n"
        "Traceback (most recent call last):\n"
        '  File "/x/pyspark/daemon.py", line 193, in manager\n'
        "    code = worker(sock, authenticated)\n"
        "BrokenPipeError: [Errno 32] Broken pipe\n"
        "12:00:01 ERROR SparkContext: the real problem\n"
    )
    for debug, expected in [
        (False, "12:00:01 ERROR SparkContext: the real problem\n"),
        (True, "".join(text.splitlines(keepends=True)[1:])),
    ]:
        out = io.StringIO()
        _forward_filtered(io.BytesIO(text.encode()), out, debug)
        assert out.getvalue() == expected


def test_the_report_says_where_rows_went_and_what_an_upsert_did():
    metrics = RunMetrics(pipeline="p", run_id="r", run_key="k", status="succeeded")
    metrics.stages = [
        StageMetrics("orders", "extract", "postgres", rows_out=150),
        StageMetrics("enriched", "transform", "sql"),
        StageMetrics(
            "daily", "load", "postgres", rows_out=150, target="table analytics.daily",
            inserted=60, updated=90,
        ),
    ]  # fmt: skip
    lines = render_report(metrics).splitlines()
    assert lines[2:] == [
        "  orders    extract    150",
        "  enriched  transform  not counted",
        "  daily     load       150 (60 inserted, 90 updated)  → table analytics.daily",
    ]
