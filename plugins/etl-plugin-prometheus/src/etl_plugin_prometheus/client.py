"""Pushing to a Prometheus Pushgateway with ``prometheus_client`` (imported when a run ends, so
loading the plugin stays cheap)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from etl_core import MetricFamily
from etl_plugin_prometheus.options import PrometheusOptions


def push(
    families: list[MetricFamily], grouping_key: dict[str, str], options: PrometheusOptions
) -> None:
    """``pushadd`` the families to the gateway, from a fresh ``CollectorRegistry`` holding
    only them (the client library's global registry is never touched)."""
    from prometheus_client import CollectorRegistry, pushadd_to_gateway

    registry = CollectorRegistry(auto_describe=True)
    registry.register(_RunCollector(families))  # type: ignore[arg-type]
    pushadd_to_gateway(
        options.pushgateway,
        job=options.job,
        registry=registry,
        grouping_key=grouping_key,
        timeout=options.timeout,
        handler=_handler(options),
    )


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


def _handler(options: PrometheusOptions) -> Any:
    from prometheus_client.exposition import basic_auth_handler, default_handler

    if options.username is None:
        return default_handler
    username = options.username.reveal()
    password = options.password.reveal() if options.password is not None else ""

    def handler(url: str, method: str, timeout: float | None, headers: Any, data: bytes) -> Any:
        return basic_auth_handler(url, method, timeout, headers, data, username, password)

    return handler
