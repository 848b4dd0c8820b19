"""The cloudwatch reporter through etl_core's reporter suite, against a real moto server."""

from __future__ import annotations

import datetime as dt
import uuid

import boto3
import pytest

from etl_core.testing import SECRET_MARKER, MetricsReporterConformance

pytestmark = pytest.mark.spark
REGION = "eu-west-1"


class TestCloudwatchReporterConformance(MetricsReporterConformance):
    component = "cloudwatch"

    @pytest.fixture(autouse=True)
    def _server(self, moto_server, monkeypatch):
        self.endpoint, self.namespace = moto_server.endpoint_url, f"etl-test/{uuid.uuid4().hex}"
        monkeypatch.setenv("ETL_TEST_CW_KEY", "testing")
        monkeypatch.setenv("ETL_TEST_CW_SECRET", "testing")

    def block(self, endpoint):
        return {
            "type": "cloudwatch",
            "namespace": self.namespace,
            "region": REGION,
            "endpoint_url": endpoint,
            "access_key_id": {"secret": "env:ETL_TEST_CW_KEY"},
            "secret_access_key": {"secret": "env:ETL_TEST_CW_SECRET"},
        }

    def reporter_block(self, tmp_path):
        return self.block(self.endpoint)

    def reported(self, tmp_path, metrics):
        client = boto3.session.Session(
            region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
        ).client("cloudwatch", endpoint_url=self.endpoint)
        received = {}
        for metric in client.list_metrics(Namespace=self.namespace, MetricName="etl_rows_total")[
            "Metrics"
        ]:
            labels = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
            [point] = client.get_metric_statistics(
                Namespace=self.namespace,
                MetricName="etl_rows_total",
                Dimensions=metric["Dimensions"],
                StartTime=metrics.started_at - dt.timedelta(minutes=5),
                EndTime=metrics.finished_at + dt.timedelta(minutes=5),
                Period=60,
                Statistics=["Maximum"],
            )["Datapoints"]
            received[labels["dataset"], labels["stage"]] = point["Maximum"]
        return received

    def failing_block(self, tmp_path):
        block = self.block("http://127.0.0.1:9")  # nothing listens on the discard port
        block["secret_access_key"] = {"secret": "env:ETL_TEST_CW_FAILING_SECRET"}
        return block

    @pytest.fixture(autouse=True)
    def _failing_secret(self, monkeypatch):
        monkeypatch.setenv("ETL_TEST_CW_FAILING_SECRET", SECRET_MARKER)
