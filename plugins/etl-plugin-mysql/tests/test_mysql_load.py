"""Extract and load against the real MariaDB: modes, the ledger, staging, errors."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from etl_core import LoadError, PermanentError, PreflightFailed, RunFailed

pytestmark = pytest.mark.spark


def orders(db, count: int = 10) -> None:
    db.execute(
        "CREATE TABLE orders (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL, total DECIMAL(10,2))",
        "INSERT INTO orders VALUES "
        + ", ".join(f"({i}, 'n{i}', {i}.25)" for i in range(1, count + 1)),
    )


def copy_spec(db, mode: str = "append", **sink) -> dict:
    return {
        "name": "copy",
        "sources": {
            "src": {
                "type": "mysql",
                "connection": db.connection(),
                "table": "orders",
                **sink.pop("source", {}),
            }
        },
        "sinks": {
            "out": {
                "type": "mysql",
                "input": "src",
                "connection": db.connection(),
                "table": "target",
                "mode": mode,
                **sink,
            }
        },
    }


def target(db, key: str = "id INT PRIMARY KEY") -> None:
    db.execute(f"CREATE TABLE target ({key}, name VARCHAR(50) NOT NULL, total DECIMAL(10,2))")


def test_append_then_overwrite_and_ledger(mysql_db, mysql_run):
    orders(mysql_db, 10)
    target(mysql_db)
    report = mysql_run(copy_spec(mysql_db), run_id="r1")
    assert report.rows("out", "load") == 10
    assert mysql_db.rows("SELECT COUNT(*), SUM(total) FROM target")[0][0] == 10
    ledger = mysql_db.rows("SELECT pipeline, run_id, sink FROM etl_ledger")
    assert ledger == [("copy", "r1", "out")]
    assert mysql_db.tables() == {"orders", "target", "etl_ledger"}

    mysql_db.execute("DELETE FROM orders WHERE id > 3")
    mysql_run(copy_spec(mysql_db, mode="overwrite"))
    assert mysql_db.rows("SELECT id FROM target ORDER BY id") == [(1,), (2,), (3,)]


def test_rerun_with_same_run_id_publishes_nothing_twice(mysql_db, mysql_run):
    orders(mysql_db, 5)
    target(mysql_db, "id INT")
    mysql_run(copy_spec(mysql_db), run_id="same")
    mysql_run(copy_spec(mysql_db), run_id="same")
    assert mysql_db.rows("SELECT COUNT(*) FROM target") == [(5,)]
    assert mysql_db.tables() == {"orders", "target", "etl_ledger"}


def test_upsert_updates_and_inserts(mysql_db, mysql_run):
    orders(mysql_db, 6)
    target(mysql_db)
    mysql_db.execute("INSERT INTO target VALUES (1, 'old', 0), (100, 'keep', 1)")
    mysql_run(copy_spec(mysql_db, mode="upsert", key=["id"]))
    rows = dict(mysql_db.rows("SELECT id, name FROM target"))
    assert rows[1] == "n1" and rows[100] == "keep" and len(rows) == 7


def test_duplicate_keys_in_one_upsert_batch_fail_and_publish_nothing(mysql_db, mysql_run):
    mysql_db.execute(
        "CREATE TABLE orders (id INT, name VARCHAR(50) NOT NULL, total DECIMAL(10,2))",
        "INSERT INTO orders VALUES (1, 'a', 1), (1, 'b', 2), (2, 'c', 3)",
    )
    target(mysql_db)
    mysql_db.execute("INSERT INTO target VALUES (2, 'old', 0)")
    with pytest.raises(LoadError, match=r"Duplicate entry.*deduplicate"):
        mysql_run(copy_spec(mysql_db, mode="upsert", key=["id"]))
    assert mysql_db.rows("SELECT id, name FROM target") == [(2, "old")]
    assert mysql_db.tables() == {"orders", "target"}


def test_not_null_reject_while_staging_leaves_target_unchanged(mysql_db, mysql_run):
    mysql_db.execute(
        "CREATE TABLE orders (id INT, name VARCHAR(50), total DECIMAL(10,2))",
        "INSERT INTO orders VALUES (1, 'a', 1), (2, NULL, 2)",
    )
    target(mysql_db)
    with pytest.raises(LoadError, match=r"\(target\): the server refused .*name") as failure:
        mysql_run(copy_spec(mysql_db))
    message = str(failure.value)
    assert "etl_stg" not in message and "RuntimeError" not in message and "Error:" not in message
    assert mysql_db.rows("SELECT COUNT(*) FROM target") == [(0,)]
    assert mysql_db.tables() == {"orders", "target"}


def test_check_constraint_reject(mysql_db, mysql_run):
    orders(mysql_db, 3)
    mysql_db.execute(
        "CREATE TABLE target (id INT, name VARCHAR(50), total DECIMAL(10,2) CHECK (total < 2))"
    )
    with pytest.raises(LoadError, match="the server refused"):
        mysql_run(copy_spec(mysql_db))
    assert mysql_db.rows("SELECT COUNT(*) FROM target") == [(0,)]


def test_append_clashing_with_target_rows_rolls_back(mysql_db, mysql_run):
    orders(mysql_db, 3)
    target(mysql_db)
    mysql_db.execute("INSERT INTO target VALUES (3, 'x', 0)")
    with pytest.raises(RunFailed, match="refused the staged rows"):
        mysql_run(copy_spec(mysql_db))
    assert mysql_db.rows("SELECT id FROM target") == [(3,)]
    assert "etl_ledger" in mysql_db.tables()
    assert mysql_db.rows("SELECT COUNT(*) FROM etl_ledger") == [(0,)]
    assert not any(t.startswith("etl_stg_") for t in mysql_db.tables())


def test_error_mode_refuses_a_table_with_rows(mysql_db, mysql_run):
    orders(mysql_db, 2)
    target(mysql_db)
    mysql_run(copy_spec(mysql_db, mode="error"))
    with pytest.raises(LoadError, match="already holds rows"):
        mysql_run(copy_spec(mysql_db, mode="error"))
    assert mysql_db.rows("SELECT COUNT(*) FROM target") == [(2,)]


def test_create_table_and_add_columns(mysql_db, mysql_run):
    orders(mysql_db, 4)
    mysql_run(copy_spec(mysql_db, mode="upsert", key=["id"], create_table=True))
    assert mysql_db.rows("SELECT COUNT(*) FROM target") == [(4,)]
    keys = mysql_db.rows("SHOW INDEX FROM target WHERE Key_name = 'PRIMARY'")
    assert [k[4] for k in keys] == ["id"]

    mysql_db.execute("ALTER TABLE orders ADD COLUMN note VARCHAR(10) DEFAULT 'hi'")
    with pytest.raises(PermanentError, match=r"note are not in target.*schema_drift: add_columns"):
        mysql_run(copy_spec(mysql_db, mode="upsert", key=["id"]))
    mysql_run(copy_spec(mysql_db, mode="upsert", key=["id"], schema_drift="add_columns"))
    assert mysql_db.rows("SELECT DISTINCT note FROM target") == [("hi",)]


def test_missing_target_says_how_to_fix(mysql_db, mysql_run):
    orders(mysql_db, 1)
    with pytest.raises(
        PreflightFailed, match=r"sinks\.out: table target does not exist.*create_table"
    ):
        mysql_run(copy_spec(mysql_db))


def test_create_table_creates_the_database_it_needs(mysql_db, mysql_run):
    orders(mysql_db, 2)
    database = f"{mysql_db.name}_made"
    try:
        mysql_run(copy_spec(mysql_db, table=f"{database}.target", create_table=True))
        assert mysql_db.rows(f"SELECT COUNT(*) FROM `{database}`.target") == [(2,)]
    finally:
        mysql_db.execute(f"DROP DATABASE IF EXISTS `{database}`")


def test_upsert_key_must_be_unique_index(mysql_db, mysql_run):
    orders(mysql_db, 1)
    target(mysql_db)
    with pytest.raises(PermanentError, match=r"not the primary key or a unique index"):
        mysql_run(copy_spec(mysql_db, mode="upsert", key=["name"]))


def test_partitioned_read_to_parquet(mysql_db, mysql_run, tmp_path):
    orders(mysql_db, 100)
    mysql_db.execute("INSERT INTO orders VALUES (1000, 'far', 1)")
    mysql_db.execute("ALTER TABLE orders MODIFY id INT NULL, DROP PRIMARY KEY")
    mysql_db.execute("INSERT INTO orders VALUES (NULL, 'nokey', 1)")
    spec = {
        "name": "dump",
        "sources": {
            "src": {
                "type": "mysql",
                "connection": mysql_db.connection(),
                "table": "orders",
                "partition_column": "id",
                "partitions": 4,
                "columns": ["id", "name"],
                "where": "name <> 'n5'",
            }
        },
        "sinks": {"out": {"type": "files", "input": "src", "path": "out", "mode": "overwrite"}},
    }
    report = mysql_run(spec)
    assert report.rows("src") == 101
    table = pq.read_table(tmp_path / "out")
    assert table.column_names == ["id", "name"]
    ids = table.column("id").to_pylist()
    assert None in ids and 1000 in ids and 5 not in ids and len(set(ids)) == 101


def test_predicates_and_query(mysql_db, mysql_run, tmp_path):
    orders(mysql_db, 10)
    spec = {
        "name": "dump",
        "sources": {
            "src": {
                "type": "mysql",
                "connection": mysql_db.connection(),
                "query": "SELECT id, total * 2 AS doubled FROM orders",
                "predicates": ["id <= 3", "id > 8"],
            }
        },
        "sinks": {"out": {"type": "files", "input": "src", "path": "out", "mode": "overwrite"}},
    }
    mysql_run(spec)
    table = pq.read_table(tmp_path / "out").sort_by("id")
    assert table.column("id").to_pylist() == [1, 2, 3, 9, 10]
    assert str(table.schema.field("doubled").type) == "decimal128(11, 2)"


def test_partition_column_must_be_numeric_or_temporal(mysql_db, mysql_run):
    orders(mysql_db, 3)
    spec = copy_spec(
        mysql_db, source={"partition_column": "name", "partitions": 2}, create_table=True
    )
    with pytest.raises(PermanentError, match=r"partition_column 'name' is str"):
        mysql_run(spec)
