"""Fixtures of the vault plugin's tests: the OpenBao server comes from ``etl_plugin_vault.testing``
(``openbao``, ``vault_env``), the PostgreSQL cluster that checks passwords from etl_core's
pytest plugin (``password_postgres``); here the database secrets engine pointed at it."""

from __future__ import annotations

import uuid

import attrs
import pytest


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
