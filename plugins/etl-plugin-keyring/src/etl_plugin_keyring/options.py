"""Options of the ``keyring`` credential provider (an attrs class, structured strictly by the
core)."""

from __future__ import annotations

from typing import Any

import attrs

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
