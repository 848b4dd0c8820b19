"""The vault provider against the credential-provider conformance suite, on the session's
OpenBao server: the entry logs in with an AppRole, so the run holds a login token of its own
that it must revoke at its end."""

from __future__ import annotations

import uuid

import pytest

from etl_core.testing import CredentialProviderConformance

pytestmark = [pytest.mark.slow, pytest.mark.spark]


class TestVaultProvider(CredentialProviderConformance):
    provider = "vault"

    @pytest.fixture
    def entry(self, vault_env, monkeypatch):
        self.root = vault_env.client()
        path = f"etl/conformance-{uuid.uuid4().hex[:8]}"
        self.root.secrets.kv.v2.create_or_update_secret(path, self.values(), mount_point="secret")
        if "approle/" not in self.root.sys.list_auth_methods():
            self.root.sys.enable_auth_method("approle")
        self.role = f"conformance-{uuid.uuid4().hex[:8]}"
        self.root.sys.create_or_update_policy(
            self.role, f'path "secret/data/{path}" {{ capabilities = ["read"] }}'
        )
        self.root.auth.approle.create_or_update_approle(
            self.role, token_policies=[self.role], token_ttl="60s"
        )
        role_id = self.root.auth.approle.read_role_id(self.role)["data"]["role_id"]
        secret_id = self.root.auth.approle.generate_secret_id(self.role)["data"]["secret_id"]
        monkeypatch.setenv("ETL_CONFORMANCE_SECRET_ID", secret_id)
        auth = {"role_id": role_id, "secret_id": {"secret": "env:ETL_CONFORMANCE_SECRET_ID"}}
        return {"path": path, "auth": auth}

    @pytest.fixture
    def reference(self, entry):
        return f"secret/data/{entry['path']}#password"  # read with the root token of vault_env

    @pytest.fixture
    def missing_entry(self, vault_env):
        path = f"etl/missing-{uuid.uuid4().hex[:8]}"
        return {"path": path}, f"has no secret at 'secret/data/{path}'"

    def leases(self, entry):
        """The live login tokens of the entry's AppRole."""
        import hvac.exceptions

        count = 0
        for accessor in self.root.auth.token.list_accessors()["data"]["keys"]:
            try:
                token = self.root.auth.token.lookup_accessor(accessor)["data"]
            except hvac.exceptions.VaultError:  # revoked or expired since it was listed
                continue
            count += (token.get("meta") or {}).get("role_name") == self.role
        return count
