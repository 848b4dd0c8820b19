"""Credentials of one run (or of one stream, across its micro-batches): resolved once, cached,
resolved again when their provider says they end soon, and remembered to redact them."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from etl_core.api import CredentialProvider, Secret, SecretRef
from etl_core.config.model import Bound, BoundPipeline
from etl_core.errors import SecretError

if TYPE_CHECKING:
    from etl_core.plugins import PluginHost

log = logging.getLogger("etl.run")


class Secrets:
    """Resolves credentials once per run and remembers the values, to redact them from errors."""

    def __init__(self, bound: BoundPipeline, host: PluginHost):
        self._bound, self._host = bound, host
        self._entries: dict[str, Mapping[str, Secret]] = {}
        self._references: dict[tuple[str, str], Mapping[str, Secret]] = {}
        self._providers: dict[str, CredentialProvider] = {}
        self._retired: list[CredentialProvider] = []
        self.values: set[str] = set()

    def _provider(self, name: str) -> CredentialProvider:
        if name not in self._providers:
            self._providers[name] = self._host.component("credential_provider", name)()
        return self._providers[name]

    def entry(self, name: str) -> Mapping[str, Secret]:
        if name not in self._entries:
            item = self._bound.credentials[name]
            options = self._replace_refs(item.options, item.path)  # e.g. a Vault token
            try:
                fields = self._provider(item.component.name).resolve(options)
            except SecretError as exc:
                raise SecretError(f"credentials.{name}: {exc}") from None
            self._entries[name] = fields
            self.values.update(s.reveal() for s in fields.values() if s.reveal())
        return self._entries[name]

    def reference(self, ref: SecretRef, path: str) -> Secret:
        key = (ref.provider, ref.path)
        if key not in self._references:
            provider = self._provider(ref.provider)
            try:
                self._references[key] = provider.resolve(provider.options_for_reference(ref.path))
            except SecretError as exc:
                raise SecretError(f"{path}: {exc}") from None
        fields = self._references[key]
        if ref.field is None and len(fields) == 1:
            (secret,) = fields.values()
        elif ref.field is not None and ref.field in fields:
            secret = fields[ref.field]
        else:
            raise SecretError(
                f"{path}: {ref} has no field {ref.field!r}; known: {', '.join(fields)}"
            )
        if secret.reveal():
            self.values.add(secret.reveal())
        return secret

    def options_for(self, item: Bound) -> Any:
        """The item's options with its credentials entry and inline references filled in."""
        options = self._replace_refs(item.options, item.path)
        block = item.block
        if block is not None and block.credentials is not None:
            names = {f.name for f in attrs.fields(type(options))}
            fields = {k: v for k, v in self.entry(block.credentials).items() if k in names}
            options = attrs.evolve(options, **fields)
        return options

    def providers_of(self, item: Bound) -> set[str]:
        """The credential providers the item's options are resolved through."""
        names = {ref.provider for ref in _refs(item.options)}
        block = item.block
        if block is not None and block.credentials is not None:
            names |= self._entry_providers(block.credentials)
        return names

    def _entry_providers(self, name: str) -> set[str]:
        entry = self._bound.credentials[name]
        return {entry.component.name, *(ref.provider for ref in _refs(entry.options))}

    def refresh(self, within: float) -> set[str]:
        """Forget what a provider resolved when some of it stops working within ``within``
        seconds: the next use resolves it again through a new instance of the provider. The
        instances retired by the call before this one are closed now (their leases released):
        a stream calls this between micro-batches, so none of its batches still uses them.
        Returns the names of the providers retired."""
        for provider in self._retired:
            self._close(provider)
        self._retired = []
        ending = set()
        for name, provider in self._providers.items():
            left = provider.expires_in()
            if left is not None and left < within:
                ending.add(name)
        for name in ending:
            self._retired.append(self._providers.pop(name))
        for entry in [e for e in self._entries if self._entry_providers(e) & ending]:
            del self._entries[entry]
        for key in [k for k in self._references if k[0] in ending]:
            del self._references[key]
        return ending

    def _replace_refs(self, value: Any, path: str) -> Any:
        if isinstance(value, SecretRef):
            return self.reference(value, path)
        if attrs.has(type(value)):
            changes = {}
            for field in attrs.fields(type(value)):
                old = getattr(value, field.name)
                new = self._replace_refs(old, f"{path}.{field.name}")
                if new is not old:
                    changes[field.name] = new
            return attrs.evolve(value, **changes) if changes else value
        if isinstance(value, dict):
            new_dict = {k: self._replace_refs(v, f"{path}.{k}") for k, v in value.items()}
            return new_dict if any(new_dict[k] is not value[k] for k in value) else value
        return value

    def redact(self, text: str) -> str:
        for value in sorted(self.values, key=len, reverse=True):
            text = text.replace(value, "***")
        return text

    def close(self) -> None:
        for provider in [*self._retired, *self._providers.values()]:
            self._close(provider)

    def _close(self, provider: CredentialProvider) -> None:
        try:
            provider.close()
        except Exception as exc:  # noqa: BLE001 - releasing leases must not hide the result
            message = self.redact(str(exc))
            log.warning("etl: could not release credentials of %s: %s", provider.name, message)


def _refs(value: Any) -> Iterator[SecretRef]:
    """The unresolved references inside options."""
    if isinstance(value, SecretRef):
        yield value
    elif attrs.has(type(value)):
        for field in attrs.fields(type(value)):
            yield from _refs(getattr(value, field.name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _refs(item)
