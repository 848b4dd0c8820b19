"""The ``prometheus`` reporter: one push to a Pushgateway when a run ends.

Each push builds a fresh ``CollectorRegistry`` holding only this run's metrics (the client
library's global registry is never touched). ``pushadd`` replaces the pushed metric names in
the group and keeps the others, so ``etl_run_last_success_timestamp_seconds`` survives a
failed run: alert on ``time() - etl_run_last_success_timestamp_seconds``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs

from etl_core import MetricFamily, MetricsReporter, RunMetrics, Secret, metric_families, positive


@attrs.frozen
class PrometheusOptions:
    #: the Pushgateway's URL, e.g. ``http://pushgateway:9091``
    pushgateway: str
    #: the ``job`` label of every pushed series
    job: str = "etl"
    #: add ``run_id`` to the grouping key: one group per run instead of one per pipeline
    #: (groups then pile up on the gateway: delete them from outside)
    group_by_run: bool = False
    #: seconds to wait for the gateway
    timeout: float = attrs.field(default=10.0, validator=positive)
    #: HTTP basic auth of the gateway, e.g. from ``credentials:``
    username: Secret | None = None
    password: Secret | None = None


class _RunCollector:
    """Exposes one run's families to a registry."""

    def __init__(self, families: list[MetricFamily]):
        self._families = families

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for family in self._families:
            labels = list(family.samples[0].labels)
            if family.type == "counter":
                built: Any = CounterMetricFamily(family.name, family.help, labels=labels)
            else:
                built = GaugeMetricFamily(family.name, family.help, labels=labels)
            for sample in family.samples:
                built.add_metric([sample.labels[k] for k in labels], sample.value)
            yield built


class PrometheusReporter(MetricsReporter):
    """Push the run's metrics to a Prometheus Pushgateway (grouping key: pipeline [, run_id])."""

    name = "prometheus"
    Options = PrometheusOptions

    def report(self, metrics: RunMetrics, options: PrometheusOptions) -> None:
        from prometheus_client import CollectorRegistry, pushadd_to_gateway

        registry = CollectorRegistry(auto_describe=True)
        registry.register(_RunCollector(metric_families(metrics)))  # type: ignore[arg-type]
        grouping_key = {"pipeline": metrics.pipeline}
        if options.group_by_run:
            grouping_key["run_id"] = metrics.run_id
        pushadd_to_gateway(
            options.pushgateway,
            job=options.job,
            registry=registry,
            grouping_key=grouping_key,
            timeout=options.timeout,
            handler=_handler(options),
        )


def _handler(options: PrometheusOptions) -> Any:
    from prometheus_client.exposition import basic_auth_handler, default_handler

    if options.username is None:
        return default_handler
    username = options.username.reveal()
    password = options.password.reveal() if options.password is not None else ""

    def handler(url: str, method: str, timeout: float | None, headers: Any, data: bytes) -> Any:
        return basic_auth_handler(url, method, timeout, headers, data, username, password)

    return handler
