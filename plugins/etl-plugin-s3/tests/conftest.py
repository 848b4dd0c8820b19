"""Fixtures for the s3 plugin's tests: the core's session moto server, a fresh bucket per
test, and the keys served through an `env` credentials entry."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REGION = "us-east-1"
KEY, SECRET = "etl-test-key", "etl-test-secret-value"


def client(endpoint_url: str, key: str = KEY, secret: str = SECRET):
    return boto3.Session(
        aws_access_key_id=key, aws_secret_access_key=secret, region_name=REGION
    ).client("s3", endpoint_url=endpoint_url)


@pytest.fixture
def s3(moto_server):
    return client(moto_server.endpoint_url)


@pytest.fixture
def bucket(s3) -> Iterator[str]:
    name = f"etl-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=item["Key"])
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def s3_env(monkeypatch) -> dict:
    """A `credentials:` block named `lake` serving the keys from the environment."""
    monkeypatch.setenv("ETL_TEST_S3_KEY", KEY)
    monkeypatch.setenv("ETL_TEST_S3_SECRET", SECRET)
    fields = {"access_key_id": "ETL_TEST_S3_KEY", "secret_access_key": "ETL_TEST_S3_SECRET"}
    return {"lake": {"provider": "env", "fields": fields}}


@pytest.fixture
def block(moto_server, bucket):
    """``block(prefix, **options)``: an s3 source/sink block on the test bucket."""

    def make(prefix: str, **options):
        return {
            "type": "s3",
            "bucket": bucket,
            "prefix": prefix,
            "endpoint_url": moto_server.endpoint_url,
            "region": REGION,
            "credentials": "lake",
            **options,
        }

    return make


def keys(s3, bucket: str, prefix: str = "") -> list[str]:
    """Every key under ``prefix`` except pyarrow's empty directory markers."""
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found += [i["Key"] for i in page.get("Contents", []) if not i["Key"].endswith("/")]
    return sorted(found)


def put_parquet(s3, bucket: str, key: str, rows: list[dict], schema: pa.Schema) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buffer)
    s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


@pytest.fixture
def s3h():
    """The helpers above, for test modules (conftest is not importable with importlib mode)."""
    import types

    return types.SimpleNamespace(
        KEY=KEY, SECRET=SECRET, REGION=REGION, client=client, keys=keys, put_parquet=put_parquet
    )
