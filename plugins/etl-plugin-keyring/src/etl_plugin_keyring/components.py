"""The ``keyring`` credential provider: one keyring entry (service + username) per reference."""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from etl_core import CredentialProvider, Secret, SecretError
from etl_plugin_keyring.client import get_password
from etl_plugin_keyring.options import KeyringOptions


class KeyringProvider(CredentialProvider):
    """Read a password from the keyring of the machine running the pipeline (macOS Keychain,
    Windows Credential Locker, Secret Service, or any ``keyring`` backend).

    A credentials entry gives ``user`` (the username) and ``password`` by default; an inline
    reference ``{secret: "keyring:SERVICE/USERNAME"}`` gives the password.
    """

    name = "keyring"
    Options = KeyringOptions

    def resolve(self, options: KeyringOptions) -> Mapping[str, Secret]:
        where = f"keyring:{options.service}/{options.username}"
        password = get_password(options.service, options.username, where)
        if password is None:
            raise SecretError(
                f"{where}: the keyring has no password for service {options.service!r} and "
                f"username {options.username!r}; store it with: "
                f"keyring set {shlex.quote(options.service)} {shlex.quote(options.username)}"
            )
        parts = {"username": options.username, "password": password}
        return {field: Secret(parts[part]) for field, part in options.fields.items()}

    @classmethod
    def options_for_reference(cls, path: str) -> KeyringOptions:
        """``SERVICE/USERNAME``: the service may contain ``/``, the username may not."""
        service, _, username = path.rpartition("/")
        if not service or not username:
            raise SecretError(
                f"keyring reference 'keyring:{path}' must look like 'keyring:SERVICE/USERNAME', "
                "e.g. 'keyring:etl-warehouse/etl'"
            )
        return KeyringOptions(service=service, username=username, fields={"password": "password"})
