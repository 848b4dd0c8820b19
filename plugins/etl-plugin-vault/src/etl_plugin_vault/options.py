"""Options of the ``vault`` credential provider (attrs classes, structured strictly by the
core)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from etl_core import Secret, duration, one_of, positive

ENGINES = ("kv", "database")
DEFAULT_MOUNTS = {"kv": "secret", "database": "database"}


def _one_of_numbers(*choices: int) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """``etl_core.one_of`` for numbers (its did-you-mean compares strings)."""

    def check(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in choices:
            raise ValueError(
                f"`{attribute.name}` must be one of {', '.join(map(str, choices))}, got {value!r}"
            )

    return check


@attrs.frozen
class VaultAuth:
    """How to log in. Unset values come from the environment (see
    :func:`etl_plugin_vault.client.identity`)."""

    #: ``token``, ``approle``, or ``auto``: AppRole when ``role_id``/``secret_id`` are given
    #: here, else a token (``token``, VAULT_TOKEN), else AppRole from VAULT_ROLE_ID and
    #: VAULT_SECRET_ID, else the token file ``vault login`` writes (``~/.vault-token``)
    method: str = attrs.field(default="auto", validator=one_of("auto", "token", "approle"))
    #: a reference, e.g. ``{secret: "file:/run/secrets/vault-token"}``; default VAULT_TOKEN
    token: Secret | None = None
    #: the AppRole's role id (not secret by itself); default VAULT_ROLE_ID
    role_id: str | Secret | None = None
    #: a reference to the AppRole's secret id; default VAULT_SECRET_ID
    secret_id: Secret | None = None
    #: where the AppRole auth method is mounted
    mount: str = "approle"


def _fields_not_empty(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not value:
        raise ValueError(f"`{attribute.name}` names no field; remove it to get every field")


@attrs.frozen
class VaultOptions:
    #: ``kv``: the secret's path inside the mount (``etl/warehouse``); ``database``: the role
    path: str
    #: ``kv`` (static secrets) or ``database`` (dynamic database logins, leased)
    engine: str = attrs.field(default="kv", validator=one_of(*ENGINES))
    #: where the secrets engine is mounted; default ``secret`` (kv) or ``database``
    mount: str | None = None
    #: the KV engine's version
    kv_version: int = attrs.field(default=2, validator=_one_of_numbers(1, 2))
    #: pin a KV v2 secret to this version; default the latest
    version: int | None = attrs.field(default=None, validator=attrs.validators.optional(positive))
    #: credential field → Vault's key, e.g. ``{user: username, password: password}``; unset:
    #: every key under its own name, and ``username`` also as ``user``
    fields: dict[str, str] | None = attrs.field(default=None, validator=_fields_not_empty)
    #: the server, e.g. ``https://vault.example.com:8200``; default VAULT_ADDR
    address: str | None = None
    #: Vault Enterprise / OpenBao namespace; default VAULT_NAMESPACE
    namespace: str | None = None
    auth: VaultAuth = attrs.field(factory=VaultAuth)
    #: verify the server's TLS certificate (turn off only for local experiments)
    verify: bool = True
    #: a CA bundle (PEM) to verify the server with; default VAULT_CACERT, else the system's CAs
    ca_cert: str | None = None
    #: per request
    timeout: str | float = attrs.field(default="10s", validator=duration)
    #: tries per request when the server is unreachable, times out or answers 5xx/429
    attempts: int = attrs.field(default=4, validator=positive)
    #: wait before the second try; doubles for each further one (at most 30 s)
    backoff: str | float = attrs.field(default="0.5s", validator=duration)
    #: renew leases (dynamic credentials, an AppRole login) in the background while the run
    #: holds them
    renew: bool = True

    @version.validator
    def _version_needs_kv2(self, attribute: attrs.Attribute[Any], value: int | None) -> None:
        if value is not None and (self.engine != "kv" or self.kv_version != 2):
            raise ValueError("`version` pins a KV v2 secret: it needs engine kv and kv_version 2")

    @property
    def mount_point(self) -> str:
        return (self.mount or DEFAULT_MOUNTS[self.engine]).strip("/")

    @property
    def api_path(self) -> str:
        """The path of the HTTP API (and of policies) that this entry reads."""
        path = self.path.strip("/")
        if self.engine == "database":
            return f"{self.mount_point}/creds/{path}"
        if self.kv_version == 2:
            return f"{self.mount_point}/data/{path}"
        return f"{self.mount_point}/{path}"

    @property
    def reference(self) -> str:
        """The entry as an inline reference would write it (used to name it in messages)."""
        version = f"?version={self.version}" if self.version is not None else ""
        return f"vault:{self.api_path}{version}"
