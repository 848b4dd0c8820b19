"""Incremental reads, credentials and errors, stale staging (the killed run is in the suite)."""

from __future__ import annotations

import json

import pytest
from etl_plugin_mysql.components import MySQLLoader
from etl_plugin_mysql.options import MySQLSinkOptions

from etl_core import EtlError, LiveRuns, PermanentError, PreflightFailed
from etl_core.relational import staging_table

pytestmark = pytest.mark.spark


def events(db) -> None:
    db.execute(
        "CREATE TABLE events (id INT PRIMARY KEY, updated_at TIMESTAMP(6) NULL, v INT)",
        "INSERT INTO events VALUES (1, '2024-01-01 00:00:00', 1), (2, '2024-01-02 00:00:00', 2)",
    )


def incremental_spec(db, column: str = "updated_at") -> dict:
    return {
        "name": "inc",
        "sources": {
            "src": {
                "type": "mysql",
                "connection": db.connection(),
                "table": "events",
                "incremental": {"column": column},
            }
        },
        "sinks": {
            "out": {
                "type": "mysql",
                "input": "src",
                "connection": db.connection(),
                "table": "copy",
                "mode": "upsert",
                "key": ["id"],
                "create_table": True,
            }
        },
    }


@pytest.mark.parametrize("column", ["updated_at", "id"])
def test_incremental_reads_only_new_rows(mysql_db, mysql_run, tmp_path, column):
    events(mysql_db)
    assert mysql_run(incremental_spec(mysql_db, column)).rows("src") == 2
    assert mysql_run(incremental_spec(mysql_db, column)).rows("src") == 0
    mysql_db.execute("INSERT INTO events VALUES (3, '2024-01-03 00:00:00', 3)")
    assert mysql_run(incremental_spec(mysql_db, column)).rows("src") == 1
    assert mysql_db.rows("SELECT COUNT(*) FROM copy") == [(3,)]
    state = json.loads((tmp_path / ".etl" / "state" / "inc.json").read_text())
    assert state["src"] == ("2024-01-03T00:00:00" if column == "updated_at" else 3)


def test_failed_run_does_not_move_the_bookmark(mysql_db, mysql_run, tmp_path):
    events(mysql_db)
    mysql_db.execute(
        "CREATE TABLE copy (id INT PRIMARY KEY, updated_at TIMESTAMP(6) NULL, v INT, "
        "CONSTRAINT small CHECK (v < 2))"
    )
    with pytest.raises(Exception, match="the server refused"):
        mysql_run(incremental_spec(mysql_db))
    assert not (tmp_path / ".etl" / "state" / "inc.json").exists()
    mysql_db.execute("ALTER TABLE copy DROP CONSTRAINT small")
    assert mysql_run(incremental_spec(mysql_db)).rows("src") == 2


def test_incremental_needs_a_column(mysql_db, mysql_run):
    events(mysql_db)
    spec = incremental_spec(mysql_db)
    spec["sources"]["src"]["incremental"] = {"by": "modified_time"}
    with pytest.raises(Exception, match=r"incremental: \{column: updated_at\}"):
        mysql_run(spec)


def test_wrong_password_is_permanent_and_secret_free(mysql_db, mysql_run, monkeypatch):
    user = f"etl_u_{mysql_db.name[-6:]}"
    mysql_db.execute(
        f"CREATE USER '{user}'@'%' IDENTIFIED BY 'right-pw-9x'",
        f"CREATE USER '{user}'@'localhost' IDENTIFIED BY 'right-pw-9x'",
        f"GRANT ALL ON `{mysql_db.name}`.* TO '{user}'@'%'",
        f"GRANT ALL ON `{mysql_db.name}`.* TO '{user}'@'localhost'",
    )
    try:
        events(mysql_db)
        spec = incremental_spec(mysql_db)
        spec["credentials"] = {
            "db": {"provider": "env", "fields": {"user": "T_USER", "password": "T_PW"}}
        }
        for block in (spec["sources"]["src"], spec["sinks"]["out"]):
            block["credentials"] = "db"
        monkeypatch.setenv("T_USER", user)
        monkeypatch.setenv("T_PW", "wrong-pw-7z")
        # The runner redacts the user name too (it is a credentials field), and so re-raises
        # the PermanentError as a RunFailed with the redacted message.
        with pytest.raises(EtlError) as failure:
            mysql_run(spec)
        message = str(failure.value)
        assert message.startswith("sources.src: connection (mysql 127.0.0.1:3306/")  # preflight
        assert "Access denied" in message
        assert "check the user and password" in message
        assert "wrong-pw-7z" not in message and "right-pw-9x" not in message
        monkeypatch.setenv("T_PW", "right-pw-9x")
        assert mysql_run(spec).rows("src") == 2
    finally:
        mysql_db.execute(f"DROP USER '{user}'@'%'", f"DROP USER '{user}'@'localhost'")


def test_unreachable_server_is_transient(mysql_db, mysql_run):
    events(mysql_db)
    spec = incremental_spec(mysql_db)
    spec["sources"]["src"]["connection"] = {
        **mysql_db.connection(),
        "port": 1,
        "options": {"connect_timeout": 2},
    }
    with pytest.raises(
        PreflightFailed,
        match=r"sources\.src: connection \(mysql 127.0.0.1:1/.*check `connection.host`",
    ):
        mysql_run(spec)


def test_missing_table_and_bad_query_are_permanent(mysql_db, mysql_run):
    events(mysql_db)
    spec = incremental_spec(mysql_db)
    spec["sources"]["src"]["table"] = "nope"
    with pytest.raises(
        PreflightFailed, match=r"sources\.src: table nope does not exist.*check `table`"
    ):
        mysql_run(spec)
    del spec["sources"]["src"]["table"], spec["sources"]["src"]["incremental"]
    spec["sources"]["src"]["query"] = "SELEC 1"
    with pytest.raises(PermanentError, match="syntax"):
        mysql_run(spec)


def test_clean_stale_drops_only_dead_runs_staging(mysql_db, etl_spark):
    mysql_db.execute("CREATE TABLE t (id INT)")
    dead, live = staging_table("dead00000000", 0), staging_table("live00000000", 0)
    mysql_db.execute(
        f"CREATE TABLE {dead} LIKE t",
        f"CREATE TABLE {dead}_tasks (task INT)",
        f"CREATE TABLE {live} LIKE t",
        "CREATE TABLE etl_stg_other (x INT)",
    )
    from etl_core import Context

    ctx = Context(
        spark=etl_spark,
        pipeline="p",
        run_id="clean",
        run_key="",
        base_dir=".",
        dataset="out",
        component="mysql",
        sink_index=0,
    )
    options = MySQLSinkOptions(connection=_conn(mysql_db), table="t")
    runs = LiveRuns(live=frozenset({"live00000000"}), dead=frozenset({"dead00000000"}))
    dropped = MySQLLoader().clean_stale(ctx, options, runs)
    assert sorted(d.rsplit("/", 1)[1] for d in dropped) == [dead, f"{dead}_tasks"]
    assert mysql_db.tables() == {"t", live, "etl_stg_other"}


def _conn(db):
    from etl_plugin_mysql.options import Connection

    return Connection(**db.connection())
