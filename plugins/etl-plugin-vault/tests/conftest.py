"""Fixtures of the vault plugin's tests: the OpenBao server comes from ``etl_plugin_vault.testing``
(``openbao``, ``vault_env``); here a PostgreSQL cluster that checks passwords, and the
database secrets engine pointed at it."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from etl_plugin_vault.testing import free_port


@attrs.frozen
class PasswordPostgres:
    """A throwaway PostgreSQL cluster with scram-sha-256 password auth on 127.0.0.1."""

    port: int
    superuser: str
    password: str

    def connect(self, user: str, password: str, dbname: str = "postgres"):
        import psycopg

        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            dbname=dbname,
            user=user,
            password=password,
            connect_timeout=5,
        )


def _pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are missing")
    return Path(initdb).parent


@pytest.fixture(scope="session")
def password_postgres() -> Iterator[PasswordPostgres]:
    """initdb + pg_ctl as the ``postgres`` user (PostgreSQL refuses to run as root), in a
    folder under /tmp that user can reach; stopped and removed at the end of the session."""
    bindir = _pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="etl-pg-"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(root, "postgres")
    password = secrets.token_urlsafe(18)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if as_postgres:
        shutil.chown(pwfile, "postgres")
    data = root / "data"
    port = free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*as_postgres, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(args[:2])} failed:\n{done.stdout}\n{done.stderr}")

    run(
        str(bindir / "initdb"),
        "-D",
        str(data),
        "-U",
        "postgres",
        "-A",
        "scram-sha-256",
        f"--pwfile={pwfile}",
        "--no-sync",
    )
    pwfile.unlink()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root}"
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-w",
        "-l",
        str(root / "log"),
        "-o",
        options,
        "start",
    )
    try:
        yield PasswordPostgres(port, "postgres", password)
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop")
        shutil.rmtree(root, ignore_errors=True)


@attrs.frozen
class DatabaseEngine:
    mount: str
    role: str  # issues logins valid 3 s, renewable up to 60 s


@pytest.fixture(scope="session")
def database_engine(openbao, password_postgres) -> DatabaseEngine:
    """OpenBao's database secrets engine, issuing short-lived PostgreSQL logins."""
    root = openbao.client()
    mount = f"database-{uuid.uuid4().hex[:6]}"
    root.sys.enable_secrets_engine("database", path=mount)
    root.secrets.database.configure(
        "pg",
        "postgresql-database-plugin",
        mount_point=mount,
        connection_url=(
            f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{password_postgres.port}"
            "/postgres"
        ),
        username=password_postgres.superuser,
        password=password_postgres.password,
        allowed_roles=["etl-reader"],
        verify_connection=True,
    )
    root.secrets.database.create_role(
        "etl-reader",
        "pg",
        mount_point=mount,
        creation_statements=[
            "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
            "VALID UNTIL '{{expiration}}';"
        ],
        default_ttl="3s",
        max_ttl="60s",
    )
    return DatabaseEngine(mount, "etl-reader")
