"""The ``keyring`` credential provider: one keyring entry (service + username) per reference.

``keyring`` is imported when a secret is resolved, not when the plugin loads, so ``etl plugins``
and ``etl validate`` stay fast.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

import attrs

from etl_core import CredentialProvider, Secret, SecretError

#: what a keyring entry holds, under the names a ``fields`` mapping may use
ENTRY_PARTS = ("username", "password")


def _entry_parts(_: Any, attribute: attrs.Attribute[Any], value: dict[str, str]) -> None:
    wrong = sorted({part for part in value.values() if part not in ENTRY_PARTS})
    if wrong:
        raise ValueError(
            f"`{attribute.name}` maps credential fields to {' or '.join(ENTRY_PARTS)}, "
            f"got {', '.join(map(repr, wrong))}; e.g. {{user: username, password: password}}"
        )
    if not value:
        raise ValueError(f"`{attribute.name}` names no field")


@attrs.frozen
class KeyringOptions:
    #: the keyring service name, e.g. ``etl-warehouse``
    service: str
    #: the username the password is stored under
    username: str
    #: credential field → ``username`` or ``password``; e.g. ``{access_key_id: username,
    #: secret_access_key: password}`` for an S3 key pair
    fields: dict[str, str] = attrs.field(
        factory=lambda: {"user": "username", "password": "password"}, validator=_entry_parts
    )


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
        password = _get_password(options.service, options.username, where)
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


def _get_password(service: str, username: str, where: str) -> str | None:
    import keyring
    from keyring.errors import KeyringError, NoKeyringError

    try:
        return keyring.get_password(service, username)
    except NoKeyringError:
        raise SecretError(
            f"{where}: no keyring backend is available on this machine; on a server without "
            "a desktop keyring use the `file` or `vault` provider, or choose a backend with "
            "PYTHON_KEYRING_BACKEND"
        ) from None
    except KeyringError as exc:
        backend = type(keyring.get_keyring()).__name__
        raise SecretError(
            f"{where}: the keyring backend {backend} failed ({type(exc).__name__}); "
            "is the keyring unlocked?"
        ) from None
    except EOFError:  # an encrypted file keyring asking for its master password, headless
        backend = type(keyring.get_keyring()).__name__
        raise SecretError(
            f"{where}: the keyring backend {backend} asks for a password on the terminal, "
            "which this run does not have; choose another backend with PYTHON_KEYRING_BACKEND"
        ) from None
