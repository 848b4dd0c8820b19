"""Secrets in a pipeline file: plaintext under secret-looking keys is refused (DESIGN §6), and
the inline ``{secret: ...}`` references a component's options hold are found."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from etl_core.api import SecretRef
from etl_core.config.convert import allow_plaintext
from etl_core.errors import ConfigIssue

log = logging.getLogger("etl.config")

SECRET_KEYS = re.compile(
    r"^(password|passwd|secret|token|api_key|access_key|secret_access_key|session_token|"
    r"private_key|client_secret)$|_(password|secret|token|api_key)$",
    re.IGNORECASE,
)


def guard_secrets(raw: Any, path: str, issues: list[ConfigIssue]) -> Any:
    """Refuse plaintext (or ``${ENV}``-interpolated) values under secret-looking keys, or let
    them through with a warning when the user opted in."""
    if isinstance(raw, Mapping) and set(raw) == {"secret"}:  # an inline reference
        return raw
    if isinstance(raw, Mapping):
        guarded = {}
        for key, value in raw.items():
            at = f"{path}.{key}"
            if isinstance(value, str) and SECRET_KEYS.search(str(key)):
                if allow_plaintext.get():
                    log.warning("etl: %s holds a plaintext secret (--allow-plaintext-secrets)", at)
                else:
                    issues.append(
                        ConfigIssue(
                            at,
                            "a plaintext secret (or ${ENV} interpolation) is not allowed here",
                            f'reference it instead: `{key}: {{secret: "env:VARIABLE"}}`, or name a '
                            "`credentials:` entry; --allow-plaintext-secrets overrides this",
                        )
                    )
            guarded[key] = guard_secrets(value, at, issues)
        return guarded
    if isinstance(raw, list):
        return [guard_secrets(v, f"{path}[{i}]", issues) for i, v in enumerate(raw)]
    return raw


def secret_refs(value: Any, path: str) -> Iterator[tuple[str, SecretRef]]:
    if isinstance(value, SecretRef):
        yield path, value
    elif attrs.has(type(value)):
        for field in attrs.fields(type(value)):
            yield from secret_refs(getattr(value, field.name), f"{path}.{field.name}")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from secret_refs(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from secret_refs(item, f"{path}[{i}]")
