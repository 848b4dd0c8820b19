"""Talking to Vault through hvac: the logged-in session of one server and identity, the login
identity from the options and the environment, and every call, retried on transient failures
and turned into a SecretError that names the reference and the server but no secret.

``hvac``, ``requests`` and ``tenacity`` are imported when a call is made, not when the plugin
loads.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from etl_core import Secret, SecretError
from etl_plugin_vault.options import VaultAuth


class Failure(SecretError):
    """A failed Vault call; ``reason`` classifies it (``forbidden``, ``missing``, ...)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@attrs.define(eq=False)
class Session:
    """A client logged in to one server as one identity."""

    client: Any
    address: str
    namespace: str | None
    owned_token: bool  # we logged in, so we renew and revoke the token
    attempts: int
    backoff: float
    timeout: float
    scrub: tuple[str, ...]  # credentials that must never reach a message

    @property
    def where(self) -> str:
        return f"Vault at {self.address}" + (
            f" (namespace {self.namespace})" if self.namespace else ""
        )


def call(
    session: Session,
    ref: str,
    target: tuple[str, str],
    request: Callable[[Any], Any],
    *,
    attempts: int | None = None,
) -> Any:
    """``request(client)``, retried on transient failures; failures become a
    :class:`SecretError` naming ``ref``. ``target`` is (API path, policy capability)."""
    import hvac.exceptions
    import requests
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

    tries = attempts or session.attempts
    retrying = Retrying(
        stop=stop_after_attempt(tries),
        wait=wait_exponential(multiplier=session.backoff, max=30),
        retry=retry_if_exception(_transient),
        reraise=True,
    )
    try:
        return retrying(request, session.client)
    except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
        raise _failure(exc, session, ref, target, tries) from None


def env(name: str) -> str | None:
    """``VAULT_<name>``, else OpenBao's ``BAO_<name>``."""
    return os.environ.get(f"VAULT_{name}") or os.environ.get(f"BAO_{name}") or None


def _reveal(value: str | Secret | None) -> str | None:
    if value is None:
        return None
    return value.reveal() if isinstance(value, Secret) else value


def identity(auth: VaultAuth, ref: str) -> tuple[str, str | None, str | None, str | None]:
    """(method, token, role_id, secret_id) from the options, then the environment."""
    token = _reveal(auth.token)
    role_id, secret_id = _reveal(auth.role_id), _reveal(auth.secret_id)
    method = auth.method
    if method == "auto":
        if role_id or secret_id:
            method = "approle"
        elif token or env("TOKEN"):
            method = "token"
        elif env("ROLE_ID") and env("SECRET_ID"):
            method = "approle"
        elif _token_file() is not None:
            method = "token"
        else:
            raise SecretError(
                f"{ref}: no Vault login found; export VAULT_TOKEN, or give AppRole credentials: "
                '`auth: {role_id: ..., secret_id: {secret: "env:VAULT_SECRET_ID"}}` '
                "(or VAULT_ROLE_ID and VAULT_SECRET_ID)"
            )
    if method == "token":
        token = token or env("TOKEN") or _token_file()
        if not token:
            raise SecretError(
                f"{ref}: auth method token but no token; export VAULT_TOKEN or set "
                '`auth: {token: {secret: "file:/run/secrets/vault-token"}}`'
            )
        return method, token, None, None
    role_id, secret_id = role_id or env("ROLE_ID"), secret_id or env("SECRET_ID")
    if not (role_id and secret_id):
        missing = [n for n, v in (("role_id", role_id), ("secret_id", secret_id)) if not v]
        raise SecretError(
            f"{ref}: AppRole login needs {' and '.join(missing)}; set `auth.{missing[0]}` "
            f"or export VAULT_{missing[0].upper()}"
        )
    return method, None, role_id, secret_id


def _token_file() -> str | None:
    path = Path("~/.vault-token").expanduser()
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def revoke_lease(client: Any, lease_id: str) -> Any:
    return client.sys.revoke_lease(lease_id=lease_id)


def _sealed(exc: BaseException) -> bool:
    return any("sealed" in str(error).lower() for error in getattr(exc, "errors", None) or ())


def _transient(exc: BaseException) -> bool:
    """Worth another try: unreachable, timed out, 5xx (but a sealed server stays sealed),
    throttled. A TLS failure is a configuration problem, not a transient one."""
    import hvac.exceptions as vault
    import requests

    if isinstance(exc, requests.exceptions.SSLError):
        return False
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return True
    if isinstance(exc, vault.VaultDown):
        return not _sealed(exc)
    return isinstance(exc, vault.InternalServerError | vault.BadGateway | vault.RateLimitExceeded)


def _failure(
    exc: BaseException, session: Session, ref: str, target: tuple[str, str], tries: int
) -> Failure:
    import hvac.exceptions as vault
    import requests

    path, capability = target
    where = session.where
    after = f" after {tries} attempts" if tries > 1 else ""
    if isinstance(exc, requests.exceptions.SSLError):
        return Failure(
            f"{ref}: the TLS certificate of {where} could not be verified; set `ca_cert:` "
            "(or VAULT_CACERT) to the PEM file of the CA that signed it",
            "tls",
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return Failure(f"{ref}: {where} did not answer within {session.timeout:g}s{after}", "down")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return Failure(f"{ref}: cannot connect to {where}{after}; is it running?", "down")
    if isinstance(exc, vault.VaultDown) and _sealed(exc):
        return Failure(
            f"{ref}: {where} is sealed; unseal it (`vault operator unseal` or "
            "`bao operator unseal`) and run again",
            "sealed",
        )
    if isinstance(exc, vault.Forbidden):
        return Failure(
            f"{ref}: permission denied by {where}: the token is invalid or expired, or its "
            f"policies do not grant {capability!r} on {path!r}; the policy needs e.g. "
            f'path "{path}" {{ capabilities = ["{capability}"] }}',
            "forbidden",
        )
    if isinstance(exc, vault.InvalidPath):
        return Failure(
            f"{ref}: {where} has no secret at {path!r} (or that version was deleted); check "
            "`mount`, `path`, `kv_version` and `version`",
            "missing",
        )
    if isinstance(exc, vault.InvalidRequest) and path.endswith("/login"):
        return Failure(
            f"{ref}: AppRole login at {path!r} of {where} was refused: the role_id or "
            "secret_id is wrong, or the secret_id expired or was used up",
            "login",
        )
    detail = "; ".join(str(e).strip() for e in (getattr(exc, "errors", None) or ()) if e)
    for value in session.scrub:
        detail = detail.replace(value, "***")
    kind = type(exc).__name__
    return Failure(
        f"{ref}: {where} failed{after} on {path!r} ({kind}{': ' + detail if detail else ''})",
        "error",
    )
