"""Registers the ``keyring`` credential provider."""

from __future__ import annotations

from collections.abc import Callable

from etl_core import CredentialProvider, hookimpl


@hookimpl
def etl_register_credential_providers(register: Callable[[type[CredentialProvider]], None]) -> None:
    from etl_plugin_keyring.components import KeyringProvider

    register(KeyringProvider)
