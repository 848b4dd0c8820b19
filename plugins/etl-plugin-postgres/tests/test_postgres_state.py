"""The ``postgres`` state store against the real PostgreSQL: bookmarks in a table."""

from __future__ import annotations

import pytest
from etl_plugin_postgres.components import PostgresStateStore
from etl_plugin_postgres.options import Connection, PostgresStateOptions

from etl_core import Secret
from etl_core.plugins import get_plugin_host
from etl_core.testing import StateStoreConformance, run_pipeline

pytestmark = pytest.mark.spark


def test_incremental_bookmarks_live_in_a_table(
    etl_spark, pg, pg_schema, pg_connection_block, pg_env, tmp_path
):
    table, state = f"{pg_schema}.events", f"{pg_schema}.etl_state"
    pg.execute(f"CREATE TABLE {table} (id int, updated_at timestamptz)")
    pg.execute(f"INSERT INTO {table} SELECT i, now() FROM generate_series(1, 10) i")
    pipeline = {
        "name": "pgstate",
        "credentials": pg_env,
        "state": {
            "type": "postgres",
            "credentials": "pg",
            "connection": pg_connection_block,
            "table": state,
        },
        "sources": {
            "src": {
                "type": "postgres",
                "table": table,
                "connection": pg_connection_block,
                "credentials": "pg",
                "incremental": {"column": "id"},
            }
        },
        "sinks": {"out": {"type": "files", "input": "src", "path": "out", "mode": "append"}},
    }
    host = get_plugin_host()

    def rows_read() -> int:
        metrics = run_pipeline(pipeline, spark=etl_spark, host=host, base_dir=tmp_path)
        return metrics.stage("src", "extract").rows_out

    assert rows_read() == 10
    assert pg.execute(f"SELECT pipeline, source, bookmark FROM {state}").fetchall() == [
        ("pgstate", "src", 10)
    ]
    assert rows_read() == 0
    pg.execute(f"INSERT INTO {table} VALUES (11, now()), (12, now())")
    assert rows_read() == 2
    assert pg.execute(f"SELECT bookmark FROM {state}").fetchall() == [(12,)]
    assert not (tmp_path / ".etl" / "state").exists()  # nothing in the file store


def test_save_merges_over_the_stored_marks(pg, pg_schema, pg_connection_block):
    options = PostgresStateOptions(
        connection=Connection(**pg_connection_block),
        user=Secret(pg.info.user),
        table=f"{pg_schema}.marks",
    )
    store = PostgresStateStore()
    assert store.load(None, "p", options) == {}
    store.save(None, "p", {"a": 1, "b": "2024-01-01 00:00:00+00"}, options)
    store.save(None, "p", {"a": 5}, options)
    store.save(None, "other", {"a": 7}, options)
    assert store.load(None, "p", options) == {"a": 5, "b": "2024-01-01 00:00:00+00"}


class TestPostgresStateStoreConformance(StateStoreConformance):
    component = "postgres"

    @pytest.fixture(autouse=True)
    def _database(self, pg_schema, pg_connection_block, pg_env):
        self.schema, self.connection, self.env = pg_schema, pg_connection_block, pg_env

    def credentials(self):
        return self.env

    def state_block(self, tmp_path):
        return {
            "type": "postgres",
            "credentials": "pg",
            "connection": self.connection,
            "table": f"{self.schema}.etl_state",
        }
