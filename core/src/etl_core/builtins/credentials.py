"""The built-in ``env`` credential provider: fields read from environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping

import attrs

from etl_core.api import CredentialProvider, Secret, SecretError


@attrs.frozen
class EnvOptions:
    #: credential field → environment variable, e.g. ``{password: PG_PASSWORD}``
    fields: dict[str, str]


class EnvProvider(CredentialProvider):
    """Read each field of a credentials entry from an environment variable."""

    name = "env"
    Options = EnvOptions

    def resolve(self, options: EnvOptions) -> Mapping[str, Secret]:
        missing = [var for var in options.fields.values() if var not in os.environ]
        if missing:
            raise SecretError(
                f"environment variable(s) {', '.join(missing)} not set; export them before the run"
            )
        return {field: Secret(os.environ[var]) for field, var in options.fields.items()}

    @classmethod
    def options_for_reference(cls, path: str) -> EnvOptions:
        return EnvOptions(fields={"value": path})
