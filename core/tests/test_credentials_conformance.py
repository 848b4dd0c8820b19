"""The built-in credential providers ``env`` and ``file`` against the conformance suite."""

from __future__ import annotations

import uuid

import pytest
import yaml

from etl_core.testing import CredentialProviderConformance

pytestmark = pytest.mark.spark


class TestEnvProvider(CredentialProviderConformance):
    provider = "env"

    @pytest.fixture
    def entry(self, monkeypatch):
        prefix = f"ETL_CONFORMANCE_{uuid.uuid4().hex[:8].upper()}"
        fields = {}
        for field, value in self.values().items():
            monkeypatch.setenv(f"{prefix}_{field.upper()}", value)
            fields[field] = f"{prefix}_{field.upper()}"
        return {"fields": fields}

    @pytest.fixture
    def reference(self, entry):
        return entry["fields"]["password"]

    @pytest.fixture
    def missing_entry(self):
        variable = f"ETL_CONFORMANCE_MISSING_{uuid.uuid4().hex[:8].upper()}"
        return {"fields": {"password": variable}}, variable


class TestFileProvider(CredentialProviderConformance):
    provider = "file"

    @pytest.fixture
    def entry(self, tmp_path):
        path = tmp_path / "secrets" / "conformance.yaml"
        path.parent.mkdir(mode=0o700)
        path.write_text(yaml.safe_dump(self.values()))
        path.chmod(0o600)
        return {"path": str(path)}

    @pytest.fixture
    def reference(self, entry):
        return f"{entry['path']}#password"

    @pytest.fixture
    def missing_entry(self, tmp_path):
        path = tmp_path / "secrets" / "missing.yaml"
        return {"path": str(path)}, str(path)
