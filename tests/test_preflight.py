"""Preflight as a new user meets it: `etl run` and `etl validate --connect` as processes, with
an unset credential variable, a PostgreSQL port nobody listens on and a missing input file —
all three reported in one run, before Spark starts (no JVM is launched)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

PIPELINE = """\
name: first_hour
credentials:
  warehouse:
    provider: env
    fields: {{user: PREFLIGHT_PG_USER, password: PREFLIGHT_PG_PASSWORD}}
sources:
  flights:
    type: files
    format: csv
    path: data/flights.csv
  airports:
    type: postgres
    credentials: warehouse
    connection: {{host: 127.0.0.1, port: {port}, database: test}}
    table: public.{table}
sinks:
  out:
    type: postgres
    input: flights
    connection: {{host: 127.0.0.1, port: {port}, database: test}}
    table: preflight_{table}.out
"""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def etl(*args: str | Path, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    script = shutil.which("etl") or str(Path(sys.executable).with_name("etl"))
    return subprocess.run(
        [script, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd, env=env
    )


@pytest.fixture
def airports(tmp_path: Path):
    table = f"airports_{os.getpid()}_{tmp_path.name[-6:]}".replace("-", "_").lower()
    with psycopg.connect("host=127.0.0.1 dbname=test user=postgres", autocommit=True) as conn:
        conn.execute(f"CREATE TABLE public.{table} (code text)")
        yield table
        conn.execute(f"DROP TABLE IF EXISTS public.{table}")
        conn.execute(f"DROP SCHEMA IF EXISTS preflight_{table} CASCADE")


def test_every_problem_is_reported_at_once_before_spark_starts(tmp_path, airports):
    (tmp_path / "pipeline.yaml").write_text(PIPELINE.format(port=closed_port(), table=airports))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_PG_")}
    env["SPARK_HOME"] = str(tmp_path / "no-spark-here")  # a JVM start would fail loudly

    for command in (["run", "pipeline.yaml"], ["validate", "--connect", "pipeline.yaml"]):
        done = etl(*command, env=env, cwd=tmp_path)
        assert done.returncode == 1, done.stderr
        lines = done.stderr.splitlines()
        assert "error: 3 problems found by the preflight checks:" in lines, done.stderr
        problems = [line for line in lines if line.startswith("  - ")]
        assert problems[0].startswith(
            "  - sources.flights: no file matches path 'data/flights.csv'"
        )
        assert problems[1] == (
            "  - sources.airports: credentials.warehouse: environment variable(s) "
            "PREFLIGHT_PG_USER, PREFLIGHT_PG_PASSWORD not set; export them before the run"
        )
        assert problems[2].startswith("  - sinks.out: postgres: 127.0.0.1:")
        assert "Connection refused" in problems[2] and "check `connection.host`" in problems[2]
        assert len(problems) == 3, done.stderr
        assert "starting Spark" not in done.stderr and "Traceback" not in done.stderr
        assert lines[0] == "error: 3 problems found by the preflight checks:", done.stderr

    # fixed: the file is there, the variables are set, the port is the server's; the sink's
    # schema does not exist, which `create_table: true` handles (it creates the schema too)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "flights.csv").write_text("id,origin\n1,SFO\n")
    env.update(PREFLIGHT_PG_USER="postgres", PREFLIGHT_PG_PASSWORD="")
    fixed = ["--set", "sources.airports.connection.port=5432"]
    fixed += ["--set", "sinks.out.connection.port=5432"]
    done = etl("validate", "--connect", "pipeline.yaml", *fixed, env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: sinks.out: table preflight_{airports}.out does not ")
    assert "set `create_table: true`" in done.stderr
    fixed += ["--set", "sinks.out.create_table=true"]
    done = etl("validate", "--connect", "pipeline.yaml", *fixed, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "credentials, connections and paths checked in" in done.stdout
