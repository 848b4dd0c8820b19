"""A long-running stream whose credentials are Vault dynamic database logins that reach their
maximum TTL while it runs: they are resolved again before they end, without losing or
repeating a record. Real servers: OpenBao (its database secrets engine issues the logins), a
PostgreSQL cluster that checks passwords (the sink), the librdkafka mock cluster (the source).

The mock broker takes no SASL, so the source's login (the same kind of Vault lease, through
`credentials: broker`) is handed to its reader but not checked by the broker; what the test
shows for the source is that renewing its credentials restarts the query from its
checkpoint, exactly once."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from etl_plugin_vault.testing import database_role

from etl_core import config
from etl_core.health import RunControl
from etl_core.plugins import get_plugin_host
from etl_core.run.runner import run

pytestmark = [pytest.mark.spark, pytest.mark.slow]

WAVES, PER_WAVE = 12, 40


@pytest.fixture
def warehouse(openbao, password_postgres):
    """A schema owned by the group role ``etl_w_<id>``, and a Vault role issuing logins that
    act as that group (12 s each, renewable up to 24 s), each recorded in ``issued``."""
    tag = uuid.uuid4().hex[:6]
    group, schema = f"etl_w_{tag}", f"etl_w_{tag}"
    with password_postgres.connect(password_postgres.superuser, password_postgres.password) as c:
        c.autocommit = True
        c.execute(f'CREATE ROLE "{group}" NOLOGIN')
        c.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{group}"')
        c.execute(
            f'CREATE TABLE "{schema}".events (id BIGINT PRIMARY KEY, amount DOUBLE PRECISION)'
        )
        c.execute(f'CREATE TABLE "{schema}".issued (name TEXT, at TIMESTAMPTZ DEFAULT now())')
        c.execute(f'ALTER TABLE "{schema}".events OWNER TO "{group}"')
    mount = database_role(
        openbao,
        password_postgres,
        "writer",
        [
            "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
            f"VALID UNTIL '{{{{expiration}}}}' IN ROLE \"{group}\";",
            f'ALTER ROLE "{{{{name}}}}" SET ROLE "{group}";',
            f"INSERT INTO \"{schema}\".issued (name) VALUES ('{{{{name}}}}');",
        ],
        revocation_statements=[
            f'REASSIGN OWNED BY "{{{{name}}}}" TO "{group}"; DROP OWNED BY "{{{{name}}}}";',
            'DROP ROLE IF EXISTS "{{name}}";',
        ],
        default_ttl="12s",
        max_ttl="24s",
    )
    yield mount, schema
    openbao.client().sys.disable_secrets_engine(mount)


def test_dynamic_logins_are_resolved_again_before_their_max_ttl_without_a_lost_record(
    vault_env, warehouse, password_postgres, kafka_cluster, etl_spark, tmp_path
):
    mount, schema = warehouse
    topic = kafka_cluster.topic(2)
    login = {"provider": "vault", "engine": "database", "mount": mount, "path": "writer"}
    spec = {
        "name": "vault_stream",
        "execution": "streaming",
        "trigger": {"processing_time": "1s"},
        "credentials": {"broker": login, "warehouse": login},
        "sources": {
            "events": {
                "type": "kafka", "connection": kafka_cluster.connection(), "topics": [topic],
                "credentials": "broker", "format": "json",
                "read_schema": "id BIGINT, amount DOUBLE",
            }
        },
        "transforms": {"rows": {"type": "select", "inputs": ["events"],
                                "columns": ["id", "amount"]}},
        "sinks": {
            "db": {"type": "postgres", "input": "rows", "table": f"{schema}.events",
                   "credentials": "warehouse", "connection": password_postgres.connection()},
        },
    }  # fmt: skip
    host = get_plugin_host(autoload=True)
    bound = config.check(data=spec, base_dir=tmp_path, host=host)
    control, said, outcome = RunControl(), [], {}

    def stream() -> None:
        try:
            outcome["metrics"] = run(
                bound, host, spark=etl_spark, control=control, progress=said.append
            )
        except BaseException as exc:  # reported by the test below
            outcome["error"] = exc

    runner = threading.Thread(target=stream, name="test-stream")
    runner.start()
    superuser = (password_postgres.superuser, password_postgres.password)
    try:
        for wave in range(WAVES):  # about 36 s of records: longer than a login's 24 s
            ids = range(wave * PER_WAVE, (wave + 1) * PER_WAVE)
            values = ((None, json.dumps({"id": i, "amount": i / 2}).encode(), i % 2) for i in ids)
            kafka_cluster.produce(topic, values)
            time.sleep(3)
            assert runner.is_alive(), outcome
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with password_postgres.connect(*superuser) as conn:
                (loaded,) = conn.execute(f'SELECT count(*) FROM "{schema}".events').fetchone()
            if loaded >= WAVES * PER_WAVE:
                break
            time.sleep(0.5)
    finally:
        control.request_stop(15)
        runner.join(timeout=120)
    assert "error" not in outcome, outcome.get("error")
    metrics = outcome["metrics"]
    assert metrics.status == "stopped"
    total = WAVES * PER_WAVE
    with password_postgres.connect(*superuser) as conn:
        count, distinct, ids = conn.execute(
            f'SELECT count(*), count(DISTINCT id), sum(id) FROM "{schema}".events'
        ).fetchone()
        issued = [r[0] for r in conn.execute(f'SELECT name FROM "{schema}".issued')]
        alive = conn.execute(
            "SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)", (issued,)
        ).fetchone()[0]
    assert (count, distinct, ids) == (total, total, total * (total - 1) // 2)
    renewals = [m for m in said if m.startswith("credentials from vault resolved again")]
    restarts = [m for m in said if "its credentials were renewed; the query starts again" in m]
    batches = len(metrics.streaming)
    # one login at the start and one per renewal (the two entries share a lease), not one
    # per micro-batch; every one of them revoked by the end
    assert renewals and len(restarts) == len(renewals), said
    assert len(issued) == len(renewals) + 1 < batches, (issued, batches)
    assert alive == 0, "a login outlived the stream"
    assert sum(s.rows_out or 0 for s in metrics.stages if s.stage == "extract") == total
