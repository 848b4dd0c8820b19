"""The ``vault`` credential provider: HashiCorp Vault or OpenBao, through hvac.

One provider instance serves one run. It logs in once per server and identity, reads each
secret once (two references to one dynamic database role share one lease), renews leases in
a background thread while the run holds them, and revokes them in :meth:`VaultProvider.close`.

``hvac``, ``requests`` and ``tenacity`` are imported when a secret is resolved, not when the
plugin loads, so ``etl plugins`` and ``etl validate`` stay fast. No message, log line or
exception raised here holds a secret value: they name the reference and the server.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from etl_core import (
    CredentialProvider,
    Secret,
    SecretError,
    duration,
    one_of,
    parse_duration,
    positive,
)

log = logging.getLogger("etl.vault")

ENGINES = ("kv", "database")
DEFAULT_MOUNTS = {"kv": "secret", "database": "database"}
#: renew a lease when this fraction of its duration has passed
RENEW_AT = 2 / 3


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
    """How to log in. Unset values come from the environment (see :func:`_identity`)."""

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


class _Failure(SecretError):
    """A failed Vault call; ``reason`` classifies it (``forbidden``, ``missing``, ...)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@attrs.define(eq=False)
class _Session:
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


@attrs.define(eq=False)
class _Lease:
    """Something to renew while the run lasts: a secret's lease or our own login token."""

    session: _Session
    what: str  # the reference, or "the AppRole login token"
    lease_id: str | None  # None: the session's token
    ttl: float
    renew_at: float
    expires_at: float
    capped: bool = False


class VaultProvider(CredentialProvider):
    """Read secrets from HashiCorp Vault or OpenBao: KV v1/v2 (optionally a pinned version) and
    dynamic database credentials, with token or AppRole login, namespaces and TLS."""

    name = "vault"
    Options = VaultOptions

    def __init__(self) -> None:
        self._lock = threading.Condition(threading.RLock())
        self._sessions: dict[tuple[Any, ...], _Session] = {}
        self._cache: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._leases: list[_Lease] = []
        self._renewer: threading.Thread | None = None
        self._closed = False

    # --- resolving ---------------------------------------------------------------------------

    def resolve(self, options: VaultOptions) -> Mapping[str, Secret]:
        ref = options.reference
        with self._lock:
            if self._closed:
                raise SecretError(f"{ref}: the vault provider was already closed for this run")
            session = self._session(options, ref)
            key = (id(session), options.api_path, options.version)
            if key not in self._cache:
                self._cache[key] = self._read(session, options, ref)
            data = self._cache[key]
        return _fields(data, options, ref)

    def _read(self, session: _Session, options: VaultOptions, ref: str) -> dict[str, Any]:
        path, mount = options.path.strip("/"), options.mount_point
        read = (options.api_path, "read")
        if options.engine == "database":
            response = self._call(
                session,
                ref,
                read,
                lambda c: c.secrets.database.generate_credentials(name=path, mount_point=mount),
            )
            self._hold(session, ref, response, options.renew)
            return dict(response["data"])
        if options.kv_version == 1:
            response = self._call(
                session,
                ref,
                read,
                lambda c: c.secrets.kv.v1.read_secret(path=path, mount_point=mount),
            )
            return dict(response["data"])
        response = self._call(
            session,
            ref,
            read,
            lambda c: c.secrets.kv.v2.read_secret_version(
                path=path,
                version=options.version,
                mount_point=mount,
                raise_on_deleted_version=True,
            ),
        )
        return dict(response["data"]["data"])

    @classmethod
    def options_for_reference(cls, path: str) -> VaultOptions:
        """An inline reference is the secret's API path, as a Vault policy writes it:

        - ``secret/data/etl/warehouse`` — KV v2 (the ``data`` segment ends the mount path),
          ``secret/data/etl/warehouse?version=3`` pins a version;
        - ``database/creds/etl-reader`` — dynamic database credentials of a role;
        - ``kv/etl/warehouse`` — KV v1 (the first segment is the mount).

        Server, namespace and login come from the environment (VAULT_ADDR, VAULT_NAMESPACE,
        VAULT_CACERT, VAULT_TOKEN or VAULT_ROLE_ID + VAULT_SECRET_ID).
        """
        text, _, query = path.partition("?")
        version = None
        if query:
            key, _, value = query.partition("=")
            if key != "version" or not value.isdigit() or int(value) < 1:
                raise SecretError(
                    f"vault reference 'vault:{path}': the only query it takes is ?version=N"
                )
            version = int(value)
        segments = text.strip("/").split("/")
        if len(segments) < 2 or not all(segments):
            raise SecretError(
                f"vault reference 'vault:{path}' must be an API path such as "
                "'vault:secret/data/etl/warehouse#password' (KV v2), "
                "'vault:kv/etl/warehouse#password' (KV v1) or "
                "'vault:database/creds/etl-reader#password'"
            )
        mount, rest, engine, kv_version = segments[0], "/".join(segments[1:]), "kv", 1
        for index in range(1, len(segments) - 1):
            if segments[index] in ("data", "creds"):
                mount, rest = "/".join(segments[:index]), "/".join(segments[index + 1 :])
                engine, kv_version = ("kv", 2) if segments[index] == "data" else ("database", 2)
                break
        if version is not None and not (engine == "kv" and kv_version == 2):
            raise SecretError(
                f"vault reference 'vault:{path}': ?version= pins KV v2 secrets only "
                "(a path with a `data` segment)"
            )
        return VaultOptions(
            path=rest, engine=engine, mount=mount, kv_version=kv_version, version=version
        )

    # --- logging in --------------------------------------------------------------------------

    def _session(self, options: VaultOptions, ref: str) -> _Session:
        import hvac

        address = (options.address or _env("ADDR") or "").rstrip("/")
        if not address:
            raise SecretError(
                f"{ref}: no Vault server named; set `address:` in the credentials entry or "
                "export VAULT_ADDR=https://vault.example.com:8200"
            )
        namespace = options.namespace or _env("NAMESPACE") or None
        verify: bool | str = False
        if options.verify:
            ca_cert = options.ca_cert or _env("CACERT")
            verify = str(Path(ca_cert).expanduser()) if ca_cert else True
            if isinstance(verify, str) and not Path(verify).is_file():
                raise SecretError(
                    f"{ref}: the CA file {verify} (ca_cert / VAULT_CACERT) is missing"
                )
        method, token, role_id, secret_id = _identity(options.auth, ref)
        key = (address, namespace, verify, method, options.auth.mount, token, role_id, secret_id)
        if key in self._sessions:
            return self._sessions[key]
        timeout = parse_duration(options.timeout)
        session = _Session(
            client=hvac.Client(
                url=address, token=token or "", namespace=namespace, verify=verify, timeout=timeout
            ),
            address=address,
            namespace=namespace,
            owned_token=method == "approle",
            attempts=options.attempts,
            backoff=parse_duration(options.backoff),
            timeout=timeout,
            scrub=tuple(v for v in (token, secret_id) if v),
        )
        if method == "approle":
            mount = options.auth.mount.strip("/")
            response = self._call(
                session,
                ref,
                (f"auth/{mount}/login", "update"),
                lambda c: c.auth.approle.login(role_id, secret_id, mount_point=mount),
            )
            auth = response["auth"]
            session.scrub += (auth["client_token"],)
            if options.renew and auth.get("renewable") and auth.get("lease_duration"):
                self._track(session, "the AppRole login token", None, auth["lease_duration"])
        self._sessions[key] = session
        return session

    # --- calling Vault -----------------------------------------------------------------------

    def _call(
        self,
        session: _Session,
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

    # --- leases ------------------------------------------------------------------------------

    def _hold(self, session: _Session, ref: str, response: Mapping[str, Any], renew: bool) -> None:
        lease_id, ttl = response.get("lease_id"), response.get("lease_duration") or 0
        if not lease_id:
            return
        lease = self._track(session, ref, lease_id, ttl)
        if not (renew and response.get("renewable")):
            lease.renew_at = float("inf")  # revoked at the end, never renewed

    def _track(self, session: _Session, what: str, lease_id: str | None, ttl: float) -> _Lease:
        now = time.monotonic()
        lease = _Lease(session, what, lease_id, ttl, now + ttl * RENEW_AT, now + ttl)
        self._leases.append(lease)
        if self._renewer is None:
            self._renewer = threading.Thread(
                target=self._renew_loop, name="etl-vault-renewer", daemon=True
            )
            self._renewer.start()
        self._lock.notify_all()
        return lease

    def _renew_loop(self) -> None:
        with self._lock:
            while not self._closed:
                now = time.monotonic()
                due = [lease for lease in self._leases if lease.renew_at <= now]
                if not due:
                    upcoming = min((lease.renew_at for lease in self._leases), default=now + 60)
                    self._lock.wait(timeout=min(upcoming - now, 60))
                    continue
                for lease in due:
                    self._renew(lease)

    def _renew(self, lease: _Lease) -> None:
        now = time.monotonic()
        increment = max(int(lease.ttl), 1)
        try:
            if lease.lease_id is None:
                response = self._call(
                    lease.session,
                    lease.what,
                    ("auth/token/renew-self", "update"),
                    lambda c: c.auth.token.renew_self(increment=increment),
                    attempts=1,
                )
                granted = response["auth"]["lease_duration"]
            else:
                lease_id = lease.lease_id
                response = self._call(
                    lease.session,
                    lease.what,
                    ("sys/leases/renew", "update"),
                    lambda c: c.sys.renew_lease(lease_id=lease_id, increment=increment),
                    attempts=1,
                )
                granted = response["lease_duration"]
        except SecretError as exc:
            left = lease.expires_at - now
            if left <= 0:
                log.warning("etl: vault: %s expired: %s", lease.what, exc)
                self._leases.remove(lease)
            else:
                log.warning("etl: vault: could not renew %s (retrying): %s", lease.what, exc)
                lease.renew_at = now + max(min(left / 3, 30), 0.5)
            return
        log.debug("etl: vault: renewed %s for %ss", lease.what, granted)
        lease.expires_at = now + granted
        if granted < increment and not lease.capped:
            lease.capped = True
            log.warning(
                "etl: vault: %s reached its maximum TTL and expires in %ss; a run outlasting "
                "it loses these credentials (raise the role's max_ttl)",
                lease.what,
                granted,
            )
        lease.renew_at = now + granted * RENEW_AT if granted > 0 else float("inf")

    def close(self) -> None:
        """Stop renewing, revoke every lease of this run and log out of AppRole logins."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        if self._renewer is not None:
            self._renewer.join(timeout=60)
        problems = []
        with self._lock:
            for lease in self._leases:
                if lease.lease_id is None:
                    continue
                try:
                    self._call(
                        lease.session,
                        lease.what,
                        ("sys/leases/revoke", "update"),
                        functools.partial(_revoke_lease, lease_id=lease.lease_id),
                    )
                except _Failure as exc:
                    # Logging out below revokes what our own login's token created.
                    if not (exc.reason == "forbidden" and lease.session.owned_token):
                        left = max(int(lease.expires_at - time.monotonic()), 0)
                        problems.append(f"{exc} (the lease expires by itself in {left}s)")
            for session in self._sessions.values():
                if session.owned_token:
                    try:
                        self._call(
                            session,
                            "the AppRole login token",
                            ("auth/token/revoke-self", "update"),
                            lambda c: c.auth.token.revoke_self(),
                        )
                    except SecretError as exc:
                        problems.append(str(exc))
                session.client.adapter.close()
            self._leases.clear()
            self._sessions.clear()
            self._cache.clear()
        if problems:
            raise SecretError("; ".join(problems))


# --- helpers -----------------------------------------------------------------------------------


def _env(name: str) -> str | None:
    """``VAULT_<name>``, else OpenBao's ``BAO_<name>``."""
    return os.environ.get(f"VAULT_{name}") or os.environ.get(f"BAO_{name}") or None


def _reveal(value: str | Secret | None) -> str | None:
    if value is None:
        return None
    return value.reveal() if isinstance(value, Secret) else value


def _identity(auth: VaultAuth, ref: str) -> tuple[str, str | None, str | None, str | None]:
    """(method, token, role_id, secret_id) from the options, then the environment."""
    token = _reveal(auth.token)
    role_id, secret_id = _reveal(auth.role_id), _reveal(auth.secret_id)
    method = auth.method
    if method == "auto":
        if role_id or secret_id:
            method = "approle"
        elif token or _env("TOKEN"):
            method = "token"
        elif _env("ROLE_ID") and _env("SECRET_ID"):
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
        token = token or _env("TOKEN") or _token_file()
        if not token:
            raise SecretError(
                f"{ref}: auth method token but no token; export VAULT_TOKEN or set "
                '`auth: {token: {secret: "file:/run/secrets/vault-token"}}`'
            )
        return method, token, None, None
    role_id, secret_id = role_id or _env("ROLE_ID"), secret_id or _env("SECRET_ID")
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


def _fields(data: Mapping[str, Any], options: VaultOptions, ref: str) -> dict[str, Secret]:
    if options.fields is None:
        wanted = {key: key for key in data}
        if "username" in data and "user" not in data:
            wanted["user"] = "username"  # DESIGN §6: Vault's `username` fills `user`
    else:
        wanted = dict(options.fields)
        missing = sorted({key for key in wanted.values() if key not in data})
        if missing:
            raise SecretError(
                f"{ref} has no field(s) {', '.join(map(repr, missing))} "
                f"(it has: {', '.join(sorted(data)) or 'none'})"
            )
    fields = {}
    for field, key in wanted.items():
        value = data[key]
        if not isinstance(value, str):
            raise SecretError(
                f"{ref}: field {key!r} is not a string; name the string fields you need with "
                "`fields:`"
            )
        fields[field] = Secret(value)
    return fields


def _revoke_lease(client: Any, lease_id: str) -> Any:
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
    exc: BaseException, session: _Session, ref: str, target: tuple[str, str], tries: int
) -> _Failure:
    import hvac.exceptions as vault
    import requests

    path, capability = target
    where = session.where
    after = f" after {tries} attempts" if tries > 1 else ""
    if isinstance(exc, requests.exceptions.SSLError):
        return _Failure(
            f"{ref}: the TLS certificate of {where} could not be verified; set `ca_cert:` "
            "(or VAULT_CACERT) to the PEM file of the CA that signed it",
            "tls",
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return _Failure(f"{ref}: {where} did not answer within {session.timeout:g}s{after}", "down")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return _Failure(f"{ref}: cannot connect to {where}{after}; is it running?", "down")
    if isinstance(exc, vault.VaultDown) and _sealed(exc):
        return _Failure(
            f"{ref}: {where} is sealed; unseal it (`vault operator unseal` or "
            "`bao operator unseal`) and run again",
            "sealed",
        )
    if isinstance(exc, vault.Forbidden):
        return _Failure(
            f"{ref}: permission denied by {where}: the token is invalid or expired, or its "
            f"policies do not grant {capability!r} on {path!r}; the policy needs e.g. "
            f'path "{path}" {{ capabilities = ["{capability}"] }}',
            "forbidden",
        )
    if isinstance(exc, vault.InvalidPath):
        return _Failure(
            f"{ref}: {where} has no secret at {path!r} (or that version was deleted); check "
            "`mount`, `path`, `kv_version` and `version`",
            "missing",
        )
    if isinstance(exc, vault.InvalidRequest) and path.endswith("/login"):
        return _Failure(
            f"{ref}: AppRole login at {path!r} of {where} was refused: the role_id or "
            "secret_id is wrong, or the secret_id expired or was used up",
            "login",
        )
    detail = "; ".join(str(e).strip() for e in (getattr(exc, "errors", None) or ()) if e)
    for value in session.scrub:
        detail = detail.replace(value, "***")
    kind = type(exc).__name__
    return _Failure(
        f"{ref}: {where} failed{after} on {path!r} ({kind}{': ' + detail if detail else ''})",
        "error",
    )
