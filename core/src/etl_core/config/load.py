"""Loading a pipeline file: read it (YAML, JSON or TOML), apply ``--set`` overrides and
``${ENV}`` interpolation, and structure the core model. Component options stay raw mappings
here; :mod:`etl_core.config.bind` structures them. Every issue is collected before raising.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml

from etl_core.config.convert import structure, unknown_key
from etl_core.config.model import (
    NAME,
    Block,
    CredentialSpec,
    EngineSpec,
    ErrorsSpec,
    PipelineSpec,
    SinkSpec,
    SourceSpec,
    TracingSpec,
    TransformSpec,
    TriggerSpec,
    ValidateSpec,
)
from etl_core.errors import ConfigError, ConfigIssue, raise_if_any

#: top-level sections structured one by one, so one bad section hides nothing else
_SECTIONS: dict[str, Any] = {
    "version": int,
    "name": str,
    "execution": str,
    "trigger": TriggerSpec,
    "checkpoint": str,
    "output_mode": str,
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


#: what a pipeline file may make YAML build: nodes with every alias expanded, and nesting
MAX_NODES = 100_000
MAX_DEPTH = 64


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false (YAML 1.1 would read a join's ``on:`` key as True).
    A key given twice in one mapping is an error, not the last one silently winning; nesting
    and aliases are capped (:data:`MAX_DEPTH`, :data:`MAX_NODES`): a small file cannot make
    the load take gigabytes, and a value cannot contain itself."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"values are nested more than {MAX_DEPTH} levels deep",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            _check_expansion(node)
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        first: dict[Any, Any] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            if key.value in first:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"the key {key.value!r} is given twice in one mapping (first on line "
                    f"{first[key.value].line + 1}); the second would replace the first",
                    key.start_mark,
                )
            first[key.value] = key.start_mark
        return super().construct_mapping(node, deep)


def _check_expansion(root: Any) -> None:
    """Every node counted as often as aliases repeat it: at most :data:`MAX_NODES`; and no
    node may contain itself (``&a {b: *a}``)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children = _children(node)
        if done:
            open_nodes.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[id(node)] > MAX_NODES:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"with its aliases expanded, this value holds more than {MAX_NODES:,} items",
                    node.start_mark,
                )
            continue
        if id(node) in sizes:
            continue
        open_nodes.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in open_nodes:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    "an alias here refers to a value that contains it (a value cannot contain "
                    "itself)",
                    child.start_mark,
                )
            if id(child) not in sizes:
                stack.append((child, False))


def _children(node: Any) -> list[Any]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def yaml_value(text: str, source: str) -> Any:
    """``text`` read as YAML (:class:`_YamlLoader`); errors name ``source`` and the line."""
    try:
        return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        raise ConfigError.at("", *_yaml_problem(exc, text, source)) from None
    except yaml.YAMLError as exc:  # e.g. a control character (no line to point at)
        problem = str(exc).split("\n", 1)[0].replace('"<unicode string>"', source)
        raise ConfigError.at("", f"cannot parse {source}: {problem}", "fix the text") from None
    except RecursionError:
        raise ConfigError.at(
            "", f"cannot parse {source}: values are nested too deep", "flatten the file"
        ) from None


def _yaml_problem(exc: yaml.MarkedYAMLError, text: str, source: str) -> tuple[str, str]:
    """The message and the fix for a YAML error: where (file, line, column) and what."""
    mark = exc.problem_mark or exc.context_mark
    where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark else source
    what = " ".join(p for p in (exc.context, exc.problem) if p)
    line = text.splitlines()[mark.line] if mark and mark.line < len(text.splitlines()) else ""
    if "${" in line and "{" in line.split("${", 1)[0]:
        fix = (
            'quote the value: `"${VAR}"` (inside `{...}` or `[...]`, a brace ends an unquoted '
            "value)"
        )
    elif "found character '\\t'" in what:
        fix = "indent with spaces, not tabs"
    else:
        fix = "fix the file's syntax"
    return f"cannot parse {where}: {what}", fix


def parse_text(text: str, *, suffix: str = ".yaml", source: str = "<text>") -> Any:
    try:
        if suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        if suffix == ".json":
            return json.loads(text)
    except (json.JSONDecodeError, ValueError) as exc:
        raise ConfigError.at("", f"cannot parse {source}: {exc}", "fix the file's syntax") from exc
    return yaml_value(text, source)


def read_file(path: str | Path) -> Any:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError.at(
            "", f"cannot read pipeline file {str(path)!r}: {exc.strerror}", "check the path"
        ) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        kind = (
            "gzip-compressed"
            if data[:2] == b"\x1f\x8b"
            else "UTF-16 text"
            if data[:2] in (b"\xff\xfe", b"\xfe\xff")
            else f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        )
        raise ConfigError.at(
            "", f"cannot read {path}: it is {kind}", "save the file as UTF-8 text"
        ) from None
    return parse_text(text, suffix=path.suffix.lower(), source=str(path))


#: the sections whose entries are named blocks: ``--set`` may change them, not add them
_NAMED_SECTIONS = ("sources", "transforms", "sinks", "validate", "credentials")


def apply_overrides(raw: Any, overrides: Sequence[str]) -> list[ConfigIssue]:
    """Apply ``--set a.b.c=value`` overrides in place (values are read as YAML scalars)."""
    issues = []
    for item in overrides:
        dotted, sep, text = item.partition("=")
        keys = [k for k in dotted.strip().split(".") if k]
        if not sep or not keys:
            issues.append(
                ConfigIssue(
                    f"--set {item}",
                    "expected PATH=VALUE",
                    "e.g. --set sources.orders.path=data/orders.csv",
                )
            )
            continue
        named = raw.get(keys[0]) if isinstance(raw, dict) else None
        named = {str(k): v for k, v in named.items()} if isinstance(named, dict) else {}
        if keys[0] in _NAMED_SECTIONS and len(keys) > 2 and keys[1] not in named:
            close = difflib.get_close_matches(keys[1], list(named), n=1, cutoff=0.6)
            issues.append(
                ConfigIssue(
                    f"--set {item}",
                    f"there is no {keys[0]} entry {keys[1]!r} in the file",
                    f"did you mean {keys[0]}.{close[0]}?"
                    if close
                    else "--set changes what the file holds; add new blocks in the file",
                )
            )
            continue
        try:
            value = yaml_value(text, f"--set {item}") if text else ""
        except ConfigError as exc:
            problem = exc.issues[0].message.split(": ", 1)[-1]
            issues.append(
                ConfigIssue(
                    f"--set {item}",
                    f"the value is not valid YAML: {problem}",
                    f"quote it as a string: --set '{dotted}=\"{text}\"'"
                    if text.isprintable()
                    else "remove the control characters from the value",
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
            node[keys[-1]] = value
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
        if isinstance(value, str):  # reported as "expected a list": read as one, for the plan
            return [value]
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
