"""The ``vault`` credential provider: HashiCorp Vault or OpenBao, through hvac.

One provider instance serves one run. It logs in once per server and identity, reads each
secret once (two references to one dynamic database role share one lease), renews leases in
a background thread while the run holds them, and revokes them in :meth:`VaultProvider.close`.

``hvac``, ``requests`` and ``tenacity`` are imported when a secret is resolved, not when the
plugin loads, so ``etl plugins`` and ``etl validate`` stay fast (:mod:`etl_plugin_vault.client`
makes the calls). No message, log line or exception raised here holds a secret value: they
name the reference and the server.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from etl_core import CredentialProvider, Secret, SecretError, parse_duration
from etl_plugin_vault.client import Failure, Session, call, env, identity, revoke_lease
from etl_plugin_vault.options import VaultOptions

log = logging.getLogger("etl.vault")

#: renew a lease when this fraction of its duration has passed
RENEW_AT = 2 / 3


@attrs.define(eq=False)
class _Lease:
    """Something to renew while the run lasts: a secret's lease or our own login token."""

    session: Session
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
        self._sessions: dict[tuple[Any, ...], Session] = {}
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

    def _read(self, session: Session, options: VaultOptions, ref: str) -> dict[str, Any]:
        path, mount = options.path.strip("/"), options.mount_point
        read = (options.api_path, "read")
        if options.engine == "database":
            response = call(
                session,
                ref,
                read,
                lambda c: c.secrets.database.generate_credentials(name=path, mount_point=mount),
            )
            self._hold(session, ref, response, options.renew)
            return dict(response["data"])
        if options.kv_version == 1:
            response = call(
                session,
                ref,
                read,
                lambda c: c.secrets.kv.v1.read_secret(path=path, mount_point=mount),
            )
            return dict(response["data"])
        response = call(
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

    def _session(self, options: VaultOptions, ref: str) -> Session:
        import hvac

        address = (options.address or env("ADDR") or "").rstrip("/")
        if not address:
            raise SecretError(
                f"{ref}: no Vault server named; set `address:` in the credentials entry or "
                "export VAULT_ADDR=https://vault.example.com:8200"
            )
        namespace = options.namespace or env("NAMESPACE") or None
        verify: bool | str = False
        if options.verify:
            ca_cert = options.ca_cert or env("CACERT")
            verify = str(Path(ca_cert).expanduser()) if ca_cert else True
            if isinstance(verify, str) and not Path(verify).is_file():
                raise SecretError(
                    f"{ref}: the CA file {verify} (ca_cert / VAULT_CACERT) is missing"
                )
        method, token, role_id, secret_id = identity(options.auth, ref)
        key = (address, namespace, verify, method, options.auth.mount, token, role_id, secret_id)
        if key in self._sessions:
            return self._sessions[key]
        timeout = parse_duration(options.timeout)
        session = Session(
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
            response = call(
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

    # --- leases ------------------------------------------------------------------------------

    def _hold(self, session: Session, ref: str, response: Mapping[str, Any], renew: bool) -> None:
        lease_id, ttl = response.get("lease_id"), response.get("lease_duration") or 0
        if not lease_id:
            return
        lease = self._track(session, ref, lease_id, ttl)
        if not (renew and response.get("renewable")):
            lease.renew_at = float("inf")  # revoked at the end, never renewed

    def _track(self, session: Session, what: str, lease_id: str | None, ttl: float) -> _Lease:
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
                response = call(
                    lease.session,
                    lease.what,
                    ("auth/token/renew-self", "update"),
                    lambda c: c.auth.token.renew_self(increment=increment),
                    attempts=1,
                )
                granted = response["auth"]["lease_duration"]
            else:
                lease_id = lease.lease_id
                response = call(
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
                "etl: vault: %s reached its maximum TTL and expires in %ss; a batch run "
                "outlasting it loses these credentials (raise the role's max_ttl; a stream "
                "resolves them again)",
                lease.what,
                granted,
            )
        lease.renew_at = now + granted * RENEW_AT if granted > 0 else float("inf")

    def expires_in(self) -> float | None:
        """Seconds left of the first lease (or login token) that can no longer be renewed: not
        renewable, or renewed up to its maximum TTL."""
        with self._lock:
            now = time.monotonic()
            ends = [
                lease.expires_at - now
                for lease in self._leases
                if lease.ttl > 0 and (lease.capped or lease.renew_at == float("inf"))
            ]
        return min(ends, default=None)

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
                    call(
                        lease.session,
                        lease.what,
                        ("sys/leases/revoke", "update"),
                        functools.partial(revoke_lease, lease_id=lease.lease_id),
                    )
                except Failure as exc:
                    # Logging out below revokes what our own login's token created.
                    if not (exc.reason == "forbidden" and lease.session.owned_token):
                        left = max(int(lease.expires_at - time.monotonic()), 0)
                        problems.append(f"{exc} (the lease expires by itself in {left}s)")
            for session in self._sessions.values():
                if session.owned_token:
                    try:
                        call(
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
