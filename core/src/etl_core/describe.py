"""Human-readable descriptions of components (``etl plugins show``)."""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any

import attrs

from etl_core.api import LOAD_MODES
from etl_core.plugins import PluginHost

_PLACEHOLDERS = {str: "<text>", int: 1, float: 1.0, bool: True}


def type_name(annotation: Any) -> str:
    """``str | None`` → ``string or null``; ``list[str]`` → ``list of string``."""
    if isinstance(annotation, str):
        return annotation
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is list:
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {type_name(args[0])} to {type_name(args[1])}" if args else "mapping"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default_value(field: attrs.Attribute[Any]) -> Any:
    """The field's default as a pipeline file would write it (plain YAML values)."""
    from etl_core.config.convert import converter

    value = field.default
    if isinstance(value, attrs.Factory):  # type: ignore[arg-type]
        value = value.factory()  # type: ignore[union-attr]
    value = converter.unstructure(value)
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if v is not None}
    return value


def _default(field: attrs.Attribute[Any]) -> str:
    import yaml

    if field.default is attrs.NOTHING:
        return "required"
    text = yaml.safe_dump(_default_value(field), default_flow_style=True, width=1000)
    return text.strip().removesuffix("...").strip()


def _choices(field: attrs.Attribute[Any]) -> tuple[str, ...]:
    validators: Any = getattr(field.validator, "_validators", (field.validator,))
    return next((v.choices for v in validators if hasattr(v, "choices")), ())


def _example_value(field: attrs.Attribute[Any]) -> Any:
    annotation = field.type
    if _choices(field):
        return _choices(field)[0]
    if typing.get_origin(annotation) is list:
        return ["<item>"]
    if typing.get_origin(annotation) is dict:
        return {"<key>": "<value>"}
    return _PLACEHOLDERS.get(annotation, f"<{field.name}>")  # type: ignore[arg-type]


#: options shown in an example block even though they have a default: where the data is
_EXAMPLE_KEYS = ("connection", "bucket", "table", "topics", "path", "format")

#: where a component of each kind goes in a pipeline file, and its core-owned wiring keys
_PLACES: dict[str, tuple[str, dict[str, Any]]] = {
    "extractor": ("sources", {}),
    "transformer": ("transforms", {"inputs": ["<dataset>"]}),
    "loader": ("sinks", {"input": "<dataset>"}),
    "credential_provider": ("credentials", {}),
}


def describe_component(host: PluginHost, kind: str, name: str) -> str:
    import yaml

    cls = host.component(kind, name)
    fields = attrs.fields(attrs.resolve_types(cls.Options))
    doc = (inspect.getdoc(cls) or "").replace("``", "`")
    lines = [
        f"{name} ({kind.replace('_', ' ')}, from {host.owner(kind, name)})",
        *(f"  {line}" for line in doc.splitlines()),
        f"  capabilities: {', '.join(sorted(cls.capabilities)) or '-'}",
    ]
    if fields:
        width = max(len(f.name) for f in fields)
        lines.append("  options:")
        for f in fields:
            choices = f"; one of {', '.join(_choices(f))}" if _choices(f) else ""
            lines.append(f"    {f.name:<{width}}  {type_name(f.type)}  ({_default(f)}{choices})")
    else:
        lines.append("  options: none")
    if kind == "loader":
        marked = [f"{m} (default)" if i == 0 else m for i, m in enumerate(cls.modes)]
        needs = [
            f"`{m}` needs `{'`, `'.join(LOAD_MODES[m].needs)}`"
            for m in cls.modes
            if LOAD_MODES[m].needs
        ]
        lines.append(
            f"  modes: {', '.join(marked)}  (the sink's `mode`{'; ' if needs else ''}"
            f"{'; '.join(needs)})"
        )
    section, wiring = _PLACES.get(kind, ("", {}))
    type_key = "provider" if kind == "credential_provider" else "type"
    required = {
        f.name: _example_value(f) if f.default is attrs.NOTHING else _default_value(f)
        for f in fields
        if f.default is attrs.NOTHING or f.name in _EXAMPLE_KEYS
    }
    if "table" in required and "query" in {f.name for f in fields}:
        required["table"] = "<schema.table>"
    block = {type_key: name, **wiring, **required}
    example = {section: {f"my_{name}": block}} if section else block
    lines.append("  example:")
    lines += [f"    {line}" for line in yaml.safe_dump(example, sort_keys=False).splitlines()]
    return "\n".join(lines)
