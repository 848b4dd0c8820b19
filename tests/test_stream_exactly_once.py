"""Exactly once from a Kafka stream into PostgreSQL (upsert, after an enrichment join with a
PostgreSQL table) and MariaDB (append), across crashes at each named fault point (DESIGN §9):
real `etl run` processes killed by ``ETL_FAULT``, restarted until the stream is drained, against
the librdkafka mock cluster and the machine's PostgreSQL and MariaDB.

One pipeline feeds both sinks, so one killed run puts both through the crash window (with
``after_sink_commit`` the PostgreSQL publish of a batch committed and the MariaDB one did
not); the scenarios share one produced topic."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

import psycopg
import pymysql
import pytest
import yaml

pytestmark = [pytest.mark.spark, pytest.mark.slow]

EVENTS, PARTITIONS, PER_BATCH, CUSTOMERS = 200_000, 8, 25_000, 100
PG = {"host": "127.0.0.1", "port": 5432, "dbname": "test", "user": "postgres"}
MARIA = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": "", "database": "test"}


@pytest.fixture(scope="module")
def topic(kafka_cluster):
    """200,000 events with unique ids on 8 partitions, produced once for every scenario."""
    name = kafka_cluster.topic(PARTITIONS)
    kafka_cluster.produce(
        name,
        (
            (None, json.dumps({"id": i, "customer": i % CUSTOMERS, "amount": i % 997}).encode(),
             i % PARTITIONS)
            for i in range(EVENTS)
        ),
        **{"queue.buffering.max.messages": EVENTS},
    )  # fmt: skip
    return name


@pytest.fixture
def targets():
    """A PostgreSQL schema with the customers to join and the upsert target, and a MariaDB
    table without a key (a duplicate would show in the counts)."""
    tag = uuid.uuid4().hex[:8]
    schema, table = f"etl_eo_{tag}", f"etl_eo_{tag}"
    with psycopg.connect(**PG, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.customers (customer BIGINT PRIMARY KEY, region TEXT)")
        conn.execute(
            f"INSERT INTO {schema}.customers SELECT c, 'region ' || (c % 7) "
            f"FROM generate_series(0, {CUSTOMERS - 1}) c"
        )
        conn.execute(
            f"CREATE TABLE {schema}.events (id BIGINT PRIMARY KEY, customer BIGINT, "
            "amount DOUBLE PRECISION, region TEXT)"
        )
    with pymysql.connect(**MARIA, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {table} (id BIGINT NOT NULL, amount DOUBLE)")
    yield schema, table
    with psycopg.connect(**PG, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
    with pymysql.connect(**MARIA, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {table}")


def write_pipeline(tmp_path, kafka_cluster, topic, targets, name):
    schema, table = targets
    pg = {"host": PG["host"], "port": PG["port"], "database": PG["dbname"], "sslmode": "disable"}
    spec = {
        "name": name,
        "execution": "streaming",
        "trigger": {"available_now": True},
        "credentials": {"pg": {"provider": "env", "fields": {"user": "ETL_EO_PG_USER"}}},
        "sources": {
            "events": {
                "type": "kafka", "connection": kafka_cluster.connection(), "topics": [topic],
                "format": "json", "read_schema": "id BIGINT, customer BIGINT, amount DOUBLE",
                "max_records_per_batch": PER_BATCH,
            },
            "customers": {"type": "postgres", "static": True, "connection": pg,
                          "credentials": "pg", "table": f"{schema}.customers"},
        },
        "transforms": {
            "joined": {"type": "join", "inputs": ["events", "customers"], "on": ["customer"]},
            "enriched": {"type": "select", "inputs": ["joined"],
                         "columns": ["id", "customer", "amount", "region"]},
            "raw": {"type": "select", "inputs": ["events"], "columns": ["id", "amount"]},
        },
        "sinks": {
            "pg": {"type": "postgres", "input": "enriched", "table": f"{schema}.events",
                   "mode": "upsert", "key": ["id"], "credentials": "pg", "connection": pg},
            "maria": {"type": "mysql", "input": "raw", "table": table, "mode": "append",
                      "connection": {"host": MARIA["host"], "port": MARIA["port"],
                                     "database": MARIA["database"]}},
        },
    }  # fmt: skip
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def etl_env():
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "ETL_EO_PG_USER": PG["user"]}
    env.pop("ETL_FAULT", None)
    return env


def etl_run(path, fault=None, timeout=600):
    env = etl_env()
    if fault:
        env["ETL_FAULT"] = fault
    return subprocess.run(
        [shutil.which("etl") or "etl", "--quiet", "run", str(path)],
        cwd=path.parent, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def published(targets, name):
    """Per sink: (rows, distinct ids, sum of ids, the ledger's batch id or None)."""
    schema, table = targets
    with psycopg.connect(**PG) as conn:
        pg = conn.execute(
            f"SELECT count(*), count(DISTINCT id), coalesce(sum(id), 0) FROM {schema}.events"
        ).fetchone()
        ledger = conn.execute(
            f"SELECT batch_id FROM {schema}.etl_stream_ledger WHERE pipeline = %s AND sink = 'pg'",
            [name],
        ).fetchone()
        pg = (*(int(v) for v in pg), ledger[0] if ledger else None)
    with pymysql.connect(**MARIA) as conn, conn.cursor() as cursor:
        cursor.execute(f"SELECT count(*), count(DISTINCT id), coalesce(sum(id), 0) FROM {table}")
        maria = tuple(int(v) for v in cursor.fetchone())
        cursor.execute(
            "SELECT batch_id FROM etl_stream_ledger WHERE pipeline = %s AND sink = 'maria'", [name]
        )
        ledger = cursor.fetchone()
        maria = (*maria, ledger[0] if ledger else None)
    return {"pg": pg, "maria": maria}


def assert_whole_batches(state):
    """Each sink holds exactly the batches its ledger names, each once (no batch in part)."""
    for sink, (count, distinct, _ids, batch) in state.items():
        assert count == distinct == PER_BATCH * (batch + 1 if batch is not None else 0), (
            sink,
            state,
        )


def test_killed_at_each_fault_point_and_stopped_every_event_lands_once(
    tmp_path, kafka_cluster, topic, targets
):
    """One stream, one checkpoint: killed at after_stage, at after_sink_commit (PostgreSQL's
    publish of a batch committed, MariaDB's not), at before_spark_commit, then stopped with
    SIGTERM, then drained. After every kill each sink holds whole batches only; at the end
    every event is in both targets once and both ledgers name the last batch Spark committed.
    The kills run one after the other on one stream rather than each on its own (each its own
    drain): every window is hit the same way, for a third of the CI time."""
    name = f"eo_{targets[1][-8:]}"  # MariaDB's ledger is in the shared database
    path = write_pipeline(tmp_path, kafka_cluster, topic, targets, name)
    for fault in ("after_stage:2", "after_sink_commit:3", "before_spark_commit:2"):
        killed = etl_run(path, fault=fault)
        point = fault.split(":")[0]
        assert killed.returncode == -signal.SIGKILL, (fault, killed.stderr[-3000:])
        assert f"killed at {point}" in killed.stderr
        state = published(targets, name)
        assert_whole_batches(state)
        if point == "after_sink_commit":  # the window: one sink has the batch, the other not
            assert state["pg"][3] == state["maria"][3] + 1, state
    process = subprocess.Popen(
        [shutil.which("etl") or "etl", "run", str(path)], cwd=tmp_path, env=etl_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        before = published(targets, name)["maria"][3]
        deadline = time.monotonic() + 300
        while published(targets, name)["maria"][3] == before:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no batch published"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr[-3000:]
    assert "stopped" in stdout
    assert_whole_batches(published(targets, name))
    done = etl_run(path)
    assert done.returncode == 0, done.stderr[-3000:]
    state = published(targets, name)
    commits = tmp_path / ".etl" / "checkpoints" / name / "commits"
    last = max(int(p.name) for p in commits.iterdir() if p.name.isdigit())
    expected = (EVENTS, EVENTS, EVENTS * (EVENTS - 1) // 2, last)
    assert state == {"pg": expected, "maria": expected}
    assert last >= EVENTS // PER_BATCH - 1  # a restart may cut a batch short: never fewer
    schema = targets[0]
    with psycopg.connect(**PG) as conn:
        joined = conn.execute(
            f"SELECT count(*) FROM {schema}.events WHERE region = 'region ' || (customer % 7)"
        ).fetchone()[0]
    assert joined == EVENTS  # every event was enriched with its customer's region


def test_a_database_down_for_a_while_is_waited_out_and_the_stream_goes_on(
    tmp_path, kafka_cluster, topic, etl_spark, monkeypatch
):
    """The target (a PostgreSQL cluster of this test's own, so that it can be stopped) goes
    down after batch 1: the publish is retried, the breaker opens, the batch runs again
    after a pause until the server is back, and the stream ends with every event once."""
    from etl_core import config
    from etl_core.plugins import get_plugin_host
    from etl_core.run.runner import run
    from etl_core.testing.servers import password_postgres_cluster

    with password_postgres_cluster() as cluster:
        with cluster.connect(cluster.superuser, cluster.password) as conn:
            conn.execute("CREATE TABLE events (id BIGINT PRIMARY KEY, amount DOUBLE PRECISION)")
            conn.commit()
        monkeypatch.setenv("ETL_EO_DOWN_USER", cluster.superuser)
        monkeypatch.setenv("ETL_EO_DOWN_PASSWORD", cluster.password)
        spec = {
            "name": "eo_down",
            "execution": "streaming",
            "trigger": {"available_now": True},
            "credentials": {"pg": {"provider": "env", "fields": {
                "user": "ETL_EO_DOWN_USER", "password": "ETL_EO_DOWN_PASSWORD"}}},
            "sources": {"events": {
                "type": "kafka", "connection": kafka_cluster.connection(), "topics": [topic],
                "format": "json", "read_schema": "id BIGINT, customer BIGINT, amount DOUBLE",
                "max_records_per_batch": 10_000}},
            "transforms": {"raw": {"type": "select", "inputs": ["events"],
                                   "columns": ["id", "amount"]}},
            "sinks": {"pg": {"type": "postgres", "input": "raw", "table": "public.events",
                             "mode": "upsert", "key": ["id"], "credentials": "pg",
                             "connection": cluster.connection()}},
            "errors": {"retry": {"attempts": 2, "backoff": "fixed", "initial": "0.5s"},
                       "circuit_breaker": {"failure_threshold": 2, "reset_after": "2s"}},
        }  # fmt: skip
        host = get_plugin_host(autoload=True)
        bound = config.check(data=spec, base_dir=tmp_path, host=host)
        said, outcome = [], {}

        def stream():
            try:
                outcome["metrics"] = run(bound, host, spark=etl_spark, progress=said.append)
            except BaseException as exc:  # reported below
                outcome["error"] = exc

        runner = threading.Thread(target=stream, name="test-stream-down")
        runner.start()
        commits = tmp_path / ".etl" / "checkpoints" / "eo_down" / "commits"
        deadline = time.monotonic() + 300
        while not (commits / "1").exists():
            assert runner.is_alive() and time.monotonic() < deadline, outcome
            time.sleep(0.05)
        with cluster.down():
            time.sleep(8)
        runner.join(timeout=600)
        assert "error" not in outcome, outcome.get("error")
        assert outcome["metrics"].status == "succeeded"
        assert any("runs again in" in line for line in said), said
        with cluster.connect(cluster.superuser, cluster.password) as conn:
            count, distinct, ids = conn.execute(
                "SELECT count(*), count(DISTINCT id), sum(id) FROM events"
            ).fetchone()
    assert (count, distinct, int(ids)) == (EVENTS, EVENTS, EVENTS * (EVENTS - 1) // 2)
