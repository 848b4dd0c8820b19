"""The vault provider against a real OpenBao dev server (TLS, one per test session): KV v1/v2,
versions, namespaces, AppRole and policies, and every failure a user can meet — each message
naming the reference and never a value."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator

import attrs
import pytest
import requests
from etl_plugin_vault import plugin as vault_plugin
from etl_plugin_vault.components import VaultProvider
from etl_plugin_vault.options import VaultAuth, VaultOptions
from etl_plugin_vault.testing import free_port

from etl_core import ConfigError, Secret, SecretError, config
from etl_core.plugins import get_plugin_host
from etl_core.testing import ProbeOptions

PLANTED = "vlt-Pl4nted-5e7d21"

pytestmark = pytest.mark.slow


def unique(prefix: str = "etl") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def provider() -> Iterator[VaultProvider]:
    provider = VaultProvider()
    yield provider
    provider.close()


def revealed(fields) -> dict[str, str]:
    return {name: secret.reveal() for name, secret in fields.items()}


# --- KV -------------------------------------------------------------------------------------


def test_kv_v2_gives_the_latest_version_or_the_pinned_one(vault_env, provider):
    path = f"etl/{unique()}"
    root = vault_env.client()
    root.secrets.kv.v2.create_or_update_secret(path, {"password": "first"}, mount_point="secret")
    root.secrets.kv.v2.create_or_update_secret(path, {"password": PLANTED}, mount_point="secret")
    assert revealed(provider.resolve(VaultOptions(path=path))) == {"password": PLANTED}
    assert revealed(provider.resolve(VaultOptions(path=path, version=1))) == {"password": "first"}


def test_kv_v1_and_vaults_username_fills_user(vault_env, provider):
    mount = unique("kv1")
    root = vault_env.client()
    root.sys.enable_secrets_engine("kv", path=mount, options={"version": "1"})
    root.secrets.kv.v1.create_or_update_secret(
        "etl/warehouse", {"username": "etl", "password": PLANTED}, mount_point=mount
    )
    fields = provider.resolve(VaultOptions(path="etl/warehouse", mount=mount, kv_version=1))
    assert revealed(fields) == {"username": "etl", "user": "etl", "password": PLANTED}
    assert all(isinstance(value, Secret) for value in fields.values())


def test_fields_pick_and_rename_keys(vault_env, provider):
    path = f"etl/{unique()}"
    vault_env.client().secrets.kv.v2.create_or_update_secret(
        path, {"key": "AKIAEXAMPLE", "secret": PLANTED, "other": "x"}, mount_point="secret"
    )
    options = VaultOptions(
        path=path, fields={"access_key_id": "key", "secret_access_key": "secret"}
    )
    assert revealed(provider.resolve(options)) == {
        "access_key_id": "AKIAEXAMPLE",
        "secret_access_key": PLANTED,
    }
    with pytest.raises(SecretError) as caught:
        provider.resolve(VaultOptions(path=path, fields={"password": "pasword"}))
    assert f"vault:secret/data/{path} has no field(s) 'pasword'" in str(caught.value)
    assert "(it has: key, other, secret)" in str(caught.value)
    assert PLANTED not in str(caught.value)


def test_a_namespace_scopes_the_mounts(vault_env, provider):
    namespace = unique("team")
    vault_env.client().sys.create_namespace(namespace)
    scoped = vault_env.client(namespace=namespace)
    scoped.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    scoped.secrets.kv.v2.create_or_update_secret(
        "etl/db", {"password": PLANTED}, mount_point="secret"
    )
    fields = provider.resolve(VaultOptions(path="etl/db", namespace=namespace))
    assert revealed(fields) == {"password": PLANTED}
    with pytest.raises(SecretError, match="has no secret at 'secret/data/etl/db'"):
        provider.resolve(VaultOptions(path="etl/db"))  # the root namespace has no such secret


def test_each_secret_is_read_once_per_run(vault_env, provider):
    path = f"etl/{unique()}"
    root = vault_env.client()
    root.secrets.kv.v2.create_or_update_secret(path, {"password": "before"}, mount_point="secret")
    assert revealed(provider.resolve(VaultOptions(path=path))) == {"password": "before"}
    root.secrets.kv.v2.create_or_update_secret(path, {"password": "after"}, mount_point="secret")
    assert revealed(provider.resolve(VaultOptions(path=path))) == {"password": "before"}


# --- inline references ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("secret/data/etl/warehouse", ("kv", "secret", "etl/warehouse", 2, None)),
        ("secret/data/etl/warehouse?version=3", ("kv", "secret", "etl/warehouse", 2, 3)),
        ("team/kv/data/etl/warehouse", ("kv", "team/kv", "etl/warehouse", 2, None)),
        ("kv/etl/warehouse", ("kv", "kv", "etl/warehouse", 1, None)),
        ("database/creds/etl-reader", ("database", "database", "etl-reader", 2, None)),
    ],
)
def test_inline_references_are_api_paths(path, expected):
    options = VaultProvider.options_for_reference(path)
    assert (
        options.engine,
        options.mount,
        options.path,
        options.kv_version,
        options.version,
    ) == expected
    assert options.reference == f"vault:{path}"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("warehouse", "must be an API path"),
        ("secret//x", "must be an API path"),
        ("kv/etl/warehouse?version=2", "pins KV v2 secrets only"),
        ("secret/data/x?ver=2", "the only query it takes is ?version=N"),
    ],
)
def test_malformed_inline_references_say_what_they_should_look_like(path, message):
    with pytest.raises(SecretError, match=re.escape(message)):
        VaultProvider.options_for_reference(path)


def test_an_inline_reference_reads_with_the_environments_login(vault_env, provider):
    path = f"etl/{unique()}"
    vault_env.client().secrets.kv.v2.create_or_update_secret(
        path, {"password": PLANTED}, mount_point="secret"
    )
    options = VaultProvider.options_for_reference(f"secret/data/{path}")
    assert revealed(provider.resolve(options)) == {"password": PLANTED}


# --- AppRole and policies -------------------------------------------------------------------


@attrs.frozen
class AppRole:
    role_id: str
    secret_id: str


def make_approle(openbao, policy: str, **role: str) -> AppRole:
    root = openbao.client()
    if "approle/" not in root.sys.list_auth_methods():
        root.sys.enable_auth_method("approle")
    name = unique("role")
    root.sys.create_or_update_policy(name, policy)
    root.auth.approle.create_or_update_approle(name, token_policies=[name], **role)
    return AppRole(
        root.auth.approle.read_role_id(name)["data"]["role_id"],
        root.auth.approle.generate_secret_id(name)["data"]["secret_id"],
    )


def test_approle_reads_what_its_policy_allows_and_is_denied_the_rest(
    openbao, provider, monkeypatch
):
    for name in [n for n in os.environ if n.startswith(("VAULT_", "BAO_"))]:
        monkeypatch.delenv(name)
    allowed, denied = f"etl/{unique()}", f"other/{unique()}"
    root = openbao.client()
    for path in (allowed, denied):
        root.secrets.kv.v2.create_or_update_secret(
            path, {"password": PLANTED}, mount_point="secret"
        )
    role = make_approle(openbao, f'path "secret/data/{allowed}" {{ capabilities = ["read"] }}')
    auth = VaultAuth(role_id=role.role_id, secret_id=Secret(role.secret_id))
    common = {"address": openbao.address, "ca_cert": openbao.ca_cert, "auth": auth}
    assert revealed(provider.resolve(VaultOptions(path=allowed, **common))) == {"password": PLANTED}
    with pytest.raises(SecretError) as caught:
        provider.resolve(VaultOptions(path=denied, **common))
    message = str(caught.value)
    assert f"vault:secret/data/{denied}: permission denied by Vault at {openbao.address}" in message
    assert f'path "secret/data/{denied}" {{ capabilities = ["read"] }}' in message
    assert PLANTED not in message and role.secret_id not in message


def test_approle_login_from_the_environment_and_a_wrong_secret_id(openbao, provider, monkeypatch):
    path = f"etl/{unique()}"
    openbao.client().secrets.kv.v2.create_or_update_secret(
        path, {"password": PLANTED}, mount_point="secret"
    )
    role = make_approle(openbao, f'path "secret/data/{path}" {{ capabilities = ["read"] }}')
    for name in [n for n in os.environ if n.startswith(("VAULT_", "BAO_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("VAULT_ADDR", openbao.address)
    monkeypatch.setenv("VAULT_CACERT", openbao.ca_cert)
    monkeypatch.setenv("VAULT_ROLE_ID", role.role_id)
    monkeypatch.setenv("VAULT_SECRET_ID", role.secret_id)
    options = VaultProvider.options_for_reference(f"secret/data/{path}")
    assert revealed(provider.resolve(options)) == {"password": PLANTED}

    wrong = VaultOptions(path=path, auth=VaultAuth(secret_id=Secret("not-" + role.secret_id)))
    with pytest.raises(SecretError) as caught:
        provider.resolve(wrong)
    assert "AppRole login at 'auth/approle/login'" in str(caught.value)
    assert "role_id or secret_id is wrong" in str(caught.value)
    assert role.secret_id not in str(caught.value)


# --- failures -------------------------------------------------------------------------------


def test_a_missing_path_or_deleted_version_names_the_reference(vault_env, provider):
    with pytest.raises(SecretError) as caught:
        provider.resolve(VaultOptions(path="etl/does-not-exist"))
    assert "vault:secret/data/etl/does-not-exist: Vault at" in str(caught.value)
    assert "has no secret at 'secret/data/etl/does-not-exist'" in str(caught.value)
    path = f"etl/{unique()}"
    root = vault_env.client()
    root.secrets.kv.v2.create_or_update_secret(path, {"password": PLANTED}, mount_point="secret")
    root.secrets.kv.v2.delete_latest_version_of_secret(path, mount_point="secret")
    with pytest.raises(SecretError, match=r"\?version=1: .*or that version was deleted"):
        provider.resolve(VaultOptions(path=path, version=1))


def test_an_invalid_token_is_permission_denied(vault_env, provider, monkeypatch):
    monkeypatch.setenv("VAULT_TOKEN", "hvs.not-a-token")
    with pytest.raises(SecretError, match="token is invalid or expired"):
        provider.resolve(VaultOptions(path="etl/anything"))


def test_a_sealed_server_is_a_clear_error_not_a_retry(vault_env, provider):
    path = f"etl/{unique()}"
    root = vault_env.client()
    root.secrets.kv.v2.create_or_update_secret(path, {"password": PLANTED}, mount_point="secret")
    root.sys.seal()
    try:
        with pytest.raises(SecretError) as caught:
            provider.resolve(VaultOptions(path=path, attempts=5, backoff="2s"))
    finally:
        root.sys.submit_unseal_key(vault_env.unseal_key)
    assert f"Vault at {vault_env.address} is sealed; unseal it" in str(caught.value)
    assert revealed(provider.resolve(VaultOptions(path=path))) == {"password": PLANTED}


def test_tls_without_the_servers_ca_says_to_set_ca_cert(vault_env, provider, monkeypatch):
    monkeypatch.delenv("VAULT_CACERT")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "")  # the system's CAs, which do not know OpenBao's
    with pytest.raises(SecretError) as caught:
        provider.resolve(VaultOptions(path="etl/x", attempts=3, backoff="5s"))
    assert "the TLS certificate of Vault at" in str(caught.value)
    assert "set `ca_cert:` (or VAULT_CACERT)" in str(caught.value)


def test_an_unreachable_server_is_retried_then_named(vault_env, provider, monkeypatch):
    closed = free_port()
    monkeypatch.setenv("VAULT_ADDR", f"http://127.0.0.1:{closed}")
    with pytest.raises(SecretError) as caught:
        provider.resolve(VaultOptions(path="etl/x", attempts=3, backoff="10ms"))
    assert f"cannot connect to Vault at http://127.0.0.1:{closed} after 3 attempts" in str(
        caught.value
    )


class FlakyProxy(http.server.ThreadingHTTPServer):
    """Plain HTTP in front of OpenBao: answers 503 to the first ``failures`` requests, then
    forwards each request over TLS."""

    def __init__(self, upstream: str, ca_cert: str, failures: int):
        self.upstream, self.ca_cert, self.failures, self.seen = upstream, ca_cert, failures, 0
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: FlakyProxy

    def do_GET(self) -> None:
        self.server.seen += 1
        if self.server.seen <= self.server.failures:
            body = json.dumps({"errors": ["upstream briefly unavailable"]}).encode()
            status = 503
        else:
            headers = {k: v for k, v in self.headers.items() if k.lower().startswith("x-vault")}
            answer = requests.get(
                self.server.upstream + self.path, headers=headers, verify=self.server.ca_cert
            )
            body, status = answer.content, answer.status_code
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def flaky_proxy(openbao) -> Iterator[FlakyProxy]:
    proxy = FlakyProxy(openbao.address, openbao.ca_cert, failures=2)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


def test_5xx_answers_are_retried_until_the_server_answers(vault_env, provider, flaky_proxy):
    path = f"etl/{unique()}"
    vault_env.client().secrets.kv.v2.create_or_update_secret(
        path, {"password": PLANTED}, mount_point="secret"
    )
    options = VaultOptions(path=path, address=flaky_proxy.address, attempts=3, backoff="10ms")
    assert revealed(provider.resolve(options)) == {"password": PLANTED}
    assert flaky_proxy.seen == 3


def test_5xx_answers_past_the_attempts_fail_with_the_servers_words(vault_env, flaky_proxy):
    provider = VaultProvider()
    options = VaultOptions(path="etl/x", address=flaky_proxy.address, attempts=2, backoff="10ms")
    with pytest.raises(SecretError) as caught:
        provider.resolve(options)
    assert "failed after 2 attempts on 'secret/data/etl/x'" in str(caught.value)
    assert "(VaultDown: upstream briefly unavailable)" in str(caught.value)
    provider.close()


def test_missing_server_or_login_settings_say_what_to_set(monkeypatch, tmp_path):
    for name in [n for n in os.environ if n.startswith(("VAULT_", "BAO_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.vault-token either
    provider = VaultProvider()
    with pytest.raises(SecretError, match="export VAULT_ADDR="):
        provider.resolve(VaultOptions(path="etl/x"))
    monkeypatch.setenv("VAULT_ADDR", "https://127.0.0.1:1")
    with pytest.raises(SecretError, match="no Vault login found; export VAULT_TOKEN"):
        provider.resolve(VaultOptions(path="etl/x"))
    with pytest.raises(SecretError, match="AppRole login needs secret_id"):
        provider.resolve(VaultOptions(path="etl/x", auth=VaultAuth(method="approle", role_id="r")))
    with pytest.raises(SecretError, match=r"the CA file .*missing"):
        provider.resolve(VaultOptions(path="etl/x", ca_cert=str(tmp_path / "nope.pem")))


# --- configuration --------------------------------------------------------------------------


def pipeline_with(entry: dict) -> dict:
    return {
        "name": "v",
        "credentials": {"wh": {"provider": "vault", **entry}},
        "sources": {"a": {"type": "files", "format": "csv", "path": "a.csv"}},
        "sinks": {"o": {"type": "files", "input": "a", "path": "o"}},
    }


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"path": "x", "kv_version": 3}, "credentials.wh: `kv_version` must be one of 1, 2"),
        ({"path": "x", "kv_version": 1, "version": 2}, "`version` pins a KV v2 secret"),
        ({"path": "x", "engine": "dynamo"}, "credentials.wh.engine: 'dynamo' is not one of kv"),
        ({"path": "x", "auth": {"token": "hvs.plain"}}, "credentials.wh.auth.token: secrets are"),
        ({"path": "x", "tiemout": "5s"}, "credentials.wh.tiemout: unknown key"),
    ],
)
def test_options_are_checked_before_the_run(entry, message):
    host = get_plugin_host(autoload=False, extra=[("vault", vault_plugin)])
    with pytest.raises(ConfigError) as caught:
        config.check(data=pipeline_with(entry), host=host)
    assert message in str(caught.value)
    assert "hvs.plain" not in str(caught.value)


def test_the_installed_plugin_registers_vault_without_importing_hvac():
    code = (
        "import sys\n"
        "from etl_core.plugins import get_plugin_host\n"
        "host = get_plugin_host(strict=True, only=['vault'])\n"
        "assert 'vault' in host.components('credential_provider')\n"
        "heavy = {'hvac', 'requests', 'tenacity'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- a pipeline -----------------------------------------------------------------------------


def run_probe(etl_run, etl_probe, credentials: dict, source: dict) -> list[ProbeOptions]:
    etl_probe.seen.clear()
    metrics = etl_run(
        {
            "name": "vault_probe",
            "credentials": credentials,
            "sources": {"a": {"type": etl_probe.name, **source}},
            "sinks": {"o": {"type": "files", "input": "a", "path": "o", "mode": "overwrite"}},
        },
        host=etl_probe.host(vault_plugin),
    )
    assert metrics.status == "succeeded"
    return list(etl_probe.seen)


@pytest.mark.spark
def test_a_pipeline_fills_options_from_an_entry_and_an_inline_reference(
    vault_env, etl_run, etl_probe
):
    path = f"etl/{unique()}"
    vault_env.client().secrets.kv.v2.create_or_update_secret(
        path, {"username": "etl", "password": PLANTED}, mount_point="secret"
    )
    (entry,) = run_probe(
        etl_run, etl_probe, {"wh": {"provider": "vault", "path": path}}, {"credentials": "wh"}
    )
    assert (entry.user.reveal(), entry.password.reveal()) == ("etl", PLANTED)
    (inline,) = run_probe(
        etl_run, etl_probe, {}, {"password": {"secret": f"vault:secret/data/{path}#password"}}
    )
    assert (inline.user, inline.password.reveal()) == (None, PLANTED)


@pytest.mark.spark
def test_the_vault_token_itself_can_come_from_a_reference(
    vault_env, etl_run, etl_probe, monkeypatch
):
    path = f"etl/{unique()}"
    vault_env.client().secrets.kv.v2.create_or_update_secret(
        path, {"password": PLANTED}, mount_point="secret"
    )
    monkeypatch.setenv("ETL_TEST_VAULT_TOKEN", vault_env.root_token)
    monkeypatch.setenv("VAULT_TOKEN", "hvs.not-this-one")
    entry = {
        "provider": "vault",
        "path": path,
        "auth": {"token": {"secret": "env:ETL_TEST_VAULT_TOKEN"}},
    }
    (seen,) = run_probe(etl_run, etl_probe, {"wh": entry}, {"credentials": "wh"})
    assert seen.password.reveal() == PLANTED
