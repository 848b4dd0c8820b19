"""The cloudwatch reporter against a real moto server, after real runs on the shared session."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import boto3
import pytest
import yaml
from etl_plugin_cloudwatch import plugin

from etl_core.plugins import get_plugin_host

pytestmark = pytest.mark.spark
REGION = "eu-west-1"


def pipeline(tmp_path: Path, block: dict, credentials: dict | None = None) -> dict:
    (tmp_path / "users.csv").write_text("user_id,name,country\n1,ann,FR\n2,bob,US\n3,cid,FR\n")
    spec = {
        "name": "cw_demo",
        "sources": {
            "users": {
                "type": "files",
                "format": "csv",
                "path": "users.csv",
                "read_schema": "user_id BIGINT, name STRING, country STRING",
            }
        },
        "sinks": {
            "out": {"type": "files", "input": "users", "format": "parquet", "path": "out"},
        },
        "metrics": [block],
    }
    if credentials:
        spec["credentials"] = credentials
    return spec


@pytest.fixture
def host():
    return get_plugin_host(autoload=False, extra=[("cloudwatch", plugin)])


def cloudwatch(moto_server, **keys):
    keys = keys or {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    session = boto3.session.Session(region_name=REGION, **keys)
    return session.client("cloudwatch", endpoint_url=moto_server.endpoint_url)


def statistic(client, namespace, name, dimensions, started, ended) -> float:
    points = client.get_metric_statistics(
        Namespace=namespace,
        MetricName=name,
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
        StartTime=started,
        EndTime=ended,
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    assert len(points) == 1, points
    return points[0]["Maximum"]


def test_a_run_puts_its_metrics(etl_run, tmp_path, moto_server, host, monkeypatch):
    monkeypatch.setenv("ETL_TEST_CW_KEY", "testing")
    monkeypatch.setenv("ETL_TEST_CW_SECRET", "testing")
    namespace = f"etl-test/{uuid.uuid4().hex[:8]}"
    block = {
        "type": "cloudwatch",
        "namespace": namespace,
        "region": REGION,
        "endpoint_url": moto_server.endpoint_url,
        "access_key_id": {"secret": "env:ETL_TEST_CW_KEY"},
        "secret_access_key": {"secret": "env:ETL_TEST_CW_SECRET"},
    }
    metrics = etl_run(pipeline(tmp_path, block), host=host)
    client = cloudwatch(moto_server)
    names = {m["MetricName"] for m in client.list_metrics(Namespace=namespace)["Metrics"]}
    assert {"etl_rows_total", "etl_run_success", "etl_run_duration_seconds"} <= names
    started = metrics.started_at - dt.timedelta(minutes=5)
    ended = metrics.finished_at + dt.timedelta(minutes=5)
    loads = {"pipeline": "cw_demo", "dataset": "out", "stage": "load"}
    reads = {"pipeline": "cw_demo", "dataset": "users", "stage": "extract"}
    assert statistic(client, namespace, "etl_rows_total", loads, started, ended) == 3
    assert statistic(client, namespace, "etl_rows_total", reads, started, ended) == 3
    run = {"pipeline": "cw_demo"}
    assert statistic(client, namespace, "etl_run_success", run, started, ended) == 1
    assert statistic(
        client, namespace, "etl_run_duration_seconds", run, started, ended
    ) == pytest.approx(metrics.duration_s)


def test_credentials_come_from_the_reporters_credentials_entry(
    etl_run, tmp_path, moto_server, host
):
    """Keys of an assumed role in another account, given only to the reporter through a
    credentials entry: the metrics land in that account, not in the default one."""
    sts = boto3.session.Session(
        region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    ).client("sts", endpoint_url=moto_server.endpoint_url)
    role = sts.assume_role(
        RoleArn="arn:aws:iam::111111111111:role/etl-metrics", RoleSessionName="etl"
    )["Credentials"]
    keys_file = tmp_path / "aws.yaml"
    keys_file.write_text(
        yaml.safe_dump(
            {
                "access_key_id": role["AccessKeyId"],
                "secret_access_key": role["SecretAccessKey"],
                "session_token": role["SessionToken"],
            }
        )
    )
    keys_file.chmod(0o600)
    namespace = f"etl-test/{uuid.uuid4().hex[:8]}"
    block = {
        "type": "cloudwatch",
        "namespace": namespace,
        "region": REGION,
        "endpoint_url": moto_server.endpoint_url,
        "credentials": "metrics_aws",
    }
    credentials = {"metrics_aws": {"provider": "file", "path": str(keys_file)}}
    etl_run(pipeline(tmp_path, block, credentials), host=host)

    as_role = cloudwatch(
        moto_server,
        aws_access_key_id=role["AccessKeyId"],
        aws_secret_access_key=role["SecretAccessKey"],
        aws_session_token=role["SessionToken"],
    )
    assert as_role.list_metrics(Namespace=namespace)["Metrics"]
    assert not cloudwatch(moto_server).list_metrics(Namespace=namespace)["Metrics"]


def test_an_unreachable_endpoint_never_fails_the_run(etl_run, tmp_path, host, monkeypatch):
    monkeypatch.setenv("ETL_TEST_CW_KEY", "testing")
    monkeypatch.setenv("ETL_TEST_CW_SECRET", "testing")
    block = {
        "type": "cloudwatch",
        "region": REGION,
        "endpoint_url": "http://127.0.0.1:9",
        "access_key_id": {"secret": "env:ETL_TEST_CW_KEY"},
        "secret_access_key": {"secret": "env:ETL_TEST_CW_SECRET"},
    }
    assert etl_run(pipeline(tmp_path, block), host=host).status == "succeeded"
