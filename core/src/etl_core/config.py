"""The pipeline file: YAML (or JSON) → ``PipelineSpec``, with every mistake located.

Loading is two steps. :func:`load` reads the file, applies ``--set`` overrides and ``${ENV}``
interpolation, and structures the core model; component options stay raw mappings there.
:func:`bind` resolves each component type through the plugin host and structures its options
with the component's own ``Options`` class. Both collect every issue before raising.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml

from etl_core.api import SecretRef
from etl_core.errors import ConfigError, ConfigIssue, UnknownComponentError, raise_if_any
from etl_core.options import (
    ValueProblem,
    allow_plaintext,
    duration,
    one_of,
    positive,
    structure,
    unknown_key,
)
from etl_core.plan import Plan, build_plan
from etl_core.plugins import PluginHost

log = logging.getLogger("etl.config")

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@attrs.frozen
class EngineSpec:
    master: str | None = None
    remote: str | None = None
    conf: dict[str, str] = attrs.field(factory=dict)
    driver_memory: str = "2g"
    #: count every dataset, not only sources, sinks' inputs and datasets that route rows
    count_every_dataset: bool = False


@attrs.frozen
class RetrySpec:
    attempts: int = attrs.field(default=3, validator=positive)
    backoff: str = attrs.field(
        default="exponential", validator=one_of("exponential", "fixed", "none")
    )
    initial: str | float = attrs.field(default="1s", validator=duration)
    max: str | float = attrs.field(default="60s", validator=duration)
    jitter: bool = True


@attrs.frozen
class BreakerSpec:
    failure_threshold: int = attrs.field(default=5, validator=positive)
    reset_after: str | float = attrs.field(default="30s", validator=duration)


@attrs.frozen
class Block:
    """A component block: its ``type``, the core-owned keys, and the component's raw options."""

    type: str
    options: dict[str, Any] = attrs.field(factory=dict)
    credentials: str | None = None
    retry: RetrySpec | None = None
    circuit_breaker: BreakerSpec | None = None


@attrs.frozen
class SourceSpec(Block):
    incremental: dict[str, Any] | None = None
    read_schema: str | list[dict[str, Any]] | None = None


@attrs.frozen
class TransformSpec(Block):
    inputs: list[str] = attrs.field(factory=list)


@attrs.frozen
class SinkSpec(Block):
    input: str = ""
    on_reject: str = attrs.field(default="fail", validator=one_of("fail", "dead_letter"))


@attrs.frozen
class CredentialSpec:
    provider: str
    options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ValidateSpec:
    """Accepted structurally here; the validation issue gives rules their meaning."""

    schema: str | list[dict[str, Any]] | None = None
    mode: str = attrs.field(default="strict", validator=one_of("strict", "additive", "coerce"))
    rules: list[dict[str, Any]] = attrs.field(factory=list)
    on_failure: str = attrs.field(
        default="abort", validator=one_of("abort", "continue", "quarantine")
    )


def _not_negative(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and value < 0:
        raise ValueProblem(f"cannot be negative, got {value!r}", attribute.name)


def _ratio(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not 0 <= value <= 1:
        raise ValueProblem(
            f"must be a fraction from 0 to 1 (0.01 is 1%), got {value!r}", attribute.name
        )


@attrs.frozen
class ErrorsSpec:
    retry: RetrySpec | None = None
    circuit_breaker: BreakerSpec | None = None
    dead_letter: Block | None = None
    max_bad_rows: int | None = attrs.field(default=None, validator=_not_negative)
    max_bad_ratio: float | None = attrs.field(default=None, validator=_ratio)


@attrs.frozen
class TracingSpec:
    exporter: str = attrs.field(default="otlp", validator=one_of("otlp", "console"))
    endpoint: str | None = None


@attrs.frozen
class PipelineSpec:
    name: str
    version: int = 1
    mode: str = attrs.field(default="batch", validator=one_of("batch", "streaming"))
    engine: EngineSpec = attrs.field(factory=EngineSpec)
    credentials: dict[str, CredentialSpec] = attrs.field(factory=dict)
    sources: dict[str, SourceSpec] = attrs.field(factory=dict)
    transforms: dict[str, TransformSpec] = attrs.field(factory=dict)
    validate: dict[str, ValidateSpec] = attrs.field(factory=dict)
    sinks: dict[str, SinkSpec] = attrs.field(factory=dict)
    errors: ErrorsSpec = attrs.field(factory=ErrorsSpec)
    metrics: list[Block] = attrs.field(factory=list)
    tracing: TracingSpec | None = None
    state: Block = attrs.field(factory=lambda: Block(type="file"))
    base_dir: Path = attrs.field(factory=Path.cwd)
    source: str | None = None
    #: blocks whose core keys were wrong: kept by name for planning, skipped by ``bind``
    broken: frozenset[str] = frozenset()


#: top-level sections structured one by one, so one bad section hides nothing else
_SECTIONS: dict[str, Any] = {
    "version": int,
    "name": str,
    "mode": str,
    "engine": EngineSpec,
    "credentials": dict[str, CredentialSpec],
    "sources": dict[str, SourceSpec],
    "transforms": dict[str, TransformSpec],
    "validate": dict[str, ValidateSpec],
    "sinks": dict[str, SinkSpec],
    "errors": ErrorsSpec,
    "metrics": list[Block],
    "tracing": TracingSpec,
    "state": Block,
}

# --- reading -------------------------------------------------------------------------------


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. YAML 1.1 would read a join's ``on:`` key as True."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_text(text: str, *, suffix: str = ".yaml", source: str = "<text>") -> Any:
    try:
        if suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        if suffix == ".json":
            return json.loads(text)
        return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, json.JSONDecodeError, ValueError) as exc:
        raise ConfigError.at("", f"cannot parse {source}: {exc}", "fix the file's syntax") from exc


def read_file(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError.at(
            "", f"cannot read pipeline file {str(path)!r}: {exc.strerror}", "check the path"
        ) from exc
    return parse_text(text, suffix=path.suffix.lower(), source=str(path))


def apply_overrides(raw: Any, overrides: Sequence[str]) -> list[ConfigIssue]:
    """Apply ``--set a.b.c=value`` overrides in place (values are read as YAML scalars)."""
    issues = []
    for item in overrides:
        dotted, sep, text = item.partition("=")
        keys = [k for k in dotted.strip().split(".") if k]
        if not sep or not keys:
            issues.append(
                ConfigIssue(
                    f"--set {item}", "expected PATH=VALUE", "e.g. --set sources.orders.partitions=4"
                )
            )
            continue
        node = raw
        for i, key in enumerate(keys[:-1]):
            child = node.get(key) if isinstance(node, dict) else None
            if child is None and isinstance(node, dict):
                child = node[key] = {}
            if not isinstance(child, dict):
                issues.append(ConfigIssue(".".join(keys[: i + 1]), f"--set {item}: not a mapping"))
                break
            node = child
        else:
            node[keys[-1]] = yaml.load(text, Loader=_YamlLoader) if text else ""  # noqa: S506
    return issues


_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(raw: Any, path: str = "") -> tuple[Any, list[ConfigIssue]]:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string; ``$$`` is a literal ``$``."""
    issues: list[ConfigIssue] = []

    def walk(node: Any, at: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, f"{at}.{k}" if at else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, f"{at}[{i}]") for i, v in enumerate(node)]
        if isinstance(node, str) and "$" in node:

            def substitute(match: re.Match[str]) -> str:
                if match.group(0) == "$$":
                    return "$"
                name, default = match.group(1), match.group(2)
                if name in os.environ:
                    return os.environ[name]
                if default is not None:
                    return default
                issues.append(
                    ConfigIssue(
                        at,
                        f"environment variable {name} is not set",
                        f"export {name}=... or write ${{{name}:-default}}",
                    )
                )
                return ""

            return _ENV.sub(substitute, node)
        return node

    return walk(raw, path), issues


# --- structuring --------------------------------------------------------------------------


def _split_block(data: Any, cls: type[Block]) -> Any:
    """Core-owned keys stay; everything else becomes the component's raw ``options``."""
    if not isinstance(data, Mapping):
        return data
    core = {f.name for f in attrs.fields(cls)} - {"options"}
    return {
        **{k: v for k, v in data.items() if k in core},
        "options": {k: v for k, v in data.items() if k not in core},
    }


def _split_credential(data: Any) -> Any:
    if not isinstance(data, Mapping):
        return data
    return {
        **({"provider": data["provider"]} if "provider" in data else {}),
        "options": {k: v for k, v in data.items() if k != "provider"},
    }


def _structure_section(key: str, value: Any) -> tuple[Any, list[ConfigIssue], set[str]]:
    """Structure one top-level section; also the names of blocks kept only as placeholders."""
    kind = _SECTIONS[key]
    if kind in (
        dict[str, SourceSpec],
        dict[str, TransformSpec],
        dict[str, SinkSpec],
        dict[str, CredentialSpec],
        dict[str, ValidateSpec],
    ):
        if value is None:
            return {}, [], set()
        if not isinstance(value, Mapping):
            problem = ConfigIssue(key, f"expected a mapping of names to blocks, got {value!r}")
            return None, [problem], set()
        (item_cls,) = kind.__args__[1:]
        entries, issues, broken = {}, [], set()
        for name, block in value.items():
            if item_cls is CredentialSpec:
                block = _split_credential(block)
            elif item_cls is not ValidateSpec:
                block = _split_block(block, item_cls)
            entry, found = structure(block, item_cls, f"{key}.{name}")
            issues += found
            if entry is not None:
                entries[str(name)] = entry
            elif item_cls in (SourceSpec, TransformSpec, SinkSpec):
                entries[str(name)] = _placeholder(item_cls, block)
                broken.add(str(name))
        return entries, issues, broken
    if kind == list[Block]:
        value = [_split_block(v, Block) for v in value] if isinstance(value, list) else value
    elif kind is Block:
        value = _split_block(value, Block)
    elif kind is ErrorsSpec and isinstance(value, Mapping) and "dead_letter" in value:
        value = {**value, "dead_letter": _split_block(value["dead_letter"], Block)}
    structured, issues = structure(value, kind, key)
    return structured, issues, set()


def _placeholder(cls: type[Block], block: Any) -> Block:
    """A block that failed to structure, kept by name and edges so that planning still finds
    the other mistakes; ``bind`` skips it (``PipelineSpec.broken``)."""
    raw = block if isinstance(block, Mapping) else {}

    def names(value: Any) -> list[str]:
        return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []

    extra: dict[str, Any] = {}
    if cls is TransformSpec:
        extra["inputs"] = names(raw.get("inputs"))
    elif cls is SinkSpec and isinstance(raw.get("input"), str):
        extra["input"] = raw["input"]
    return cls(type=str(raw.get("type", "")), **extra)


def structure_pipeline(
    raw: Any, *, base_dir: Path, source: str | None = None, issues: list[ConfigIssue] | None = None
) -> PipelineSpec:
    """Structure the core model. With an ``issues`` list, mistakes are appended to it and a
    best-effort spec is returned, so binding can find more; without one, they are raised."""
    if not isinstance(raw, Mapping):
        raise ConfigError(
            ConfigIssue("", "a pipeline file must be a mapping with at least `name` and `sources`"),
            source=source,
        )
    found_all: list[ConfigIssue] = []
    fields: dict[str, Any] = {}
    broken: set[str] = set()
    for key, value in raw.items():
        if key not in _SECTIONS:
            found_all.append(unknown_key(str(key), str(key), list(_SECTIONS)))
            continue
        structured, found, broken_here = _structure_section(key, value)
        broken |= broken_here
        check = attrs.fields_dict(PipelineSpec)[key].validator
        if not found and check is not None:  # e.g. `mode`, a plain string until PipelineSpec()
            try:
                check(None, attrs.fields_dict(PipelineSpec)[key], structured)
            except ValueError as exc:
                found = [ConfigIssue(key, str(exc))]
        found_all += found
        # A mapping of blocks keeps its good entries (and placeholders of the bad ones).
        if not found or isinstance(structured, dict):
            fields[key] = structured
    if "name" not in raw:
        found_all.append(
            ConfigIssue("name", "required key is missing", "add e.g. `name: orders_daily`")
        )
    elif "name" in fields and not NAME.match(fields["name"]):
        found_all.append(
            ConfigIssue(
                "name",
                f"{fields['name']!r} is not a valid pipeline name",
                "use letters, digits and underscores",
            )
        )
    if fields.get("version", 1) != 1:
        found_all.append(
            ConfigIssue("version", f"unsupported version {fields['version']}", "write `version: 1`")
        )
        del fields["version"]
    if issues is None:
        raise_if_any(found_all, source=source)
    else:
        issues += found_all
    fields.setdefault("name", "pipeline")
    return PipelineSpec(**fields, base_dir=base_dir, source=source, broken=frozenset(broken))


def load(
    path: str | Path | None = None,
    *,
    data: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    base_dir: Path | None = None,
    issues: list[ConfigIssue] | None = None,
) -> PipelineSpec:
    """Read a pipeline from a file (or a mapping), with overrides and interpolation applied.

    With an ``issues`` list, mistakes past parsing are collected there (see
    :func:`structure_pipeline`); :func:`check` uses that to report everything at once."""
    raw = read_file(path) if path is not None else json.loads(json.dumps(data or {}))
    source = str(path) if path is not None else None
    if raw is None:
        raw = {}
    found = apply_overrides(raw, overrides) if isinstance(raw, dict) else []
    raw, more = interpolate(raw)
    if issues is None:
        raise_if_any(found + more, source=source)
    else:
        issues += found + more
    if base_dir is None:
        base_dir = Path(path).resolve().parent if path is not None else Path.cwd()
    return structure_pipeline(raw, base_dir=base_dir, source=source, issues=issues)


# --- binding components -------------------------------------------------------------------


@attrs.frozen
class Bound:
    """A component block with its type resolved and its options structured."""

    path: str
    name: str
    component: type[Any]
    options: Any
    block: Block | None = None


@attrs.frozen
class BoundPipeline:
    spec: PipelineSpec
    sources: dict[str, Bound]
    transforms: dict[str, Bound]
    sinks: dict[str, Bound]
    credentials: dict[str, Bound]
    dead_letter: Bound | None
    metrics: list[Bound]
    state: Bound
    plan: Plan
    validations: dict[str, BoundValidation] = attrs.field(factory=dict)


@attrs.frozen
class BoundRule:
    """One quality rule of a dataset, its validator resolved and options structured."""

    path: str
    name: str
    severity: str
    component: type[Any]
    options: Any


@attrs.frozen
class BoundValidation:
    dataset: str
    schema: list[Any] | None  # quality.Column_ list, when declared
    mode: str
    on_failure: str
    rules: list[BoundRule]


RULE_KEYS = ("severity", "name")
SEVERITIES = ("error", "warning", "info")


def _bind_validation(
    name: str, spec: ValidateSpec, base_dir: Path, host: PluginHost, issues: list[ConfigIssue]
) -> BoundValidation:
    from etl_core.quality import Column_, split_ddl

    path = f"validate.{name}"
    schema = None
    if isinstance(spec.schema, str) and spec.schema.lower().endswith((".yaml", ".yml", ".json")):
        file = Path(spec.schema) if Path(spec.schema).is_absolute() else base_dir / spec.schema
        try:
            loaded = read_file(file)
        except ConfigError as exc:
            issues.append(
                ConfigIssue(
                    f"{path}.schema",
                    str(exc.issues[0].message),
                    "give the schema file's path relative to the pipeline file",
                )
            )
            loaded = None
        schema_value: Any = loaded
    else:
        schema_value = spec.schema
    if isinstance(schema_value, str):
        try:
            schema = split_ddl(schema_value)
        except ValueError as exc:
            issues.append(ConfigIssue(f"{path}.schema", str(exc)))
    elif schema_value is not None:
        schema, found = structure(schema_value, list[Column_], f"{path}.schema")
        issues += found
    known_columns = {c.name for c in schema} if schema else None
    rules: list[BoundRule] = []
    for i, entry in enumerate(spec.rules):
        at = f"{path}.rules[{i}]"
        kinds = [k for k in entry if k not in RULE_KEYS]
        if len(kinds) != 1:
            issues.append(
                ConfigIssue(
                    at,
                    f"a rule names exactly one rule type, got {kinds or 'none'}",
                    "write e.g. `{not_null: [id], severity: warning}`",
                )
            )
            continue
        (kind,) = kinds
        severity = entry.get("severity", "error")
        if severity not in SEVERITIES:
            import difflib

            close = difflib.get_close_matches(str(severity), SEVERITIES, n=1)
            issues.append(
                ConfigIssue(
                    f"{at}.severity",
                    f"{severity!r} is not one of error, warning, info",
                    f"did you mean {close[0]!r}?" if close else None,
                )
            )
            continue
        try:
            component = host.component("validator", str(kind))
        except UnknownComponentError as exc:
            issues.append(
                ConfigIssue(
                    f"{at}.{kind}",
                    str(exc).split("; ")[0].replace("validator type", "rule type"),
                    exc.hint,
                )
            )
            continue
        options, found = structure(
            component.shorthand(entry[kind]), component.Options, f"{at}.{kind}"
        )
        issues += found
        if found:
            continue
        validator = component()
        issues += [ConfigIssue(f"{at}.{kind}", problem) for problem in validator.check(options)]
        if known_columns is not None:
            for column in validator.columns(options):
                if column not in known_columns:
                    issues.append(
                        ConfigIssue(
                            f"{at}.{kind}",
                            f"column {column!r} is not in the declared schema",
                            f"declared columns: {', '.join(sorted(known_columns))}",
                        )
                    )
        columns = validator.columns(options)
        rule_name = str(entry.get("name") or (f"{kind}({','.join(columns)})" if columns else kind))
        if any(r.name == rule_name for r in rules):
            rule_name = f"{rule_name}#{i}"
        rules.append(BoundRule(at, rule_name, severity, component, options))
    return BoundValidation(name, schema, spec.mode, spec.on_failure, rules)


CORE_KEYS = {
    SourceSpec: tuple(f.name for f in attrs.fields(SourceSpec) if f.name != "options"),
    TransformSpec: tuple(f.name for f in attrs.fields(TransformSpec) if f.name != "options"),
    SinkSpec: tuple(f.name for f in attrs.fields(SinkSpec) if f.name != "options"),
    Block: tuple(f.name for f in attrs.fields(Block) if f.name != "options"),
}


def _bind(
    host: PluginHost,
    kind: str,
    path: str,
    name: str,
    type_name: str,
    raw: Mapping[str, Any],
    issues: list[ConfigIssue],
    block: Block | None = None,
    type_key: str = "type",
) -> Bound | None:
    try:
        component = host.component(kind, type_name)
    except UnknownComponentError as exc:
        issues.append(ConfigIssue(f"{path}.{type_key}", str(exc).split("; ")[0], exc.hint))
        return None
    known = CORE_KEYS.get(type(block), ()) if block is not None else (type_key,)
    if type_key == "type":  # component options; a credentials entry holds only references
        raw = _guard_secrets(raw, path, issues)
    options, found = structure(dict(raw), component.Options, path, also_known=known)
    issues += found
    return None if found else Bound(path, name, component, options, block)


SECRET_KEYS = re.compile(
    r"^(password|passwd|secret|token|api_key|access_key|secret_access_key|session_token|"
    r"private_key|client_secret)$|_(password|secret|token|api_key)$",
    re.IGNORECASE,
)


def _guard_secrets(raw: Any, path: str, issues: list[ConfigIssue]) -> Any:
    """Refuse plaintext (or ``${ENV}``-interpolated) values under secret-looking keys, or wrap
    let them through with a warning when the user opted in."""
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
            guarded[key] = _guard_secrets(value, at, issues)
        return guarded
    if isinstance(raw, list):
        return [_guard_secrets(v, f"{path}[{i}]", issues) for i, v in enumerate(raw)]
    return raw


def _secret_refs(value: Any, path: str) -> Iterator[tuple[str, SecretRef]]:
    if isinstance(value, SecretRef):
        yield path, value
    elif attrs.has(type(value)):
        for field in attrs.fields(type(value)):
            yield from _secret_refs(getattr(value, field.name), f"{path}.{field.name}")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _secret_refs(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _secret_refs(item, f"{path}[{i}]")


def bind(
    spec: PipelineSpec, host: PluginHost, issues: list[ConfigIssue] | None = None
) -> BoundPipeline:
    """Resolve every component and structure its options; raise all issues at once, with
    those already found in ``issues``."""
    issues = [] if issues is None else issues
    seen: dict[str, str] = {}
    for section in ("sources", "transforms", "sinks"):
        for name in getattr(spec, section):
            path = f"{section}.{name}"
            if not NAME.match(name):
                issues.append(
                    ConfigIssue(
                        path,
                        f"{name!r} is not a valid name",
                        "use letters, digits and underscores, not starting with a digit",
                    )
                )
            if name in seen:
                issues.append(
                    ConfigIssue(
                        path,
                        f"name {name!r} is already used by {seen[name]}",
                        "give every source, transform and sink its own name",
                    )
                )
            seen.setdefault(name, path)

    def bind_section(section: str, kind: str) -> dict[str, Bound]:
        bound = {}
        for name, block in getattr(spec, section).items():
            if name in spec.broken:
                continue
            result = _bind(
                host, kind, f"{section}.{name}", name, block.type, block.options, issues, block
            )
            if result is not None:
                bound[name] = result
        return bound

    sources = bind_section("sources", "extractor")
    transforms = bind_section("transforms", "transformer")
    sinks = bind_section("sinks", "loader")
    credentials = {}
    for name, cred in spec.credentials.items():
        result = _bind(
            host,
            "credential_provider",
            f"credentials.{name}",
            name,
            cred.provider,
            cred.options,
            issues,
            type_key="provider",
        )
        if result is not None:
            credentials[name] = result
    dead_letter = None
    if spec.errors.dead_letter is not None:
        dead_letter = _bind(
            host,
            "loader",
            "errors.dead_letter",
            "dead_letter",
            spec.errors.dead_letter.type,
            spec.errors.dead_letter.options,
            issues,
            spec.errors.dead_letter,
        )
    metrics = [
        b
        for i, block in enumerate(spec.metrics)
        if (
            b := _bind(
                host,
                "metrics_reporter",
                f"metrics[{i}]",
                block.type,
                block.type,
                block.options,
                issues,
                block,
            )
        )
        is not None
    ]
    state = _bind(
        host,
        "state_store",
        "state",
        "state",
        spec.state.type,
        spec.state.options,
        issues,
        spec.state,
    )

    for section, bound in (("sources", sources), ("transforms", transforms), ("sinks", sinks)):
        for name, item in bound.items():
            block = item.block
            assert block is not None
            if block.credentials is not None and block.credentials not in spec.credentials:
                issues.append(
                    _unknown_name(
                        f"{section}.{name}.credentials",
                        block.credentials,
                        spec.credentials,
                        "credentials",
                    )
                )
            if (
                isinstance(block, SourceSpec)
                and block.incremental is not None
                and ("incremental" not in item.component.capabilities)
            ):
                issues.append(
                    ConfigIssue(
                        f"{section}.{name}.incremental",
                        f"type {block.type!r} cannot read incrementally",
                        "remove `incremental` or use a type that supports it",
                    )
                )
            elif isinstance(block, SourceSpec):
                for problem in item.component().check(item.options, incremental=block.incremental):
                    issues.append(ConfigIssue(f"{section}.{name}", problem))
    every = [
        *sources.values(),
        *transforms.values(),
        *sinks.values(),
        *credentials.values(),
        *metrics,
        *([dead_letter] if dead_letter else []),
    ]
    for item in every:
        for path, ref in _secret_refs(item.options, item.path):
            try:
                host.component("credential_provider", ref.provider)
            except UnknownComponentError as exc:
                issues.append(ConfigIssue(path, str(exc).split("; ")[0], exc.hint))
    validations = {
        name: _bind_validation(name, block, spec.base_dir, host, issues)
        for name, block in spec.validate.items()
    }
    for name in spec.validate:
        if name in seen and seen[name].startswith("sinks."):
            issues.append(
                ConfigIssue(
                    f"validate.{name}",
                    f"{name!r} is a sink, not a dataset",
                    "validate the sink's input (a source or transform)",
                )
            )
        elif name not in seen:
            issues.append(
                _unknown_name(
                    f"validate.{name}", name, {**spec.sources, **spec.transforms}, "datasets"
                )
            )
    for name, item in transforms.items():
        inputs = spec.transforms[name].inputs
        low, high = item.component.inputs  # type: ignore[attr-defined]
        if inputs and not (low <= len(inputs) and (high is None or len(inputs) <= high)):
            wanted = (
                f"{low}"
                if low == high
                else f"at least {low}"
                if high is None
                else f"{low} to {high}"
            )
            issues.append(
                ConfigIssue(
                    f"transforms.{name}.inputs",
                    f"type {item.component.name!r} takes {wanted} input(s), got {len(inputs)}",
                )
            )
        for problem in item.component().check(inputs, item.options):  # type: ignore[attr-defined]
            issues.append(ConfigIssue(f"transforms.{name}", problem))
    plan, found = build_plan(
        list(spec.sources),
        {name: block.inputs for name, block in spec.transforms.items()},
        {name: block.input for name, block in spec.sinks.items()},
    )
    issues += found
    raise_if_any(issues, source=spec.source)
    assert state is not None and plan is not None
    return BoundPipeline(
        spec,
        sources,
        transforms,
        sinks,
        credentials,
        dead_letter,
        metrics,
        state,
        plan,
        validations,
    )


def _unknown_name(path: str, name: str, known: Mapping[str, Any], what: str) -> ConfigIssue:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        fix = f"did you mean {close[0]!r}?"
    else:
        fix = f"known {what}: {', '.join(sorted(known))}" if known else f"no {what} are defined"
    return ConfigIssue(path, f"{name!r} is not defined", fix)


def check(
    path: str | Path | None = None,
    *,
    host: PluginHost,
    data: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    base_dir: Path | None = None,
    allow_plaintext_secrets: bool = False,
) -> BoundPipeline:
    """Load and bind, reporting every mistake found in either step together."""
    issues: list[ConfigIssue] = []
    spec = load(path, data=data, overrides=overrides, base_dir=base_dir, issues=issues)
    token = allow_plaintext.set(allow_plaintext_secrets)
    try:
        return bind(spec, host, issues)
    finally:
        allow_plaintext.reset(token)
