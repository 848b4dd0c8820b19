"""The keyring provider against the credential-provider conformance suite, on a real keyring
backend (``file_keyring``)."""

from __future__ import annotations

import uuid

import pytest

from etl_core.testing import CredentialProviderConformance

pytestmark = pytest.mark.spark


class TestKeyringProvider(CredentialProviderConformance):
    provider = "keyring"

    @pytest.fixture
    def entry(self, file_keyring):
        service = f"etl-conformance-{uuid.uuid4().hex[:8]}"
        values = self.values()
        file_keyring.set_password(service, values["user"], values["password"])
        return {"service": service, "username": values["user"]}

    @pytest.fixture
    def reference(self, entry):
        return f"{entry['service']}/{entry['username']}"

    @pytest.fixture
    def missing_entry(self, file_keyring):
        service = f"etl-conformance-missing-{uuid.uuid4().hex[:8]}"
        return {"service": service, "username": "nobody"}, f"keyring:{service}/nobody"
