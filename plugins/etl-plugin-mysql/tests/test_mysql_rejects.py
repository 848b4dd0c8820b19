"""``on_reject: dead_letter`` (DESIGN §4 step 5): rows MariaDB refuses are isolated by
bisecting the merge in savepoints inside the publish transaction and dead-lettered with the
server's message; the rest load. ``on_reject: fail`` leaves the target as it was."""

from __future__ import annotations

import json

import pytest

from etl_core import EtlError

pytestmark = pytest.mark.spark

ROWS = 10_000
BAD = (17, 5_000, 9_999)  # ids the target refuses


@pytest.fixture
def source(tmp_path):
    lines = ["id,amount,note"]
    lines += [f"{i},{-1 if i in BAD else i % 97 + 1}.50,n{i}" for i in range(1, ROWS + 1)]
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    schema = "id INT, amount DECIMAL(8,2), note STRING"
    return {"type": "files", "format": "csv", "path": "in.csv", "read_schema": schema}


def spec(db, source, **sink):
    return {
        "name": "myrejects",
        "sources": {"src": source},
        "sinks": {
            "out": {
                "type": "mysql",
                "input": sink.pop("input", "src"),
                "connection": db.connection(),
                "table": "t",
                "mode": "append",
                **sink,
            }
        },
    }


def dead_letters(tmp_path, metrics):
    folder = tmp_path / "dlq" / "myrejects" / metrics.run_key / "load" / "out"
    return [
        json.loads(line)
        for path in sorted(folder.rglob("*.json*"))
        if "_etl" not in path.parts
        for line in path.read_text().splitlines()
        if line
    ]


def staging(db):
    return {t for t in db.tables() if t.startswith("etl_stg_")}


def test_check_constraint_rejects_are_dead_lettered(mysql_db, mysql_run, source, tmp_path):
    mysql_db.execute(
        "CREATE TABLE t (id INT PRIMARY KEY, amount DECIMAL(8,2) NOT NULL, note VARCHAR(10), "
        "CONSTRAINT amount_positive CHECK (amount > 0))"
    )
    pipeline = spec(mysql_db, source, on_reject="dead_letter")
    pipeline["errors"] = {"dead_letter": {"type": "files", "path": "dlq/"}}
    metrics = mysql_run(pipeline).metrics

    assert mysql_db.rows("SELECT COUNT(*) FROM t") == [(ROWS - len(BAD),)]
    assert mysql_db.rows(f"SELECT COUNT(*) FROM t WHERE id IN {BAD}") == [(0,)]
    records = dead_letters(tmp_path, metrics)
    by_id = {json.loads(r["row"])["id"]: r for r in records}
    assert sorted(by_id) == list(BAD)
    for record in records:
        assert (record["pipeline"], record["stage"], record["component"], record["dataset"]) == (
            "myrejects",
            "load",
            "mysql",
            "out",
        )
        (error,) = record["errors"]
        assert error["rule"] == "amount_positive"
        assert error["message"].startswith("CONSTRAINT `amount_positive` failed for")
        assert json.loads(record["row"])["amount"] == -1.5
    loads = metrics.stage("out", "load")
    assert (loads.rows_in, loads.rows_out, loads.rows_rejected, loads.dead_lettered) == (
        ROWS,
        ROWS - len(BAD),
        len(BAD),
        len(BAD),
    )
    assert metrics.dead_letters == len(BAD)
    assert metrics.published[-2:] == ["out", "dead_letter.load.out"]
    assert mysql_db.rows("SELECT run_id, sink FROM etl_ledger") == [(metrics.run_id, "out")]
    assert staging(mysql_db) == set()


def test_unique_key_and_not_null_rejects(mysql_db, mysql_run, source, tmp_path):
    mysql_db.execute(
        "CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, amount DECIMAL(8,2), "
        "note VARCHAR(10) NOT NULL)",
        "INSERT INTO t VALUES (17, 1, 'old'), (5000, 2, 'old')",
    )
    pipeline = spec(mysql_db, source, input="fixed", on_reject="dead_letter")
    pipeline["transforms"] = {
        "fixed": {
            "type": "sql",
            "inputs": ["src"],
            # one NULL the target's NOT NULL refuses, two keys already in the target
            "query": "SELECT id, abs(amount) AS amount, CASE WHEN id = 9999 THEN NULL "
            "ELSE note END AS note FROM src",
        }
    }
    pipeline["errors"] = {"dead_letter": {"type": "files", "path": "dlq/"}}
    metrics = mysql_run(pipeline).metrics

    assert mysql_db.rows("SELECT COUNT(*) FROM t WHERE note <> 'old'") == [(ROWS - len(BAD),)]
    assert mysql_db.rows("SELECT note FROM t WHERE id IN (17, 5000)") == [("old",), ("old",)]
    by_id = {json.loads(r["row"])["id"]: r for r in dead_letters(tmp_path, metrics)}
    assert sorted(by_id) == list(BAD)
    assert by_id[17]["errors"][0]["rule"] == "PRIMARY"
    assert by_id[17]["errors"][0]["message"] == "Duplicate entry '17' for key 'PRIMARY'"
    assert by_id[9999]["errors"][0]["message"] == "Column 'note' cannot be null"
    assert by_id[9999]["errors"][0]["rule"] == "mysql error 1048"
    loads = metrics.stage("out", "load")
    assert (loads.rows_out, loads.dead_lettered) == (ROWS - len(BAD), len(BAD))
    assert staging(mysql_db) == set()


def test_on_reject_fail_leaves_the_target_unchanged(mysql_db, mysql_run, source):
    mysql_db.execute(
        "CREATE TABLE t (id INT PRIMARY KEY, amount DECIMAL(8,2), note VARCHAR(10))",
        "INSERT INTO t VALUES (17, 1, 'old')",
    )
    with pytest.raises(EtlError, match=r"Duplicate entry '17'"):
        mysql_run(spec(mysql_db, source))
    assert mysql_db.rows("SELECT id, note FROM t") == [(17, "old")]
    assert staging(mysql_db) == set()
    assert "etl_ledger" not in mysql_db.tables() or mysql_db.rows(
        "SELECT COUNT(*) FROM etl_ledger"
    ) == [(0,)]
