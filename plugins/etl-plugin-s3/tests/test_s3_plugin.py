"""The s3 source and sink against real moto servers: formats, partitions, modes, corrupt
objects, credentials per source (an enforced-auth server), dead letters. A load killed
mid-way is the conformance suite's killed-run case (test_conformance.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from etl_core import ConfigError, EtlError
from etl_core.testing import moto_process

pytestmark = pytest.mark.spark

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("country", pa.string())])
ROWS = [{"id": i, "name": f"n{i}", "country": ["fr", "de", "us"][i % 3]} for i in range(30)]


def write_input(folder: Path, rows=ROWS, schema=SCHEMA) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / "in.parquet")
    return str(folder)


def local_rows(folder: Path) -> list[dict]:
    import pyarrow.dataset as ds

    files = [p for p in folder.rglob("*.parquet") if "_etl" not in p.parts]
    return ds.dataset(files, format="parquet").to_table().to_pylist() if files else []


def by_id(rows):
    return sorted(rows, key=lambda r: r["id"])


def pipeline(s3_env, sources, sinks, **extra):
    return {"name": "s3test", "credentials": s3_env, "sources": sources, "sinks": sinks, **extra}


def copy_back(etl_run, s3_env, tmp_path, source: dict, name="back") -> list[dict]:
    out = tmp_path / name
    etl_run(
        pipeline(
            s3_env,
            {"src": source},
            {"out": {"type": "files", "input": "src", "path": str(out), "mode": "overwrite"}},
        ),
        plugins=True,
    )
    return local_rows(out)


@pytest.mark.parametrize(
    ("fmt", "compression"),
    [("parquet", None), ("csv", None), ("json", None), ("jsonl", "gzip")],
)
def test_round_trip_per_format(etl_run, tmp_path, s3_env, block, s3, bucket, s3h, fmt, compression):
    sink = {**block("data", format=fmt, mode="append"), "input": "rows"}
    if compression:
        sink["compression"] = compression
    metrics = etl_run(
        pipeline(
            s3_env,
            {"rows": {"type": "files", "format": "parquet", "path": write_input(tmp_path / "in")}},
            {"out": sink},
        ),
        plugins=True,
    )
    assert metrics.stage("out", "load").rows_out == 30
    data = [k for k in s3h.keys(s3, bucket, "data/") if "/_etl/" not in k]
    ext = {"parquet": ".parquet", "csv": ".csv", "json": ".json", "jsonl": ".jsonl.gz"}[fmt]
    assert data and all(k.endswith(ext) for k in data)
    back = copy_back(
        etl_run, s3_env, tmp_path,
        {**block("data", format=fmt), "read_schema": "id BIGINT, name STRING, country STRING"},
    )  # fmt: skip
    assert by_id(back) == ROWS


def test_schema_is_inferred_and_hive_partitions_become_columns(
    etl_run, tmp_path, s3_env, block, s3, bucket, s3h
):
    sink = {**block("parts", mode="append", partition_by=["country"]), "input": "rows"}
    etl_run(
        pipeline(
            s3_env,
            {"rows": {"type": "files", "format": "parquet", "path": write_input(tmp_path / "in")}},
            {"out": sink},
        ),
        plugins=True,
    )
    folders = {k.split("/")[1] for k in s3h.keys(s3, bucket, "parts/") if "/_etl/" not in k}
    assert folders == {"country=fr", "country=de", "country=us"}
    back = copy_back(etl_run, s3_env, tmp_path, block("parts", format="parquet"))
    assert by_id(back) == ROWS


def test_modes_append_overwrite_and_dynamic_partition_overwrite(etl_run, tmp_path, s3_env, block):
    def load(rows, name, **options):
        source = {"type": "files", "format": "parquet", "path": write_input(tmp_path / name, rows)}
        sink = {**block("m", partition_by=["country"], **options), "input": "rows"}
        etl_run(pipeline(s3_env, {"rows": source}, {"out": sink}), plugins=True)
        return by_id(copy_back(etl_run, s3_env, tmp_path, block("m", format="parquet"), name + "b"))

    first = [{"id": i, "name": "a", "country": c} for i, c in [(1, "fr"), (2, "de"), (3, "us")]]
    assert load(first, "one", mode="append") == first
    more = [{"id": 4, "name": "b", "country": "fr"}]
    assert load(more, "two", mode="append") == by_id(first + more)
    french = [{"id": 5, "name": "c", "country": "fr"}]
    after = load(french, "three", mode="overwrite_partitions")  # de and us stay
    assert after == by_id([first[1], first[2], *french])
    whole = [{"id": 9, "name": "d", "country": "it"}]
    assert load(whole, "four", mode="overwrite") == whole
    with pytest.raises(EtlError, match="mode is `error`"):
        load(whole, "five", mode="error")


def test_overwrite_partitions_needs_partition_by(etl_run, tmp_path, s3_env, block):
    """A loader's own check of its options for the mode the core handed it."""
    out = {**block("out/"), "input": "src", "mode": "overwrite_partitions"}
    src = {"type": "files", "format": "parquet", "path": write_input(tmp_path / "in")}
    with pytest.raises(ConfigError, match=r"overwrite_partitions` needs `partition_by"):
        etl_run(pipeline(s3_env, {"src": src}, {"out": out}), plugins=True)


def test_publishing_twice_is_a_no_op(etl_run, tmp_path, s3_env, block, s3, bucket, s3h):
    source = {"type": "files", "format": "parquet", "path": write_input(tmp_path / "in")}
    sink = {**block("twice", mode="append"), "input": "rows"}
    for _ in range(2):
        etl_run(pipeline(s3_env, {"rows": source}, {"out": sink}), run_id="same", plugins=True)
    manifests = s3h.keys(s3, bucket, "twice/_etl/manifests/")
    assert len(manifests) == 1
    assert s3h.keys(s3, bucket, "twice/_etl/tmp/") == []
    assert by_id(copy_back(etl_run, s3_env, tmp_path, block("twice", format="parquet"))) == ROWS


def test_empty_prefix(etl_run, tmp_path, s3_env, block):
    empty = {**block("nothing/", format="parquet"), "read_schema": "id BIGINT, name STRING"}
    assert copy_back(etl_run, s3_env, tmp_path, empty) == []
    with pytest.raises(EtlError, match=r"source 'src' .*no data objects.*read_schema"):
        copy_back(etl_run, s3_env, tmp_path, block("nothing/", format="parquet"), "again")


def test_a_corrupt_parquet_object_fails_clearly_or_is_dead_lettered(
    etl_run, tmp_path, s3_env, block, s3, bucket, s3h
):
    s3h.put_parquet(s3, bucket, "mixed/good.parquet", ROWS[:10], SCHEMA)
    s3.put_object(Bucket=bucket, Key="mixed/bad.parquet", Body=b"this is not parquet")
    schema = "id BIGINT, name STRING, country STRING"
    with pytest.raises(EtlError) as failure:
        copy_back(etl_run, s3_env, tmp_path, {**block("mixed", format="parquet"),
                                              "read_schema": schema})  # fmt: skip
    text = str(failure.value)
    assert f"s3://{bucket}/mixed/bad.parquet" in text and "'src'" in text
    source = {**block("mixed", format="parquet", on_corrupt="dead_letter"), "read_schema": schema}
    out, dlq = tmp_path / "out", tmp_path / "dlq"
    metrics = etl_run(
        pipeline(
            s3_env,
            {"src": source},
            {"out": {"type": "files", "input": "src", "path": str(out)}},
            errors={"dead_letter": {"type": "files", "path": str(dlq)}},
        ),
        plugins=True,
    )
    assert by_id(local_rows(out)) == ROWS[:10]
    assert metrics.dead_letters == 1
    records = [
        json.loads(line) for f in dlq.rglob("*.jsonl") for line in f.read_text().splitlines()
    ]
    assert [r["source_position"] for r in records] == [f"s3://{bucket}/mixed/bad.parquet"]
    assert records[0]["errors"][0]["rule"] == "corrupt_object"


def test_replay_of_extract_dead_letters_reads_the_fixed_objects_again(
    etl_run, tmp_path, s3_env, block, s3, bucket, s3h
):
    from click.testing import CliRunner

    from etl_core.cli import main

    s3h.put_parquet(s3, bucket, "mixed/day=1/good.parquet", ROWS[:10], SCHEMA)
    s3.put_object(Bucket=bucket, Key="mixed/day=2/bad.parquet", Body=b"this is not parquet")
    s3.put_object(Bucket=bucket, Key="mixed/day=3/worse.parquet", Body=b"nor is this")
    source = {
        **block("mixed", format="parquet", on_corrupt="dead_letter"),
        "read_schema": "id BIGINT, name STRING, country STRING, day BIGINT",
    }
    out, dlq = tmp_path / "out", tmp_path / "dlq"
    spec = pipeline(
        s3_env,
        {"src": source},
        {"out": {"type": "files", "input": "src", "path": str(out), "mode": "append"}},
        errors={"dead_letter": {"type": "files", "path": str(dlq)}},
    )
    first = etl_run(spec, plugins=True)
    assert first.dead_letters == 2
    s3h.put_parquet(s3, bucket, "mixed/day=2/bad.parquet", ROWS[10:20], SCHEMA)  # the fix
    s3h.put_parquet(s3, bucket, "mixed/day=1/new.parquet", ROWS[20:], SCHEMA)  # not replayed
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(spec))
    args = ["--quiet", "dlq", "replay", str(dlq / "s3test" / first.run_key)]
    result = CliRunner().invoke(main, [*args, "--pipeline", str(tmp_path / "p.yaml")])
    assert result.exit_code == 0, result.output
    rows = local_rows(out)
    assert by_id(rows) == [{**r, "day": 1 if r["id"] < 10 else 2} for r in ROWS[:20]]
    records = [
        json.loads(line) for f in dlq.rglob("*.jsonl") for line in f.read_text().splitlines()
    ]
    positions = sorted(r["source_position"] for r in records)
    worse = f"s3://{bucket}/mixed/day=3/worse.parquet"
    assert positions == [f"s3://{bucket}/mixed/day=2/bad.parquet", worse, worse]  # again


def test_a_missing_bucket_is_a_clear_error(etl_run, tmp_path, s3_env, block):
    source = {**block("x", format="parquet"), "bucket": "etl-missing-bucket-xyz"}
    with pytest.raises(EtlError, match=r"source 'src'.*NoSuchBucket.*check `bucket`"):
        copy_back(etl_run, s3_env, tmp_path, source)


def test_the_s3_dead_letter_sink_receives_records(
    etl_run, tmp_path, s3_env, block, s3, bucket, s3h
):
    csv = tmp_path / "in.csv"
    csv.write_text("id,name\n1,a\nnot-a-number,b\n3,c\n")
    metrics = etl_run(
        pipeline(
            s3_env,
            {"rows": {"type": "files", "format": "csv", "path": str(csv),
                      "read_schema": "id BIGINT, name STRING"}},
            {"out": {"type": "files", "input": "rows", "path": str(tmp_path / "out")}},
            errors={"dead_letter": block("dlq")},
        ),
        plugins=True,
    )  # fmt: skip
    assert metrics.dead_letters == 1
    found = [k for k in s3h.keys(s3, bucket, "dlq/s3test/") if k.endswith(".jsonl")]
    assert len(found) == 1 and "/extract/" in found[0]
    body = s3.get_object(Bucket=bucket, Key=found[0])["Body"].read().decode()
    (record,) = [json.loads(line) for line in body.splitlines()]
    assert record["row"] == "not-a-number,b" and record["stage"] == "extract"
    assert record["dataset"] == "rows" and record["errors"][0]["rule"] == "malformed"


def test_a_large_object_is_uploaded_in_parts(
    etl_run, tmp_path, s3_env, block, s3, bucket, s3h, moto_server
):
    rows = [{"id": i, "name": os.urandom(40).hex(), "country": "fr"} for i in range(160_000)]
    source = {"type": "files", "format": "parquet", "path": write_input(tmp_path / "in", rows)}
    sink = {**block("big", format="csv", mode="append"), "input": "rows"}
    etl_run(pipeline(s3_env, {"rows": source}, {"out": sink}), plugins=True)
    (key,) = [k for k in s3h.keys(s3, bucket, "big/") if k.endswith(".csv")]
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] > 10 << 20
    # staged in parts (the publish's CopyObject then gives it a plain ETag): the server's log
    parts = [
        line
        for line in moto_server.log_file.read_text().splitlines()
        if f"PUT /{bucket}/big/_etl/tmp/" in line and "partNumber=2&" in line
    ]
    assert parts


# -- two sources with their own credentials, on a server that enforces them ---------------

SETUP_CALLS = 14


@pytest.fixture(scope="module")
def enforced(tmp_path_factory):
    """A moto server that enforces auth after SETUP_CALLS calls: buckets a and b with one
    object each, users alice (bucket a only) and bob (bucket b only)."""
    with moto_process(tmp_path_factory.mktemp("moto-auth") / "moto.log",
                      no_auth_calls=SETUP_CALLS) as server:  # fmt: skip
        session = boto3.Session(aws_access_key_id="root", aws_secret_access_key="root",
                                region_name="us-east-1")  # fmt: skip
        s3 = session.client("s3", endpoint_url=server.endpoint_url)
        iam = session.client("iam", endpoint_url=server.endpoint_url)
        data = {
            "etl-bucket-a": [{"id": 1, "name": "a1"}, {"id": 2, "name": "a2"}],
            "etl-bucket-b": [{"id": 1, "country": "fr"}, {"id": 2, "country": "de"}],
        }
        import io

        for name, rows in data.items():  # 4 calls
            s3.create_bucket(Bucket=name)
            buffer = io.BytesIO()
            pq.write_table(pa.Table.from_pylist(rows), buffer)
            s3.put_object(Bucket=name, Key="t/part-0.parquet", Body=buffer.getvalue())
        keys = {}
        for user, name in (("alice", "etl-bucket-a"), ("bob", "etl-bucket-b")):  # 2 x 3 calls
            iam.create_user(UserName=user)
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
            policy = {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": [
                    f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"]}],
            }  # fmt: skip
            iam.put_user_policy(UserName=user, PolicyName="own-bucket",
                                PolicyDocument=json.dumps(policy))  # fmt: skip
        # pad the free calls to exactly SETUP_CALLS, then check that auth is on
        for _ in range(SETUP_CALLS - 10):
            s3.list_buckets()
        with pytest.raises(Exception, match=r"InvalidAccessKeyId|SignatureDoesNotMatch|denied"):
            s3.list_objects_v2(Bucket="etl-bucket-a")
        yield server, keys


def _two_sources(server, tmp_path, monkeypatch, keys_a, keys_b):
    for var, value in zip(("A_KEY", "A_SECRET", "B_KEY", "B_SECRET"), (*keys_a, *keys_b),
                          strict=True):  # fmt: skip
        monkeypatch.setenv(f"ETL_TEST_{var}", value)
    common = {"type": "s3", "prefix": "t", "format": "parquet", "region": "us-east-1",
              "endpoint_url": server.endpoint_url}  # fmt: skip
    return {
        "name": "two_keys",
        "credentials": {
            "alice": {"provider": "env", "fields": {"access_key_id": "ETL_TEST_A_KEY",
                                                    "secret_access_key": "ETL_TEST_A_SECRET"}},
            "bob": {"provider": "env", "fields": {"access_key_id": "ETL_TEST_B_KEY",
                                                  "secret_access_key": "ETL_TEST_B_SECRET"}},
        },
        "sources": {
            "people": {**common, "bucket": "etl-bucket-a", "credentials": "alice"},
            "places": {**common, "bucket": "etl-bucket-b", "credentials": "bob"},
        },
        "transforms": {"joined": {"type": "join", "inputs": ["people", "places"], "on": ["id"]}},
        "sinks": {"out": {"type": "files", "input": "joined", "path": str(tmp_path / "joined")}},
    }  # fmt: skip


def test_two_sources_with_their_own_keys_in_one_pipeline(etl_run, tmp_path, enforced, monkeypatch):
    server, keys = enforced
    spec = _two_sources(server, tmp_path, monkeypatch, keys["alice"], keys["bob"])
    etl_run(spec, plugins=True)
    assert by_id(local_rows(tmp_path / "joined")) == [
        {"id": 1, "name": "a1", "country": "fr"},
        {"id": 2, "name": "a2", "country": "de"},
    ]
    swapped = _two_sources(server, tmp_path, monkeypatch, keys["bob"], keys["alice"])
    with pytest.raises(EtlError, match=r"source 'people' \(s3://etl-bucket-a/t\).*AccessDenied"):
        etl_run(swapped, plugins=True)


def test_a_wrong_secret_is_a_clear_permanent_error(etl_run, tmp_path, enforced, monkeypatch):
    server, keys = enforced
    wrong = (keys["alice"][0], "not-the-secret")
    spec = _two_sources(server, tmp_path, monkeypatch, wrong, keys["bob"])
    with pytest.raises(EtlError) as failure:
        etl_run(spec, plugins=True)
    text = str(failure.value)
    assert "source 'people'" in text and "SignatureDoesNotMatch" in text
    assert "not-the-secret" not in text
