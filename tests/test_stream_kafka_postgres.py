"""A Kafka stream through a quality rule (quarantine) into files and PostgreSQL, micro-batch by
micro-batch, against the librdkafka mock cluster and the machine's PostgreSQL: every record
is published once or dead-lettered, with exact counts."""

from __future__ import annotations

import json
import uuid

import psycopg
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from etl_core.manifests import manifest_files

pytestmark = pytest.mark.spark

PG = {"host": "127.0.0.1", "port": 5432, "dbname": "test", "user": "postgres"}


@pytest.fixture
def table():
    schema = f"etl_stream_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(**PG, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(
            f'CREATE TABLE "{schema}".events (id BIGINT PRIMARY KEY, amount DOUBLE PRECISION)'
        )
    yield f"{schema}.events"
    with psycopg.connect(**PG, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_kafka_quarantine_into_files_and_postgres_counts_every_record(
    kafka_cluster, etl_run, tmp_path, table, monkeypatch
):
    topic = kafka_cluster.topic(4)
    values = []
    for i in range(600):
        value = {"id": i, "amount": -1.0 if i % 50 == 7 else i / 4}  # 12 break the rule
        values.append(json.dumps(value).encode() if i % 100 != 3 else b"{broken")  # 6 malformed
    kafka_cluster.produce(topic, ((None, v, i % 4) for i, v in enumerate(values)))
    monkeypatch.setenv("ETL_STREAM_PG_USER", PG["user"])
    connection = {"host": PG["host"], "port": PG["port"], "database": PG["dbname"],
                  "sslmode": "disable"}  # fmt: skip
    spec = {
        "name": "kafka_quarantine",
        "execution": "streaming",
        "trigger": {"available_now": True},
        "credentials": {"pg": {"provider": "env", "fields": {"user": "ETL_STREAM_PG_USER"}}},
        "sources": {
            "events": {
                "type": "kafka", "connection": kafka_cluster.connection(), "topics": [topic],
                "format": "json", "read_schema": "id BIGINT, amount DOUBLE",
                "max_records_per_batch": 250,
            }
        },
        "transforms": {"clean": {"type": "select", "inputs": ["events"],
                                 "columns": ["id", "amount"]}},
        "validate": {"clean": {"rules": [{"range": {"column": "amount", "min": 0}}],
                               "on_failure": "quarantine"}},
        "sinks": {
            "lake": {"type": "files", "input": "clean", "path": "lake"},
            "db": {"type": "postgres", "input": "clean", "table": table, "credentials": "pg",
                   "connection": connection},
        },
        "errors": {"dead_letter": {"type": "files", "path": "dlq"}},
    }  # fmt: skip
    metrics = etl_run(spec, plugins=True)
    assert [b.batch_id for b in metrics.streaming] == [0, 1, 2]
    malformed = {i for i in range(600) if i % 100 == 3}
    broken = {i for i in range(600) if i % 50 == 7} - malformed
    good = set(range(600)) - malformed - broken
    names = manifest_files(pafs.LocalFileSystem(), str(tmp_path / "lake")) or []
    lake = [r["id"] for n in names for r in pq.read_table(tmp_path / "lake" / n).to_pylist()]
    assert sorted(lake) == sorted(good)
    with psycopg.connect(**PG) as conn:
        db = [r[0] for r in conn.execute(f"SELECT id FROM {table}").fetchall()]
    assert sorted(db) == sorted(good)
    letters = [
        json.loads(line)
        for path in (tmp_path / "dlq").rglob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    by_stage = {
        stage: [r for r in letters if r["stage"] == stage] for stage in ("extract", "validate")
    }
    assert (
        len(by_stage["extract"])
        == len(malformed)
        == metrics.stage("events", "extract").dead_lettered
    )
    assert {r["source_position"].rsplit("@", 1)[1] for r in by_stage["extract"]} == {
        str(i // 4) for i in malformed
    }
    assert sorted(json.loads(r["row"])["id"] for r in by_stage["validate"]) == sorted(broken)
    assert len(lake) + len(letters) == 600
