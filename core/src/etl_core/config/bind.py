"""Binding a loaded pipeline to its components: each block's type resolved through the plugin
host, its options structured with the component's ``Options`` class, then one small check per
concern. Every issue is collected before raising."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from etl_core.api import LOAD_MODES
from etl_core.config import streams
from etl_core.config.convert import structure
from etl_core.config.model import (
    NAME,
    Block,
    Bound,
    BoundPipeline,
    PipelineSpec,
    SinkSpec,
    SourceSpec,
    TransformSpec,
)
from etl_core.config.plan import build_plan
from etl_core.config.schema import schema_problem, split_ddl
from etl_core.config.secrets import guard_secrets, secret_refs
from etl_core.config.validation import bind_validation
from etl_core.errors import ConfigIssue, UnknownComponentError, raise_if_any

if TYPE_CHECKING:
    from etl_core.plugins import PluginHost

#: the keys the core owns in each kind of block; the rest are the component's options
CORE_KEYS = {
    cls: tuple(f.name for f in attrs.fields(cls) if f.name != "options")
    for cls in (SourceSpec, TransformSpec, SinkSpec, Block)
}
NO_DEAD_LETTERS = "add `errors: {dead_letter: {type: files, path: dlq/}}`"
#: the options that say where a sink writes (one or more, by connector)
TARGET_OPTIONS = ("connection", "bucket", "prefix", "table", "topic", "path")
DATASET_SECTIONS = (("sources", "extractor"), ("transforms", "transformer"), ("sinks", "loader"))


def bind(
    spec: PipelineSpec, host: PluginHost, issues: list[ConfigIssue] | None = None
) -> BoundPipeline:
    """Resolve every component and structure its options; raise all issues at once, with
    those already found in ``issues``."""
    issues = [] if issues is None else issues
    seen = _check_names(spec, issues)
    sources, transforms, sinks = (
        _bind_section(spec, section, kind, host, issues) for section, kind in DATASET_SECTIONS
    )
    credentials, dead_letter, metrics, state = _bind_support(spec, host, issues)
    datasets = [*sources.values(), *transforms.values(), *sinks.values()]
    _check_credential_names(spec, datasets, issues)
    _check_sources(sources, issues)
    _check_sinks(spec, sinks, issues)
    _check_transforms(spec, transforms, issues)
    writers = [*sinks.values(), *([dead_letter] if dead_letter else [])]
    _check_streaming(spec, sources, transforms, writers, issues)
    _check_secret_references(
        [
            *datasets, *credentials.values(), *metrics, *([dead_letter] if dead_letter else []),
        ],
        host,
        issues,
    )  # fmt: skip
    validations = {
        name: bind_validation(name, block, spec.base_dir, host, issues)
        for name, block in spec.validate.items()
    }
    _check_validated_names(spec, seen, issues)
    _check_targets(spec, sinks, issues)
    if spec.errors.dead_letter is None:
        issues += [
            ConfigIssue(
                f"validate.{name}.on_failure",
                "`quarantine` sends the rows that break a rule to the dead letters, and there "
                "is no dead-letter sink",
                NO_DEAD_LETTERS,
            )
            for name, block in spec.validate.items()
            if block.on_failure == "quarantine"
        ]
    plan, found = build_plan(
        list(spec.sources),
        {name: block.inputs for name, block in spec.transforms.items()},
        {name: block.input for name, block in spec.sinks.items()},
    )
    issues += found
    raise_if_any(issues, source=spec.source)
    assert state is not None and plan is not None
    return BoundPipeline(
        spec, sources, transforms, sinks, credentials, dead_letter, metrics, state, plan,
        validations,
    )  # fmt: skip


def _bind_support(
    spec: PipelineSpec, host: PluginHost, issues: list[ConfigIssue]
) -> tuple[dict[str, Bound], Bound | None, list[Bound], Bound | None]:
    """The components around the datasets: credentials, the dead-letter sink, the metrics
    reporters and the state store."""
    credentials = {
        name: bound
        for name, cred in spec.credentials.items()
        if (
            bound := _bind(
                host, "credential_provider", f"credentials.{name}", name, cred.provider,
                cred.options, issues, type_key="provider",
            )
        )
        is not None
    }  # fmt: skip
    dead_letter = None
    if spec.errors.dead_letter is not None:
        block = spec.errors.dead_letter
        dead_letter = _bind(
            host, "loader", "errors.dead_letter", "dead_letter", block.type, block.options,
            issues, block,
        )  # fmt: skip
    metrics = [
        bound
        for i, block in enumerate(spec.metrics)
        if (
            bound := _bind(
                host, "metrics_reporter", f"metrics[{i}]", block.type, block.type, block.options,
                issues, block,
            )
        )
        is not None
    ]  # fmt: skip
    state = _bind(
        host, "state_store", "state", "state", spec.state.type, spec.state.options, issues,
        spec.state,
    )  # fmt: skip
    return credentials, dead_letter, metrics, state


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
    """One block: its component resolved, its options structured strictly."""
    try:
        component = host.component(kind, type_name)
    except UnknownComponentError as exc:
        issues.append(ConfigIssue(f"{path}.{type_key}", str(exc).split("; ")[0], exc.hint))
        return None
    known = CORE_KEYS.get(type(block), ()) if block is not None else (type_key,)
    if type_key == "type":  # component options; a credentials entry holds only references
        raw = guard_secrets(raw, path, issues)
    options, found = structure(dict(raw), component.Options, path, also_known=known)
    issues += found
    return None if found else Bound(path, name, component, options, block)


def _bind_section(
    spec: PipelineSpec, section: str, kind: str, host: PluginHost, issues: list[ConfigIssue]
) -> dict[str, Bound]:
    bound = {}
    for name, block in getattr(spec, section).items():
        if name in spec.broken:
            continue
        path = f"{section}.{name}"
        result = _bind(host, kind, path, name, block.type, block.options, issues, block)
        if result is not None:
            bound[name] = result
    return bound


def _check_names(spec: PipelineSpec, issues: list[ConfigIssue]) -> dict[str, str]:
    """Every source, transform and sink has a valid name of its own. Returns name → path."""
    seen: dict[str, str] = {}
    for section, _ in DATASET_SECTIONS:
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
    return seen


def _check_credential_names(
    spec: PipelineSpec, items: Iterable[Bound], issues: list[ConfigIssue]
) -> None:
    for item in items:
        name = item.block.credentials if item.block is not None else None
        if name is not None and name not in spec.credentials:
            issues.append(
                unknown_name(f"{item.path}.credentials", name, spec.credentials, "credentials")
            )


def _check_sources(sources: Mapping[str, Bound], issues: list[ConfigIssue]) -> None:
    """``incremental:`` only where the extractor can, then the extractor's own check."""
    for item in sources.values():
        block = item.block
        assert isinstance(block, SourceSpec)
        if block.incremental is not None and "incremental" not in item.component.capabilities:
            issues.append(
                ConfigIssue(
                    f"{item.path}.incremental",
                    f"type {block.type!r} cannot read incrementally",
                    "remove `incremental` or use a type that supports it",
                )
            )
            continue
        for problem in item.component().check(item.options, incremental=block.incremental):
            issues.append(ConfigIssue(item.path, problem))
        problem = schema_problem(block.read_schema)
        if problem:
            issues.append(
                ConfigIssue(
                    f"{item.path}.read_schema",
                    problem,
                    "write Spark SQL DDL: `id BIGINT, price DECIMAL(10,2), tags ARRAY<STRING>`",
                )
            )


def _check_streaming(
    spec: PipelineSpec,
    sources: Mapping[str, Bound],
    transforms: Mapping[str, Bound],
    writers: list[Bound],
    issues: list[ConfigIssue],
) -> None:
    """A streaming pipeline streams one source (the others `static: true`) into sinks that
    can take micro-batches; the streaming keys belong to streaming pipelines only."""
    if spec.execution != "streaming":
        keys = ("trigger", "checkpoint", "output_mode")
        only_streaming = [key for key in keys if getattr(spec, key) is not None]
        only_streaming += [f"sources.{n}.static" for n, b in spec.sources.items() if b.static]
        only_streaming += [
            f"{section}.{name}.watermark"
            for section, blocks in (("sources", spec.sources), ("transforms", spec.transforms))
            for name, block in blocks.items()
            if block.watermark is not None
        ]
        for path in only_streaming:
            key = path.rpartition(".")[2]
            issues.append(ConfigIssue(path, "only for `execution: streaming`", f"remove `{key}`"))
        return
    streamed = [item for item in sources.values() if not item.block.static]  # type: ignore[union-attr]
    if len(streamed) != 1:
        names = ", ".join(item.name for item in streamed) or "none"
        issues.append(
            ConfigIssue(
                "sources",
                f"a streaming pipeline streams exactly one source (streamed here: {names})",
                "mark the sources read as lookup tables `static: true` (read anew for each "
                "micro-batch)",
            )
        )
    for item in streamed:
        if "streaming" not in item.component.capabilities:
            issues.append(
                ConfigIssue(
                    f"{item.path}.type",
                    f"type {item.component.name!r} cannot stream",
                    "mark it `static: true` to read it anew for each micro-batch, or stream "
                    "another source (files, kafka)",
                )
            )
    for item in sources.values():
        if item.block.incremental is not None:  # type: ignore[union-attr]
            issues.append(
                ConfigIssue(
                    f"{item.path}.incremental",
                    "a streaming pipeline keeps its place in the stream in its checkpoint",
                    "remove `incremental`",
                )
            )
    for item in transforms.values():
        if not {"streaming", "stateful"} & item.component.capabilities:
            issues.append(
                ConfigIssue(
                    f"{item.path}.type",
                    f"type {item.component.name!r} works on a whole dataset: in a stream it "
                    "would see one micro-batch at a time",
                    "run it in a batch pipeline over the stream's output, or use `window`, "
                    "`deduplicate` or `aggregate`, which keep state across micro-batches",
                )
            )
    _check_event_time(spec, transforms, issues)
    for item in writers:
        if "streaming" not in item.component.capabilities:
            issues.append(
                ConfigIssue(
                    f"{item.path}.type",
                    f"type {item.component.name!r} cannot take micro-batches",
                    "write the stream to a sink that declares `streaming` (files, s3, "
                    "postgres, mysql, kafka)",
                )
            )


def _declared_type(block: Any, column: str) -> str | None:
    """The type a source's ``read_schema`` declares for ``column``, if it declares one."""
    schema = getattr(block, "read_schema", None)
    if isinstance(schema, str):
        try:
            return next((c.type for c in split_ddl(schema) if c.name == column), None)
        except ValueError:  # reported at `read_schema`
            return None
    columns = schema if isinstance(schema, list) else []
    return next((str(c.get("type")) for c in columns if c.get("name") == column), None)


def sink_target(item: Bound, base_dir: Path) -> dict[str, Any]:
    """Where a sink writes, from its options (:data:`TARGET_OPTIONS` it has): a `files`
    path resolved against ``base_dir``. Empty when its options name none."""
    where = {
        key: getattr(item.options, key)
        for key in TARGET_OPTIONS
        if getattr(item.options, key, None) not in (None, "")
    }
    if item.component.name == "files" and isinstance(where.get("path"), str):
        where["path"] = str((base_dir / Path(where["path"]).expanduser()).resolve())
    return where


def describe_target(where: Mapping[str, Any]) -> str:
    """``sink_target`` for people: ``path out/x`` (relative to the working directory when
    under it), ``bucket b, prefix p``, ``table s.t``."""
    shown = dict(where)
    path = shown.get("path")
    if isinstance(path, str) and Path(path).is_absolute():
        with contextlib.suppress(ValueError):
            shown["path"] = str(Path(path).relative_to(Path.cwd()))
    return ", ".join(f"{k} {v}" for k, v in shown.items() if k != "connection")


def _check_targets(
    spec: PipelineSpec, sinks: Mapping[str, Bound], issues: list[ConfigIssue]
) -> None:
    """Two sinks of a run cannot write one target: one's publish would replace or hide the
    other's (files and s3 publish a folder's manifest; tables take one ledger row a sink)."""
    seen: dict[tuple[Any, ...], str] = {}
    for name, item in sinks.items():
        where = sink_target(item, spec.base_dir)
        if not where:
            continue
        key = (item.component.name, *(str(v) for v in where.values()))
        if key in seen:
            issues.append(
                ConfigIssue(
                    item.path,
                    f"it writes the same target as sinks.{seen[key]} ({describe_target(where)}): "
                    "one sink's publish would replace or hide the other's",
                    "give each sink its own target, or write one dataset (a `union`)",
                )
            )
        seen.setdefault(key, name)


def _check_event_time(
    spec: PipelineSpec, transforms: Mapping[str, Bound], issues: list[ConfigIssue]
) -> None:
    """Watermarks on the stream's rows only; each stateful transform fit for the output mode
    and its input's watermark; rows kept in the query's state are never quarantined."""
    reached = streams.streamed(spec)
    for section, blocks in (("sources", spec.sources), ("transforms", spec.transforms)):
        for name, block in blocks.items():
            path = f"{section}.{name}.watermark"
            if block.watermark is None:
                continue
            if name not in reached:
                issues.append(
                    ConfigIssue(
                        path,
                        "a watermark tracks the event time of the streamed rows; "
                        f"{name!r} does not read the stream",
                        "move it to the streamed source or a transform that reads it",
                    )
                )
            elif (
                kind := _declared_type(block, block.watermark.column)
            ) and not kind.upper().startswith("TIMESTAMP"):
                issues.append(
                    ConfigIssue(
                        f"{path}.column",
                        f"{block.watermark.column!r} is declared {kind}, not a timestamp: event "
                        "time must be a timestamp",
                        "declare it TIMESTAMP in `read_schema`",
                    )
                )
            if block.watermark.late == "dead_letter" and spec.errors.dead_letter is None:
                issues.append(
                    ConfigIssue(
                        f"{path}.late",
                        "`late: dead_letter` sends late rows to the dead letters, and there "
                        "is no dead-letter sink",
                        NO_DEAD_LETTERS,
                    )
                )
    mode = spec.output_mode or "append"
    stateful = streams.stateful(spec, transforms)
    for name in stateful:
        item = transforms[name]
        before = sorted(n for n in streams.in_query(spec, {name: item}) if n in stateful)
        if before != [name]:
            issues.append(
                ConfigIssue(
                    item.path,
                    f"it reads the output of {', '.join(n for n in before if n != name)}, which "
                    "keeps state too: one stateful transform after another is not supported "
                    "in a stream (Spark moves the watermark between them a batch late)",
                    "read the stream (or a row-by-row transform of it) directly, or run the "
                    "second one in a pipeline that reads the first one's output",
                )
            )
            continue
        inputs = streams.streamed_inputs(spec, name)
        found = streams.watermark_of(spec, inputs[0]) if len(inputs) == 1 else None
        watermark = found[1].column if found is not None else None
        for problem in item.component().stream_problems(
            item.options, watermark=watermark, output_mode=mode
        ):
            issues.append(ConfigIssue(item.path, problem))
    for name in sorted(streams.in_query(spec, transforms)):
        checks = spec.validate.get(name)
        if checks is not None and checks.on_failure == "quarantine":
            issues.append(
                ConfigIssue(
                    f"validate.{name}.on_failure",
                    f"{name!r} feeds a stateful transform, which keeps every row in the "
                    "stream's state before rules run: its rows cannot be quarantined",
                    "check the stateful transform's output instead, or use `on_failure: "
                    "abort` or `continue`",
                )
            )


def sink_mode(block: SinkSpec, modes: Iterable[str], execution: str) -> str | None:
    """The load mode a sink runs with: its ``mode``, else the loader's first mode that exists
    in this execution (``None`` when there is none)."""
    if block.mode is not None:
        return block.mode
    return next((m for m in modes if execution in LOAD_MODES[m].executions), None)


def _check_sinks(spec: PipelineSpec, sinks: dict[str, Bound], issues: list[ConfigIssue]) -> None:
    """``mode`` and the keys it needs (DESIGN §5), against the modes the loader declares. Each
    bound sink's block gets its mode filled in (the loader's default when it names none)."""
    for name, item in sinks.items():
        block = item.block
        assert isinstance(block, SinkSpec)
        supported = [m for m in item.component.modes if m in LOAD_MODES]
        listed = ", ".join(supported)
        mode = sink_mode(block, supported, spec.execution)
        if mode is not None:
            sinks[name] = attrs.evolve(item, block=attrs.evolve(block, mode=mode))
        at = f"{item.path}.mode"
        if mode is None:
            issues.append(
                ConfigIssue(
                    at,
                    f"type {block.type!r} has no load mode for `execution: {spec.execution}`",
                    f"its modes: {listed}",
                )
            )
            continue
        if mode not in supported:
            close = difflib.get_close_matches(mode, supported, n=1)
            issues.append(
                ConfigIssue(
                    at,
                    f"{mode!r} is not one of {listed} (the modes type {block.type!r} supports)",
                    f"did you mean {close[0]!r}?" if close else None,
                )
            )
            continue
        load_mode = LOAD_MODES[mode]
        if spec.execution not in load_mode.executions:
            usable = [m for m in supported if spec.execution in LOAD_MODES[m].executions]
            issues.append(
                ConfigIssue(
                    at,
                    f"mode {mode!r} does not exist in `execution: {spec.execution}`",
                    f"use one of: {', '.join(usable)}",
                )
            )
        if "key" in load_mode.needs and not block.key:
            issues.append(
                ConfigIssue(
                    f"{item.path}.key",
                    f"`mode: {mode}` needs `key: [column, ...]`",
                    "list the columns of the target's primary key or of a unique index",
                )
            )
        elif block.key and "key" not in load_mode.needs:
            users = ", ".join(m for m in supported if "key" in LOAD_MODES[m].needs)
            issues.append(
                ConfigIssue(
                    f"{item.path}.key",
                    f"`key` is not used by `mode: {mode}`",
                    f"remove it, or use a mode that takes a key ({users or 'none here'})",
                )
            )
        key = tuple(block.key or ())
        for problem in item.component().check(item.options, mode=mode, key=key):
            issues.append(ConfigIssue(item.path, problem))


def _check_transforms(
    spec: PipelineSpec, transforms: Mapping[str, Bound], issues: list[ConfigIssue]
) -> None:
    """The number of inputs each transformer takes, then the transformer's own check."""
    for name, item in transforms.items():
        inputs = spec.transforms[name].inputs
        low, high = item.component.inputs
        if inputs and not (low <= len(inputs) and (high is None or len(inputs) <= high)):
            if low == high:
                wanted = f"{low}"
            else:
                wanted = f"at least {low}" if high is None else f"{low} to {high}"
            issues.append(
                ConfigIssue(
                    f"{item.path}.inputs",
                    f"type {item.component.name!r} takes {wanted} input(s), got {len(inputs)}",
                )
            )
        for problem in item.component().check(inputs, item.options):
            issues.append(ConfigIssue(item.path, problem))


def _check_secret_references(
    items: Iterable[Bound], host: PluginHost, issues: list[ConfigIssue]
) -> None:
    """Every inline ``{secret: "<provider>:..."}`` names a known credential provider."""
    for item in items:
        for path, ref in secret_refs(item.options, item.path):
            try:
                host.component("credential_provider", ref.provider)
            except UnknownComponentError as exc:
                issues.append(ConfigIssue(path, str(exc).split("; ")[0], exc.hint))


def _check_validated_names(
    spec: PipelineSpec, seen: Mapping[str, str], issues: list[ConfigIssue]
) -> None:
    """``validate:`` names datasets (sources and transforms), not sinks."""
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
            datasets = {**spec.sources, **spec.transforms}
            issues.append(unknown_name(f"validate.{name}", name, datasets, "datasets"))


def unknown_name(path: str, name: str, known: Mapping[str, Any], what: str) -> ConfigIssue:
    """``name`` is not among ``known``: a did-you-mean, or the known names."""
    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        fix = f"did you mean {close[0]!r}?"
    else:
        fix = f"known {what}: {', '.join(sorted(known))}" if known else f"no {what} are defined"
    return ConfigIssue(path, f"{name!r} is not defined", fix)
