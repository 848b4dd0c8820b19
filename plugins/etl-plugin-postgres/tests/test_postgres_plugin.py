"""The postgres plugin beyond the conformance suite: upsert semantics, staging constraints,
schema drift, incremental reads, partitions of a query, typed errors (the killed run is in the
conformance suite)."""

from __future__ import annotations

import json

import pytest

from etl_core import ConfigError, EtlError, PermanentError, TransientError
from etl_core.plugins import get_plugin_host
from etl_core.testing import run_pipeline

pytestmark = pytest.mark.spark


@pytest.fixture
def run(etl_spark, tmp_path, pg_env):
    host = get_plugin_host()

    def runner(sources, sinks, transforms=None, **kwargs):
        pipeline = {"name": "pgtest", "credentials": pg_env, "sources": sources, "sinks": sinks}
        if transforms:
            pipeline["transforms"] = transforms
        return run_pipeline(pipeline, spark=etl_spark, host=host, base_dir=tmp_path, **kwargs)

    return runner


def csv_source(tmp_path, text, schema):
    (tmp_path / "in.csv").write_text(text)
    return {"type": "files", "format": "csv", "path": "in.csv", "read_schema": schema}


def rows(pg, table, order="1"):
    return pg.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()


def staging(pg, schema):
    return pg.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename LIKE 'etl_stg_%%'",
        [schema],
    ).fetchall()


def sink(schema, conn, **options):
    return {"type": "postgres", "input": "src", "credentials": "pg", "connection": conn, **options}


@pytest.mark.parametrize(
    ("column", "old", "csv", "kept"),
    [
        ("text", "'old'", "1,a\n1,b\n2,c\n", "old"),  # a key the target has twice
        # two rows with a key the target lacks: MERGE would insert both (the key's unique
        # index refuses the second); the refusal reads the same as for keys already there
        ("jsonb", "'{}'", "5,{}\n5,[]\n2,{}\n", {}),
    ],
)
def test_upsert_refuses_duplicate_keys_in_one_batch(
    run, pg, pg_schema, pg_connection_block, tmp_path, column, old, csv, kept
):
    table = f"{pg_schema}.t"
    pg.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v {column})")
    pg.execute(f"INSERT INTO {table} VALUES (1, {old})")
    source = csv_source(tmp_path, "id,v\n" + csv, "id INT, v STRING")
    with pytest.raises(EtlError, match=r"several rows with the same key \(id\).*deduplicate"):
        run(
            {"src": source},
            {"out": sink(pg_schema, pg_connection_block, table=table, mode="upsert", key=["id"])},
        )
    assert rows(pg, table) == [(1, kept)]
    assert staging(pg, pg_schema) == []


def test_upsert_on_a_key_without_unique_index_says_so(
    run, pg, pg_schema, pg_connection_block, tmp_path
):
    table = f"{pg_schema}.t"
    pg.execute(f"CREATE TABLE {table} (id int, v text)")
    source = csv_source(tmp_path, "id,v\n1,a\n", "id INT, v STRING")
    with pytest.raises(EtlError, match=r"no unique or exclusion constraint"):
        run(
            {"src": source},
            {"out": sink(pg_schema, pg_connection_block, table=table, mode="upsert", key=["id"])},
        )
    assert rows(pg, table) == []


def test_upsert_updates_and_inserts_casting_text_landed_columns(
    run, pg, pg_schema, pg_connection_block, tmp_path
):
    table = f"{pg_schema}.t"
    pg.execute(f"CREATE TABLE {table} (k1 int, k2 text, v jsonb, n int, PRIMARY KEY (k2, k1))")
    pg.execute(f"INSERT INTO {table} VALUES (1, 'a', '{{\"x\": 1}}', 1), (2, 'b', '[]', 2)")
    source = csv_source(
        tmp_path,
        "k1,k2,v,n\n1,a,[9],10\n3,c,[3],30\n",
        "k1 INT, k2 STRING, v STRING, n INT",
    )
    run(
        {"src": source},
        {"out": sink(pg_schema, pg_connection_block, table=table, mode="upsert", key=["k1", "k2"])},
    )
    assert rows(pg, table, "k1") == [(1, "a", [9], 10), (2, "b", [], 2), (3, "c", [3], 30)]


def test_check_and_not_null_reject_while_staging(run, pg, pg_schema, pg_connection_block, tmp_path):
    table = f"{pg_schema}.t"
    pg.execute(f"CREATE TABLE {table} (id int NOT NULL, amount numeric(8,2) CHECK (amount > 0))")
    source = csv_source(tmp_path, "id,amount\n1,5.00\n2,-1.00\n", "id INT, amount DECIMAL(8,2)")
    with pytest.raises(EtlError, match=r"staging|check constraint"):
        run(
            {"src": source},
            {"out": sink(pg_schema, pg_connection_block, table=table, mode="append")},
        )
    assert rows(pg, table) == []
    assert staging(pg, pg_schema) == []


def test_create_table_and_schema_drift(run, pg, pg_schema, pg_connection_block, tmp_path):
    table = f"{pg_schema}.made"
    source = csv_source(tmp_path, "id,v\n1,a\n2,b\n", "id INT, v STRING")
    out = sink(
        pg_schema, pg_connection_block, table=table, mode="upsert", key=["id"], create_table=True
    )
    run({"src": source}, {"out": out})
    assert rows(pg, table) == [(1, "a"), (2, "b")]
    key = pg.execute(
        f"SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        f"WHERE conrelid = '{table}'::regclass AND contype = 'p'"
    ).fetchone()
    assert key == ("PRIMARY KEY (id)",)
    wider = csv_source(tmp_path, "id,v,extra\n2,B,x\n3,c,y\n", "id INT, v STRING, extra STRING")
    with pytest.raises(PermanentError, match=r"extra.*schema_drift: add_columns"):
        run({"src": wider}, {"out": out})
    run({"src": wider}, {"out": {**out, "schema_drift": "add_columns"}})
    assert rows(pg, table) == [(1, "a", None), (2, "B", "x"), (3, "c", "y")]


def test_create_table_creates_the_schema_it_needs(
    run, pg, pg_schema, pg_connection_block, tmp_path
):
    schema = f"{pg_schema}_made"
    out = sink(pg_schema, pg_connection_block, table=f"{schema}.t", mode="append")
    try:
        with pytest.raises(PermanentError, match=r"create_table: true.*creates the schema too"):
            run({"src": csv_source(tmp_path, "id,v\n1,a\n", "id INT, v STRING")}, {"out": out})
        run({"src": csv_source(tmp_path, "id,v\n1,a\n", "id INT, v STRING")},
            {"out": {**out, "create_table": True}})  # fmt: skip
        assert rows(pg, f"{schema}.t") == [(1, "a")]
    finally:
        pg.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def test_incremental_reads_only_new_rows(run, pg, pg_schema, pg_connection_block, tmp_path):
    table = f"{pg_schema}.events"
    pg.execute(f"CREATE TABLE {table} (id int, updated_at timestamptz)")
    pg.execute(
        f"INSERT INTO {table} SELECT i, timestamptz '2024-01-01' + i * interval '1 hour' "
        "FROM generate_series(1, 10) i"
    )
    source = {
        "type": "postgres",
        "table": table,
        "connection": pg_connection_block,
        "credentials": "pg",
        "incremental": {"column": "updated_at"},
        "partition_column": "id",
        "partitions": 3,
    }
    out = {"type": "files", "input": "src", "path": "out", "mode": "append"}
    assert run({"src": source}, {"out": out}).stage("src", "extract").rows_out == 10
    assert run({"src": source}, {"out": out}).stage("src", "extract").rows_out == 0
    pg.execute(f"INSERT INTO {table} VALUES (11, '2024-02-01'), (12, '2023-01-01')")
    assert run({"src": source}, {"out": out}).stage("src", "extract").rows_out == 1
    state = json.loads((tmp_path / ".etl" / "state" / "pgtest.json").read_text())
    assert state["src"].startswith("2024-02-01 00:00:00")


def test_nothing_new_is_counted_as_zero_rows_behind_a_join(run, pg, pg_schema, pg_connection_block):
    """Spark drops the count of an input it finds empty from a join's plan (adaptive
    execution): the source reports its 0 rows itself, so the report says 0, not unknown."""
    table = f"{pg_schema}.events"
    pg.execute(f"CREATE TABLE {table} (id int, updated_at timestamptz)")
    pg.execute(f"INSERT INTO {table} VALUES (1, '2024-01-01'), (2, '2024-01-02')")
    source = {
        "type": "postgres",
        "table": table,
        "connection": pg_connection_block,
        "credentials": "pg",
        "incremental": {"column": "updated_at"},
    }
    other = {"type": "postgres", "connection": pg_connection_block, "credentials": "pg"}
    sources = {"src": source, "names": {**other, "query": "SELECT 1 AS id, 'one' AS name"}}
    transforms = {
        "joined": {
            "type": "sql",
            "inputs": ["src", "names"],
            "query": "SELECT src.id, name FROM src JOIN names ON src.id = names.id",
        }
    }
    out = {"out": {"type": "files", "input": "joined", "path": "out", "mode": "append"}}
    assert run(sources, out, transforms).stage("src", "extract").rows_out == 2
    second = run(sources, out, transforms)
    assert second.stage("src", "extract").rows_out == 0
    assert second.stage("out", "load").rows_out == 0


def test_incremental_needs_a_column(run, pg_schema, pg_connection_block):
    source = {
        "type": "postgres",
        "table": f"{pg_schema}.x",
        "connection": pg_connection_block,
        "incremental": {"by": "modified_time"},
    }
    with pytest.raises(ConfigError, match=r"incremental: \{column: updated_at\}"):
        run({"src": source}, {"out": {"type": "files", "input": "src", "path": "o"}})


def test_upsert_without_a_key_is_refused_before_anything_runs(run, pg_schema, pg_connection_block):
    """The core checks the sink's mode and key against the loader's declared modes."""
    src = {"type": "files", "format": "csv", "path": "none.csv", "read_schema": "id BIGINT"}
    out = {
        "type": "postgres",
        "input": "src",
        "table": f"{pg_schema}.t",
        "connection": pg_connection_block,
        "mode": "upsert",
    }
    with pytest.raises(ConfigError, match=r"sinks\.out\.key: `mode: upsert` needs `key"):
        run({"src": src}, {"out": out})


def test_query_with_predicates_and_columns(run, pg, pg_schema, pg_connection_block, tmp_path):
    pg.execute(f"CREATE TABLE {pg_schema}.a (id int, g text)")
    pg.execute(f"INSERT INTO {pg_schema}.a SELECT i, 'g' || (i % 3) FROM generate_series(1, 30) i")
    source = {
        "type": "postgres",
        "connection": pg_connection_block,
        "credentials": "pg",
        "query": f"SELECT id, g, id * 2 AS twice FROM {pg_schema}.a",
        "columns": ["id", "twice"],
        "where": "id > 5",
        "predicates": ["g = 'g0'", "g = 'g1'", "g = 'g2'"],
    }
    metrics = run({"src": source}, {"out": {"type": "files", "input": "src", "path": "o"}})
    assert metrics.stage("src", "extract").rows_out == 25
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "o")
    assert table.column_names == ["id", "twice"]
    assert sorted(table.column("id").to_pylist()) == list(range(6, 31))


def test_partition_column_must_be_integer_or_temporal(run, pg, pg_schema, pg_connection_block):
    pg.execute(f"CREATE TABLE {pg_schema}.a (name text)")
    source = {
        "type": "postgres",
        "table": f"{pg_schema}.a",
        "connection": pg_connection_block,
        "credentials": "pg",
        "partition_column": "name",
    }
    with pytest.raises(PermanentError, match="partition_column 'name' is text; use an integer"):
        run({"src": source}, {"out": {"type": "files", "input": "src", "path": "o"}})


def test_errors_are_typed_and_name_the_component(run, pg_schema, pg_connection_block):
    out = {"out": {"type": "files", "input": "src", "path": "o"}}
    missing = {
        "type": "postgres",
        "table": f"{pg_schema}.nope",
        "credentials": "pg",
        "connection": pg_connection_block,
    }
    with pytest.raises(PermanentError, match=rf"source 'src'.*{pg_schema}.nope does not exist"):
        run({"src": missing}, out)
    down = {**missing, "connection": {**pg_connection_block, "port": 1, "connect_timeout": 2}}
    with pytest.raises(TransientError, match=r"source 'src'.*unreachable"):
        run({"src": down}, out)
    bad_where = {**missing, "table": None, "query": "SELECT 1 AS x", "where": "x >"}
    with pytest.raises(PermanentError, match="SQL error"):
        run({"src": bad_where}, out)


def test_plaintext_password_is_refused(run, pg_schema, pg_connection_block):
    source = {
        "type": "postgres",
        "table": f"{pg_schema}.a",
        "connection": pg_connection_block,
        "password": "hunter2",
    }
    with pytest.raises(ConfigError, match="plaintext secret") as failure:
        run({"src": source}, {"out": {"type": "files", "input": "src", "path": "o"}})
    assert "hunter2" not in str(failure.value)


def test_a_read_failing_on_the_executors_names_the_source_not_the_sink(
    run, pg, pg_schema, pg_connection_block
):
    """The planning query (``LIMIT 0``) sees no row; the executors' read divides by zero. The
    error names the source, once, keeps its type, and carries no Python class name."""
    pg.execute(f"CREATE TABLE {pg_schema}.a (id int)")
    pg.execute(f"INSERT INTO {pg_schema}.a SELECT generate_series(1, 5)")
    source = {
        "type": "postgres",
        "connection": pg_connection_block,
        "credentials": "pg",
        "query": f"SELECT 10 / (id - 3) AS x FROM {pg_schema}.a",
    }
    with pytest.raises(PermanentError) as failure:
        run({"src": source}, {"out": {"type": "files", "input": "src", "path": "o"}})
    message = str(failure.value)
    assert message.startswith("source 'src' (query): division by zero"), message
    assert "sinks.out" not in message and "staging failed" not in message
    assert "Error:" not in message and "etl_core" not in message
