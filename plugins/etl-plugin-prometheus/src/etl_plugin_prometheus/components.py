"""The ``prometheus`` reporter: one push to a Pushgateway when a run ends.

Each push builds a fresh ``CollectorRegistry`` holding only this run's metrics (the client
library's global registry is never touched). ``pushadd`` replaces the pushed metric names in
the group and keeps the others, so ``etl_run_last_success_timestamp_seconds`` survives a
failed run: alert on ``time() - etl_run_last_success_timestamp_seconds``.
"""

from __future__ import annotations

from etl_core import MetricsReporter, RunMetrics, metric_families
from etl_plugin_prometheus.client import push
from etl_plugin_prometheus.options import PrometheusOptions


class PrometheusReporter(MetricsReporter):
    """Push the run's metrics to a Prometheus Pushgateway (grouping key: pipeline [, run_id])."""

    name = "prometheus"
    Options = PrometheusOptions

    def report(self, metrics: RunMetrics, options: PrometheusOptions) -> None:
        grouping_key = {"pipeline": metrics.pipeline}
        if options.group_by_run:
            grouping_key["run_id"] = metrics.run_id
        push(metric_families(metrics), grouping_key, options)
