"""Secret values and references (DESIGN §6): a :class:`Secret` prints as ``***``; a
:class:`SecretRef` (``env:PG_PASSWORD``, ``vault:etl/warehouse#password``) is what config holds
until a run resolves it. A public contract: plugins receive these in their options.
"""

from __future__ import annotations

from typing import Any

from etl_core.errors import SecretError

__all__ = ["Secret", "SecretRef"]


class Secret:
    """A secret value. Prints as ``***`` everywhere; only :meth:`reveal` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Secret) and type(other) is type(self) and other._value == self._value
        )

    def __hash__(self) -> int:
        return hash((type(self), self._value))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._value,))


class SecretRef(Secret):
    """An unresolved reference such as ``env:PG_PASSWORD`` or ``vault:etl/warehouse#password``.

    Config holds these; the runner replaces them with resolved :class:`Secret` values just
    before a component uses them.
    """

    __slots__ = ("field", "path", "provider")

    def __init__(self, provider: str, path: str, field: str | None = None):
        super().__init__("")
        self.provider, self.path, self.field = provider, path, field

    @classmethod
    def parse(cls, text: str) -> SecretRef:
        provider, sep, rest = text.partition(":")
        path, _, field = rest.partition("#")
        if not sep or not provider or not path:
            raise ValueError(
                f"secret reference {text!r} must look like 'provider:path' or "
                "'provider:path#field', e.g. 'env:PG_PASSWORD'"
            )
        return cls(provider, path, field or None)

    def reveal(self) -> str:
        raise SecretError(f"secret reference {self} was used before it was resolved")

    def __repr__(self) -> str:
        return f"SecretRef({self.provider}:{self.path}{'#' + self.field if self.field else ''})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretRef) and repr(other) == repr(self)

    def __hash__(self) -> int:
        return hash(repr(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.provider, self.path, self.field))
