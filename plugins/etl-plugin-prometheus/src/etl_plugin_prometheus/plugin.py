"""Registers the ``prometheus`` metrics reporter."""

from __future__ import annotations

from collections.abc import Callable

from etl_core import MetricsReporter, hookimpl


@hookimpl
def etl_register_metrics_reporters(register: Callable[[type[MetricsReporter]], None]) -> None:
    from etl_plugin_prometheus.components import PrometheusReporter

    register(PrometheusReporter)
