"""Fixtures of the vault plugin's tests: the OpenBao server comes from ``etl_plugin_vault.testing``
(``openbao``, ``vault_env``), the PostgreSQL cluster that checks passwords from etl_core's
pytest plugin (``password_postgres``); here the database secrets engine pointed at it."""

from __future__ import annotations

import attrs
import pytest
from etl_plugin_vault.testing import database_role


@attrs.frozen
class DatabaseEngine:
    mount: str
    role: str  # issues logins valid 3 s, renewable up to 60 s


@pytest.fixture(scope="session")
def database_engine(openbao, password_postgres) -> DatabaseEngine:
    """OpenBao's database secrets engine, issuing short-lived PostgreSQL logins."""
    statement = (
        "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"
    )
    mount = database_role(
        openbao, password_postgres, "etl-reader", [statement], default_ttl="3s", max_ttl="60s"
    )
    return DatabaseEngine(mount, "etl-reader")
