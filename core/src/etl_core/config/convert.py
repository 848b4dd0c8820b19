"""The one cattrs converter that structures every pipeline section and component ``Options``
class: strict scalars, secrets and references, and its errors translated into located config
issues (with did-you-mean suggestions)."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

import attrs
import cattrs
from cattrs.cols import list_structure_factory, mapping_structure_factory
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)
from cattrs.gen import make_dict_structure_fn

from etl_core.errors import ConfigIssue
from etl_core.options import ValueProblem
from etl_core.secrets import Secret, SecretRef

__all__ = ["allow_plaintext", "converter", "issues_from", "structure", "unknown_key"]


def _strict(expected: type | tuple[type, ...], label: str) -> Callable[[Any, type], Any]:
    def hook(value: Any, _: type) -> Any:
        if isinstance(value, bool) and bool not in (
            expected if isinstance(expected, tuple) else (expected,)
        ):
            raise ValueProblem(f"expected {label}, got {value!r}")
        if not isinstance(value, expected):
            raise ValueProblem(f"expected {label}, got {_show(value)}")
        return value

    return hook


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _structure_float(value: Any, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueProblem(f"expected a number, got {_show(value)}")
    return float(value)


#: set for one load by ``--allow-plaintext-secrets`` (see ``config.check``)
allow_plaintext: ContextVar[bool] = ContextVar("etl_allow_plaintext_secrets", default=False)


def _structure_secret(value: Any, _: type) -> Secret:
    if isinstance(value, Secret):
        return value
    if isinstance(value, str) and allow_plaintext.get():
        return Secret(value)
    if isinstance(value, Mapping) and set(value) == {"secret"} and isinstance(value["secret"], str):
        return SecretRef.parse(value["secret"])
    raise ValueProblem(
        "secrets are never written in a pipeline file; reference one instead, e.g. "
        "{secret: 'env:PG_PASSWORD'} or name an entry of `credentials:`"
    )


def _describe(cls: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        cls, "a list" if typing.get_origin(cls) is list else "a mapping"
    )


def _union_factory(conv: cattrs.Converter) -> Callable[[Any], Callable[[Any, type], Any]]:
    """``A | B | None``: ``None`` as is, else the first member that accepts the value."""

    def factory(union: Any) -> Callable[[Any, type], Any]:
        members = [m for m in typing.get_args(union) if m is not type(None)]
        optional = len(members) < len(typing.get_args(union))

        def structure_union(value: Any, _: type) -> Any:
            if value is None and optional:
                return None
            if len(members) == 1:
                return conv.structure(value, members[0])
            for member in members:
                try:
                    return conv.structure(value, member)
                except Exception:  # noqa: BLE001, S112 - try the next member
                    continue
            raise ValueProblem(
                f"expected {' or '.join(_describe(m) for m in members)}, got {_show(value)}"
            )

        return structure_union

    return factory


def _is_union(cls: Any) -> bool:
    return typing.get_origin(cls) in (typing.Union, types.UnionType)


def _is_list(cls: Any) -> bool:
    return cls is list or typing.get_origin(cls) is list


def _is_dict(cls: Any) -> bool:
    return cls is dict or typing.get_origin(cls) is dict


def _exact(
    check: type,
    label: str,
    factory: Callable[[Any, cattrs.Converter], Callable[[Any, type], Any]],
    conv: cattrs.Converter,
) -> Callable[[Any], Callable[[Any, type], Any]]:
    """cattrs turns any iterable into a list (``"orders"`` → ``["o", ...]``): refuse that."""

    def make(cls: Any) -> Callable[[Any, type], Any]:
        inner = factory(cls, conv)

        def structure_exact(value: Any, _: type) -> Any:
            if not isinstance(value, check):
                raise ValueProblem(f"expected {label}, got {_show(value)}")
            return inner(value, cls)

        return structure_exact

    return make


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(str, _strict(str, "a string"))
    conv.register_structure_hook(int, _strict(int, "an integer"))
    conv.register_structure_hook(bool, _strict(bool, "true or false"))
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook(Secret, _structure_secret)
    conv.register_structure_hook(Any, lambda value, _: value)

    def attrs_factory(cls: type) -> Callable[[Any, type], Any]:
        inner: Callable[[Any, type], Any] = make_dict_structure_fn(
            cls, conv, _cattrs_forbid_extra_keys=True
        )

        def structure_mapping(value: Any, _: type) -> Any:
            if not isinstance(value, Mapping):
                raise ValueProblem(f"expected a mapping of options, got {_show(value)}")
            return inner(value, cls)

        return structure_mapping

    conv.register_structure_hook_factory(attrs.has, attrs_factory)
    conv.register_structure_hook_factory(_is_union, _union_factory(conv))
    conv.register_structure_hook_factory(
        _is_list, _exact(list, "a list", list_structure_factory, conv)
    )
    conv.register_structure_hook_factory(
        _is_dict, _exact(Mapping, "a mapping", mapping_structure_factory, conv)
    )
    return conv


converter = _make_converter()


def structure(
    data: Any, cls: type, path: str, *, also_known: tuple[str, ...] = ()
) -> tuple[Any, list[ConfigIssue]]:
    """Structure ``data`` into ``cls``; on failure return ``None`` and every issue, with paths.

    ``also_known`` are keys that are valid at ``path`` without being fields of ``cls`` (the
    core-owned keys of a component block), offered in "did you mean" suggestions.
    """
    try:
        value: Any = converter.structure(data, cls)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a located issue
        return None, list(issues_from(exc, path, also_known))
    blank = list(_blank_required(value, path))
    return (None, blank) if blank else (value, [])


def _blank_required(value: Any, path: str) -> Iterator[ConfigIssue]:
    """Required text options left blank (`path: ""`): nothing could work with them."""
    if not attrs.has(type(value)):
        return
    for field in attrs.fields(type(value)):
        given = getattr(value, field.name)
        at = _join(path, field.name)
        if field.default is attrs.NOTHING and isinstance(given, str) and not given.strip():
            yield ConfigIssue(at, "is empty", f"give `{field.name}` a value")
        yield from _blank_required(given, at)


def issues_from(
    exc: BaseException, path: str, also_known: tuple[str, ...] = ()
) -> Iterator[ConfigIssue]:
    if isinstance(exc, ForbiddenExtraKeysError):
        known = [f.name for f in attrs.fields(exc.cl)] + list(also_known) if exc.cl else []
        for key in sorted(exc.extra_fields):
            yield unknown_key(_join(path, key), key, known)
    elif isinstance(exc, ClassValidationError | IterableValidationError):
        for sub in exc.exceptions:
            note = next(
                (
                    n
                    for n in getattr(sub, "__notes__", ())
                    if hasattr(n, "index") or hasattr(n, "name")
                ),
                None,
            )
            if isinstance(note, AttributeValidationNote):
                sub_path = _join(path, note.name)
            elif note is not None:
                index = note.index  # type: ignore[union-attr]
                sub_path = _join(path, index) if isinstance(index, str) else f"{path}[{index}]"
            else:
                sub_path = path
            # Only the top-level attrs class may add core keys to suggestions.
            yield from issues_from(sub, sub_path, also_known if note is None else ())
    elif isinstance(exc, KeyError):
        yield ConfigIssue(path, "required key is missing")
    elif isinstance(exc, ValueProblem) and exc.key:
        yield ConfigIssue(_join(path, exc.key), str(exc))
    elif isinstance(exc, ValueError | TypeError):
        yield ConfigIssue(path, str(exc))
    else:
        yield ConfigIssue(path, f"{type(exc).__name__}: {exc}")


def unknown_key(path: str, key: str, known: list[str]) -> ConfigIssue:
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    fix = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(sorted(known))}"
    return ConfigIssue(path, f"unknown key {key!r}", fix)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)
