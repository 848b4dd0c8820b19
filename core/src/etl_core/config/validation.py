"""Binding the ``validate:`` blocks: each rule's validator resolved and its options structured,
its columns checked against the declared schema."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from etl_core.config.convert import structure
from etl_core.config.load import read_file
from etl_core.config.model import BoundRule, BoundValidation, ValidateSpec
from etl_core.config.schema import SchemaColumn, split_ddl
from etl_core.errors import ConfigError, ConfigIssue, UnknownComponentError

if TYPE_CHECKING:
    from etl_core.plugins import PluginHost

RULE_KEYS = ("severity", "name")
SEVERITIES = ("error", "warning", "info")


def bind_validation(
    name: str, spec: ValidateSpec, base_dir: Path, host: PluginHost, issues: list[ConfigIssue]
) -> BoundValidation:
    """One ``validate:`` block: its declared schema read, each rule bound and checked."""
    path = f"validate.{name}"
    schema = _declared_schema(spec.schema, f"{path}.schema", base_dir, issues)
    known_columns = {c.name for c in schema} if schema else None
    rules: list[BoundRule] = []
    for i, entry in enumerate(spec.rules):
        rule = _bind_rule(entry, f"{path}.rules[{i}]", host, known_columns, issues)
        if rule is not None:
            if any(r.name == rule.name for r in rules):
                rule = attrs.evolve(rule, name=f"{rule.name}#{i}")
            rules.append(rule)
    return BoundValidation(name, schema, spec.mode, spec.on_failure, rules)


def _declared_schema(
    value: Any, path: str, base_dir: Path, issues: list[ConfigIssue]
) -> list[SchemaColumn] | None:
    """A DDL string, a list of columns, or a YAML/JSON file holding that list."""
    if isinstance(value, str) and value.lower().endswith((".yaml", ".yml", ".json")):
        file = Path(value) if Path(value).is_absolute() else base_dir / value
        try:
            value = read_file(file)
        except ConfigError as exc:
            issues.append(
                ConfigIssue(
                    path,
                    str(exc.issues[0].message),
                    "give the schema file's path relative to the pipeline file",
                )
            )
            return None
    if isinstance(value, str):
        try:
            return split_ddl(value)
        except ValueError as exc:
            issues.append(ConfigIssue(path, str(exc)))
            return None
    if value is None:
        return None
    schema, found = structure(value, list[SchemaColumn], path)
    issues += found
    return schema


def _bind_rule(
    entry: dict[str, Any],
    at: str,
    host: PluginHost,
    known_columns: set[str] | None,
    issues: list[ConfigIssue],
) -> BoundRule | None:
    """One rule: exactly one rule type, a severity, options its validator accepts, and only
    columns the declared schema has."""
    kinds = [k for k in entry if k not in RULE_KEYS]
    if len(kinds) != 1:
        issues.append(
            ConfigIssue(
                at,
                f"a rule names exactly one rule type, got {kinds or 'none'}",
                "write e.g. `{not_null: [id], severity: warning}`",
            )
        )
        return None
    (kind,) = kinds
    severity = entry.get("severity", "error")
    if severity not in SEVERITIES:
        close = difflib.get_close_matches(str(severity), SEVERITIES, n=1)
        issues.append(
            ConfigIssue(
                f"{at}.severity",
                f"{severity!r} is not one of error, warning, info",
                f"did you mean {close[0]!r}?" if close else None,
            )
        )
        return None
    try:
        component = host.component("validator", str(kind))
    except UnknownComponentError as exc:
        message = str(exc).split("; ")[0].replace("validator type", "rule type")
        issues.append(ConfigIssue(f"{at}.{kind}", message, exc.hint))
        return None
    options, found = structure(component.shorthand(entry[kind]), component.Options, f"{at}.{kind}")
    issues += found
    if found:
        return None
    validator = component()
    issues += [ConfigIssue(f"{at}.{kind}", problem) for problem in validator.check(options)]
    columns = validator.columns(options)
    for column in columns:
        if known_columns is not None and column not in known_columns:
            issues.append(
                ConfigIssue(
                    f"{at}.{kind}",
                    f"column {column!r} is not in the declared schema",
                    f"declared columns: {', '.join(sorted(known_columns))}",
                )
            )
    rule_name = str(entry.get("name") or (f"{kind}({','.join(columns)})" if columns else kind))
    return BoundRule(at, rule_name, severity, component, options)
