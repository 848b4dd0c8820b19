"""``on_reject: dead_letter`` (DESIGN §4 step 5, §7): rows PostgreSQL refuses are isolated by
bisecting inside the publish transaction and dead-lettered with the database's reason; the
rest load. Also the postgres loader as the dead-letter sink (a table, ``errors`` as jsonb)."""

from __future__ import annotations

import json

import pytest

from etl_core import EtlError
from etl_core.plugins import get_plugin_host
from etl_core.testing import run_pipeline

pytestmark = pytest.mark.spark

ROWS = 10_000
BAD = (17, 5_000, 9_999)  # ids whose amount the target refuses


@pytest.fixture
def run(etl_spark, tmp_path, pg_env):
    host = get_plugin_host()

    def runner(pipeline, **kwargs):
        pipeline = {"name": "pgrejects", "credentials": pg_env, **pipeline}
        return run_pipeline(pipeline, spark=etl_spark, host=host, base_dir=tmp_path, **kwargs)

    return runner


@pytest.fixture
def source(tmp_path):
    lines = ["id,amount,note"]
    lines += [f"{i},{-1 if i in BAD else i % 97 + 1}.50,n{i}" for i in range(1, ROWS + 1)]
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    schema = "id INT, amount DECIMAL(8,2), note STRING"
    return {"type": "files", "format": "csv", "path": "in.csv", "read_schema": schema}


def pg_block(conn, table, **options):
    return {"type": "postgres", "credentials": "pg", "connection": conn, "table": table, **options}


def staging(pg, schema):
    return pg.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename LIKE 'etl_stg_%%'",
        [schema],
    ).fetchall()


def test_check_constraint_rejects_go_to_a_dead_letter_table(
    run, pg, pg_schema, pg_connection_block, source
):
    table, dlq = f"{pg_schema}.t", f"{pg_schema}.dead_letters"
    pg.execute(
        f"CREATE TABLE {table} (id int PRIMARY KEY, amount numeric(8,2) NOT NULL "
        "CONSTRAINT amount_positive CHECK (amount > 0), note varchar(10))"
    )
    sink = pg_block(pg_connection_block, table, input="src", mode="append")
    metrics = run(
        {
            "sources": {"src": source},
            "sinks": {"out": {**sink, "on_reject": "dead_letter"}},
            "errors": {"dead_letter": pg_block(pg_connection_block, dlq)},
        }
    )

    (loaded,) = pg.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert loaded == ROWS - len(BAD)
    assert (
        pg.execute(f"SELECT count(*) FROM {table} WHERE id = ANY(%s)", [list(BAD)]).fetchone()[0]
        == 0
    )
    records = pg.execute(
        f"SELECT pipeline, run_id, stage, component, dataset, errors, row FROM {dlq} "
        "ORDER BY (row::jsonb->>'id')::int"
    ).fetchall()
    assert [json.loads(r[6])["id"] for r in records] == list(BAD)
    for pipeline, run_id, stage, component, dataset, errors, row in records:
        assert (pipeline, run_id, stage, component, dataset) == (
            "pgrejects",
            metrics.run_id,
            "load",
            "postgres",
            "out",
        )
        # the errors column is jsonb: a list of {rule, message, severity}
        assert pg.execute(f"SELECT pg_typeof(errors)::text FROM {dlq} LIMIT 1").fetchone() == (
            "jsonb",
        )
        assert errors == [
            {
                "rule": "amount_positive",
                "message": 'new row for relation "t" violates check constraint "amount_positive"',
                "severity": "error",
            }
        ]
        assert json.loads(row)["amount"] == -1.5
    # the report counts them: rows in = rows loaded + rows dead-lettered
    loads = metrics.stage("out", "load")
    assert (loads.rows_in, loads.rows_out, loads.rows_rejected, loads.dead_lettered) == (
        ROWS,
        ROWS - len(BAD),
        len(BAD),
        len(BAD),
    )
    assert metrics.dead_letters == len(BAD)
    assert metrics.published[-2:] == ["out", "dead_letter.load.out"]  # right after the sink
    assert metrics.stage("dead_letter.load.out", "load").rows_out == len(BAD)
    assert staging(pg, pg_schema) == []


def test_unique_key_and_not_null_rejects_found_by_bisecting_the_merge(
    run, pg, pg_schema, pg_connection_block, source, tmp_path
):
    table = f"{pg_schema}.t"
    pg.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, amount numeric(8,2), note text)")
    pg.execute(f"INSERT INTO {table} VALUES (17, 1, 'old'), (5000, 2, 'old')")
    transform = {
        "type": "sql",
        "inputs": ["src"],
        # one NULL the target's NOT NULL refuses, two keys already in the target
        "query": "SELECT id, abs(amount) AS amount, CASE WHEN id = 9999 THEN NULL ELSE note "
        "END AS note FROM src",
    }
    pg.execute(f"ALTER TABLE {table} ALTER COLUMN note SET NOT NULL")
    sink = pg_block(pg_connection_block, table, input="fixed", mode="append")
    metrics = run(
        {
            "sources": {"src": source},
            "transforms": {"fixed": transform},
            "sinks": {"out": {**sink, "on_reject": "dead_letter"}},
            "errors": {"dead_letter": {"type": "files", "path": "dlq/"}},
        }
    )

    (loaded,) = pg.execute(f"SELECT count(*) FROM {table} WHERE note <> 'old'").fetchone()
    assert loaded == ROWS - len(BAD)
    assert pg.execute(f"SELECT note FROM {table} WHERE id IN (17, 5000)").fetchall() == [
        ("old",),
        ("old",),
    ]
    folder = tmp_path / "dlq" / "pgrejects" / metrics.run_key / "load" / "out"
    records = [
        json.loads(line)
        for path in sorted(folder.rglob("*.json*"))
        if "_etl" not in path.parts
        for line in path.read_text().splitlines()
        if line
    ]
    by_id = {json.loads(r["row"])["id"]: r for r in records}
    assert sorted(by_id) == list(BAD)
    assert by_id[17]["errors"][0]["rule"] == "t_pkey"
    assert "duplicate key value violates unique constraint" in by_id[17]["errors"][0]["message"]
    assert 'null value in column "note"' in by_id[9999]["errors"][0]["message"]
    assert all(r["stage"] == "load" and r["dataset"] == "out" for r in records)
    loads = metrics.stage("out", "load")
    assert (loads.rows_out, loads.dead_lettered) == (ROWS - len(BAD), len(BAD))
    assert metrics.dead_letters == len(BAD)


def test_on_reject_fail_rolls_the_sink_back(run, pg, pg_schema, pg_connection_block, source):
    table = f"{pg_schema}.t"
    pg.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, amount numeric(8,2), note text)")
    pg.execute(f"INSERT INTO {table} VALUES (17, 1, 'old')")
    sink = pg_block(pg_connection_block, table, input="src", mode="append")
    with pytest.raises(EtlError, match=r"sinks\.out.*publish failed.*duplicate key"):
        run({"sources": {"src": source}, "sinks": {"out": sink}})
    assert pg.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)
    assert staging(pg, pg_schema) == []


def test_dead_letter_without_a_dead_letter_sink_is_refused(
    run, pg, pg_schema, pg_connection_block, source
):
    sink = pg_block(pg_connection_block, f"{pg_schema}.t", input="src", create_table=True)
    with pytest.raises(EtlError, match=r"on_reject: dead_letter.*no dead-letter sink"):
        run({"sources": {"src": source}, "sinks": {"out": {**sink, "on_reject": "dead_letter"}}})
    assert staging(pg, pg_schema) == []
