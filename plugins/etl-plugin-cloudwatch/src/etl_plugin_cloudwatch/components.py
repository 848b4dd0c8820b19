"""The ``cloudwatch`` reporter: the run's metrics as CloudWatch metric data when a run ends.

Metric names are the same as the Prometheus reporter's (``etl_rows_total``…); labels become
dimensions. Credentials are per reporter: a ``boto3.Session`` of its own, built from the
reporter's options (typically filled from a ``credentials:`` entry); nothing process-global
(no default session, no environment variables) is set.
"""

from __future__ import annotations

from typing import Any

from etl_core import MetricsReporter, RunMetrics, metric_families
from etl_plugin_cloudwatch.client import cloudwatch_client
from etl_plugin_cloudwatch.options import CloudWatchOptions

#: CloudWatch accepts at most this many datums per request (older API limit, still safe)
BATCH = 20


def _unit(name: str) -> str:
    if name.endswith("_seconds"):
        return "Seconds"
    if name.startswith("etl_bytes"):
        return "Bytes"
    if name.endswith("_per_second"):
        return "Count/Second"
    if name.endswith(("_total", "_rows", "_lag", "_datasets")):
        return "Count"
    return "None"


class CloudWatchReporter(MetricsReporter):
    """Send the run's metrics to Amazon CloudWatch (``put_metric_data``)."""

    name = "cloudwatch"
    Options = CloudWatchOptions

    def report(self, metrics: RunMetrics, options: CloudWatchOptions) -> None:
        client = cloudwatch_client(options)
        timestamp = metrics.finished_at or metrics.started_at
        data: list[dict[str, Any]] = [
            {
                "MetricName": family.name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in sample.labels.items()],
                "Timestamp": timestamp,
                "Value": sample.value,
                "Unit": _unit(family.name),
            }
            for family in metric_families(metrics)
            for sample in family.samples
        ]
        for start in range(0, len(data), BATCH):
            client.put_metric_data(
                Namespace=options.namespace, MetricData=data[start : start + BATCH]
            )
