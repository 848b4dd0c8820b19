"""The distributions as a user gets them: every sdist and wheel passes `twine check` and
carries the license; the README's first sentence, `pip install etl-core etl-plugin-postgres`,
works in a fresh virtualenv, by name (from the wheels this checkout builds, `--find-links`),
followed by `etl plugins` and `etl run` of a pipeline against the machine's PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PROJECTS = [ROOT / "core", *sorted((ROOT / "plugins").glob("etl-plugin-*"))]

PG = {
    "host": os.environ.get("ETL_TEST_PG_HOST", "127.0.0.1"),
    "port": int(os.environ.get("ETL_TEST_PG_PORT", "5432")),
    "dbname": os.environ.get("ETL_TEST_PG_DATABASE", "test"),
    "user": os.environ.get("ETL_TEST_PG_USER", "postgres"),
}


def test_every_artifact_passes_twine_check_and_carries_the_license(wheelhouse):
    artifacts = sorted(wheelhouse.iterdir())
    assert len(artifacts) == 2 * len(PROJECTS)  # an sdist and a wheel each
    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *artifacts],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("PASSED") == len(artifacts), checked.stdout
    license_text = (ROOT / "LICENSE").read_text()
    for project in PROJECTS:  # a copy in each project: an sdist cannot hold a link out of it
        assert (project / "LICENSE").read_text() == license_text, project
    for wheel in wheelhouse.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            licenses = [n for n in archive.namelist() if n.endswith("licenses/LICENSE")]
            assert licenses and archive.read(licenses[0]).decode() == license_text, wheel


@pytest.fixture
def table():
    """A table of 10 rows in a fresh schema of the machine's PostgreSQL."""
    schema = f"etl_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(**PG, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".orders (id int PRIMARY KEY, amount numeric(8,2))')
        conn.execute(
            f'INSERT INTO "{schema}".orders SELECT i, i * 1.5 FROM generate_series(1, 10) i'
        )
    yield f"{schema}.orders"
    with psycopg.connect(**PG, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_etl_core_and_a_plugin_install_by_name_and_run(wheelhouse, fresh_venv, table, tmp_path):
    env = fresh_venv("by-name")
    env.pip_install("--find-links", wheelhouse, "etl-core", "etl-plugin-postgres")

    listed = env.run("etl", "plugins")
    assert "etl-plugin-postgres 0.1.0  (entry point 'postgres')" in listed
    assert "etl-plugin-mysql" not in listed  # only what was asked for

    pipeline = {
        "version": 1,
        "name": "by_name",
        "credentials": {"pg": {"provider": "env", "fields": {"user": "ETL_PG_USER"}}},
        "sources": {
            "orders": {
                "type": "postgres",
                "table": table,
                "credentials": "pg",
                "connection": {
                    "host": PG["host"],
                    "port": PG["port"],
                    "database": PG["dbname"],
                    "sslmode": "disable",
                },
            }
        },
        "sinks": {"out": {"type": "files", "input": "orders", "path": "out", "format": "jsonl"}},
    }
    (tmp_path / "pipeline.json").write_text(json.dumps(pipeline))
    env.env["ETL_PG_USER"] = PG["user"]
    report = env.run("etl", "run", tmp_path / "pipeline.json", "--master", "local[1]")
    assert "succeeded" in report
    rows = [
        json.loads(line)
        for part in (tmp_path / "out").glob("*.jsonl")
        for line in part.read_text().splitlines()
    ]
    assert sorted(row["id"] for row in rows) == list(range(1, 11))
