"""Dynamic PostgreSQL logins from OpenBao's database secrets engine, checked by a PostgreSQL
cluster that really verifies passwords: renewed while held, revoked when the run ends."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest
from etl_plugin_vault import plugin as vault_plugin
from etl_plugin_vault.components import VaultProvider
from etl_plugin_vault.options import VaultAuth, VaultOptions

from etl_core import Secret, SecretError

pytestmark = pytest.mark.slow


def can_log_in(postgres, user: str, password: str) -> bool:
    try:
        with postgres.connect(user, password) as conn:
            return conn.execute("SELECT current_user").fetchone() == (user,)
    except psycopg.OperationalError as exc:
        assert "password authentication failed" in str(exc), exc
        return False


def logs_in_until(postgres, user: str, password: str, timeout_s: float = 5.0) -> bool:
    """Whether the login still works after ``timeout_s`` (a token's revocation revokes its
    leases asynchronously, within milliseconds)."""
    deadline = time.monotonic() + timeout_s
    while can_log_in(postgres, user, password):
        if time.monotonic() > deadline:
            return True
        time.sleep(0.1)
    return False


def approle(openbao, policy: str) -> VaultAuth:
    root = openbao.client()
    if "approle/" not in root.sys.list_auth_methods():
        root.sys.enable_auth_method("approle")
    name = f"db-{uuid.uuid4().hex[:8]}"
    root.sys.create_or_update_policy(name, policy)
    root.auth.approle.create_or_update_approle(
        name, token_policies=[name], token_ttl="3s", token_max_ttl="60s"
    )
    return VaultAuth(
        role_id=root.auth.approle.read_role_id(name)["data"]["role_id"],
        secret_id=Secret(root.auth.approle.generate_secret_id(name)["data"]["secret_id"]),
    )


def test_lease_and_approle_token_are_renewed_while_held_then_revoked(
    openbao, database_engine, password_postgres
):
    """Logins and the AppRole token both live 3 s; after 7 s both still work because the
    provider renewed them; close() revokes the login (through logging out: this policy may
    not revoke leases itself)."""
    creds = f"{database_engine.mount}/creds/{database_engine.role}"
    path = f"etl/{uuid.uuid4().hex[:8]}"
    openbao.client().secrets.kv.v2.create_or_update_secret(path, {"k": "v"}, mount_point="secret")
    auth = approle(
        openbao,
        f'path "{creds}" {{ capabilities = ["read"] }}\n'
        f'path "secret/data/{path}" {{ capabilities = ["read"] }}',
    )
    common = {"address": openbao.address, "ca_cert": openbao.ca_cert, "auth": auth}
    provider = VaultProvider()
    try:
        fields = provider.resolve(
            VaultOptions(
                engine="database",
                mount=database_engine.mount,
                path=database_engine.role,
                **common,
            )
        )
        user, password = fields["user"].reveal(), fields["password"].reveal()
        assert user.startswith("v-") and fields["username"].reveal() == user
        assert can_log_in(password_postgres, user, password)
        time.sleep(7)
        assert can_log_in(password_postgres, user, password), "the lease was not renewed"
        assert provider.resolve(VaultOptions(path=path, **common))["k"].reveal() == "v", (
            "the AppRole token was not renewed"
        )
    finally:
        provider.close()
    assert not logs_in_until(password_postgres, user, password)


def test_two_references_to_one_role_share_one_login(vault_env, database_engine):
    provider = VaultProvider()
    reference = f"{database_engine.mount}/creds/{database_engine.role}"
    first = provider.resolve(VaultProvider.options_for_reference(reference))
    second = provider.resolve(VaultProvider.options_for_reference(reference))
    assert first["user"] == second["user"] and first["password"] == second["password"]
    provider.close()


def test_a_lease_the_token_may_not_revoke_is_reported_with_the_policy_to_grant(
    vault_env, database_engine, password_postgres
):
    creds = f"{database_engine.mount}/creds/{database_engine.role}"
    root = vault_env.client()
    policy = f"norevoke-{uuid.uuid4().hex[:6]}"
    root.sys.create_or_update_policy(policy, f'path "{creds}" {{ capabilities = ["read"] }}')
    token = root.auth.token.create(policies=[policy], ttl="60s")["auth"]["client_token"]
    provider = VaultProvider()
    options = VaultOptions(
        engine="database",
        mount=database_engine.mount,
        path=database_engine.role,
        auth=VaultAuth(token=Secret(token)),
    )
    fields = provider.resolve(options)
    with pytest.raises(SecretError) as caught:
        provider.close()
    message = str(caught.value)
    assert f"vault:{creds}: permission denied" in message
    assert 'path "sys/leases/revoke" { capabilities = ["update"] }' in message
    assert "the lease expires by itself in" in message
    assert fields["password"].reveal() not in message and token not in message


# --- a real pipeline --------------------------------------------------------------------------


@pytest.mark.spark
def test_a_pipeline_logs_in_with_dynamic_credentials_and_the_run_revokes_them(
    vault_env, database_engine, password_postgres, etl_run, etl_probe, tmp_path
):
    import pyarrow.parquet as pq

    logins: list[tuple[str, str]] = []

    def log_in(ctx, options):
        """Log in with the resolved credentials while the run holds them, read who it is."""
        user, password = options.user.reveal(), options.password.reveal()
        with password_postgres.connect(user, password) as conn:
            (who,) = conn.execute("SELECT current_user").fetchone()
        logins.append((user, password))
        return ctx.spark.createDataFrame([(who,)], "who STRING")

    etl_probe.on_extract = log_in
    metrics = etl_run(
        {
            "name": "dynamic_db",
            "credentials": {
                "reporting": {
                    "provider": "vault",
                    "engine": "database",
                    "mount": database_engine.mount,
                    "path": database_engine.role,
                }
            },
            "sources": {"whoami": {"type": etl_probe.name, "credentials": "reporting"}},
            "sinks": {
                "out": {"type": "files", "input": "whoami", "path": "out", "format": "parquet"}
            },
        },
        host=etl_probe.host(vault_plugin),
    )
    assert metrics.status == "succeeded"
    ((user, password),) = logins
    assert pq.read_table(tmp_path / "out").column("who").to_pylist() == [user]
    assert user.startswith("v-")
    assert not can_log_in(password_postgres, user, password), "the run left its lease alive"
