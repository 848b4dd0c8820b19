"""The prometheus reporter through etl_core's reporter suite, against a real Pushgateway."""

from __future__ import annotations

import socket

import pytest
from etl_plugin_prometheus.testing import unique_job

from etl_core.testing import MetricsReporterConformance

pytestmark = pytest.mark.spark


class TestPrometheusReporterConformance(MetricsReporterConformance):
    component = "prometheus"

    @pytest.fixture(autouse=True)
    def _gateway(self, pushgateway):
        self.gateway, self.job = pushgateway, unique_job()

    def reporter_block(self, tmp_path):
        return {"type": "prometheus", "pushgateway": self.gateway.url, "job": self.job}

    def reported(self, tmp_path, metrics):
        return {
            (labels["dataset"], labels["stage"]): value
            for (name, key), value in self.gateway.samples(self.job).items()
            if name == "etl_rows_total" and (labels := dict(key))
        }

    def failing_block(self, tmp_path):
        with socket.socket() as sock:  # a port nobody listens on
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        return {"type": "prometheus", "pushgateway": f"http://127.0.0.1:{port}", "timeout": 2}
