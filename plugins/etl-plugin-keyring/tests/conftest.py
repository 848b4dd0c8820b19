"""Fixtures of the keyring plugin's tests: a real keyring backend, keyrings.alt's plaintext file
backend in a temporary data folder (a headless machine has no Secret Service)."""

from __future__ import annotations

import pytest


@pytest.fixture
def file_keyring(tmp_path, monkeypatch):
    """The process's keyring, switched to a plaintext file under ``tmp_path`` the way a user
    would: PYTHON_KEYRING_BACKEND and XDG_DATA_HOME."""
    import keyring.core

    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    keyring.core.init_backend()
    assert type(keyring.get_keyring()).__name__ == "PlaintextKeyring"
    return keyring
