"""The runner: the one place that turns a plan into Spark actions, with the run commit protocol.

1. Stage: every sink (and the dead letters) stages its rows; counts are observed in the same
   actions. 2. Check. 3. Publish: dead letters, then sinks in order, then bookmarks.
Any failure before publishing discards every staging, so nothing becomes visible.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from etl_core.api import (
    Context,
    CredentialProvider,
    LiveRuns,
    Loader,
    RunMetrics,
    Secret,
    SecretRef,
    Staged,
    StageMetrics,
)
from etl_core.config import Bound, BoundPipeline, ConfigError, SourceSpec
from etl_core.errors import (
    ConfigIssue,
    EtlError,
    LoadError,
    RunFailed,
    RunLocked,
    SecretError,
    short_error,
)
from etl_core.plugins import PluginHost

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Observation, SparkSession

log = logging.getLogger("etl.run")

Progress = Callable[[str], None]


def run_key(pipeline: str, run_id: str) -> str:
    return hashlib.sha256(f"{pipeline}\x00{run_id}".encode()).hexdigest()[:12]


@contextmanager
def run_lock(base_dir: Path, key: str) -> Iterator[Path]:
    """Hold ``.etl/runs/<run_key>.lock`` exclusively while the run is live."""
    path = base_dir / ".etl" / "runs" / f"{key}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RunLocked(
                f"run {key} is already running (lock {path}); wait for it or use another --run-id"
            ) from exc
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)


def live_runs(base_dir: Path) -> LiveRuns:
    """Which runs beside this pipeline are live (their lock is held) or known dead (their lock
    file is left but free: the process died, e.g. by SIGKILL)."""
    live, dead = set(), set()
    for path in sorted((base_dir / ".etl" / "runs").glob("*.lock")):
        with path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                live.add(path.stem)
                continue
            dead.add(path.stem)
            fcntl.flock(handle, fcntl.LOCK_UN)
    return LiveRuns(frozenset(live), frozenset(dead))


def clean_stale(
    bound: BoundPipeline,
    host: PluginHost,
    spark: SparkSession | None = None,
    secrets: _Secrets | None = None,
) -> list[str]:
    """Ask every sink (and the dead-letter sink) to drop staging of runs that are not live,
    then forget the dead runs' lock files. Returns what was dropped."""
    spec = bound.spec
    runs = live_runs(spec.base_dir)
    own_secrets = secrets is None
    secrets = secrets or _Secrets(bound, host)
    dropped: list[str] = []
    items = [*bound.sinks.values(), *([bound.dead_letter] if bound.dead_letter else [])]
    try:
        for index, item in enumerate(items):
            ctx = Context(
                spark=spark,  # type: ignore[arg-type]  # cleaning needs no session
                pipeline=spec.name,
                run_id="clean",
                run_key="",
                base_dir=spec.base_dir,
                dataset=item.name,
                component=item.component.name,
                sink_index=index,
            )
            try:
                dropped += item.component().clean_stale(ctx, secrets.options_for(item), runs)
            except Exception as exc:  # noqa: BLE001 - cleaning is best effort, never fatal
                message = secrets.redact(str(exc))
                log.warning("etl: could not clean stale staging of %s: %s", item.path, message)
    finally:
        if own_secrets:
            secrets.close()
    for key in runs.dead:
        (spec.base_dir / ".etl" / "runs" / f"{key}.lock").unlink(missing_ok=True)
    return dropped


def schema_ddl(read_schema: str | list[dict[str, Any]] | None) -> str | None:
    """A ``read_schema`` as DDL: a DDL string as is, or a list of ``{name, type, nullable}``."""
    if read_schema is None or isinstance(read_schema, str):
        return read_schema
    return ", ".join(
        f"`{c['name']}` {c['type']}{'' if c.get('nullable', True) else ' NOT NULL'}"
        for c in read_schema
    )


class _Secrets:
    """Resolves credentials once per run and remembers the values, to redact them from errors."""

    def __init__(self, bound: BoundPipeline, host: PluginHost):
        self._bound, self._host = bound, host
        self._entries: dict[str, Mapping[str, Secret]] = {}
        self._references: dict[tuple[str, str], Mapping[str, Secret]] = {}
        self._providers: dict[str, CredentialProvider] = {}
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
        for provider in self._providers.values():
            try:
                provider.close()
            except Exception as exc:  # noqa: BLE001 - releasing leases must not hide the result
                message = self.redact(str(exc))
                log.warning("etl: could not release credentials of %s: %s", provider.name, message)


@attrs.define(eq=False)
class _Staging:
    item: Bound
    loader: Loader
    options: Any
    ctx: Context
    handle: Staged
    dead_letter: bool


@attrs.define
class _Run:
    """The state of one run while it is live."""

    bound: BoundPipeline
    host: PluginHost
    spark: SparkSession
    run_id: str
    key: str
    secrets: _Secrets
    progress: Progress
    metrics: RunMetrics
    bookmarks: dict[str, Any] = attrs.field(factory=dict)
    proposed: dict[str, Any] = attrs.field(factory=dict)
    frames: dict[str, DataFrame] = attrs.field(factory=dict)
    observations: list[tuple[StageMetrics, Observation]] = attrs.field(factory=list)
    dead_letters: dict[str, list[DataFrame]] = attrs.field(factory=dict)
    persisted: list[DataFrame] = attrs.field(factory=list)
    staged: list[_Staging] = attrs.field(factory=list)

    @property
    def spec(self) -> Any:
        return self.bound.spec

    def context(self, item: Bound, **extra: Any) -> Context:
        return Context(
            spark=self.spark,
            pipeline=self.spec.name,
            run_id=self.run_id,
            run_key=self.key,
            base_dir=self.spec.base_dir,
            dataset=item.name,
            component=item.component.name,
            dead_letter=self._route_dead_letters,
            **extra,
        )

    def _route_dead_letters(self, stage: str, dataset: str, component: str, df: DataFrame) -> None:
        from pyspark.sql import functions as F

        if "source_position" not in df.columns:
            df = df.withColumn("source_position", F.lit(None).cast("string"))
        records = df.select(
            F.lit(self.spec.name).alias("pipeline"),
            F.lit(self.run_id).alias("run_id"),
            F.lit(stage).alias("stage"),
            F.lit(component).alias("component"),
            F.lit(dataset).alias("dataset"),
            "errors",
            F.current_timestamp().alias("timestamp"),
            "source_position",
            "row",
        )
        self.dead_letters.setdefault(stage, []).append(records)

    def observe(self, df: DataFrame, dataset: str, stage: str, component: str) -> DataFrame:
        from pyspark.sql import Observation
        from pyspark.sql import functions as F

        metrics = StageMetrics(dataset=dataset, stage=stage, component=component)
        self.metrics.stages.append(metrics)
        observation = Observation(f"etl_{self.key}_{len(self.observations)}")
        self.observations.append((metrics, observation))
        return df.observe(observation, F.count(F.lit(1)).alias("rows"))

    def build(self) -> None:
        """Build every dataset that feeds a sink, lazily; analysis errors surface here."""
        plan = self.bound.plan
        for name in plan.unused:
            log.warning("etl: dataset %r feeds no sink and is not computed", name)
        needed = plan.needed()
        for name in needed:
            routed_before = sum(len(frames) for frames in self.dead_letters.values())
            item, stage, df = self.dataset(name)
            self.frames[name] = df = self.observe(df, name, stage, item.component.name)
            if sum(n in needed or n in plan.sinks for n in plan.consumers(name)) > 1:
                self._persist(name)
            if sum(len(frames) for frames in self.dead_letters.values()) > routed_before:
                # its inputs now feed two writes (its output and the dead letters)
                for input_name in plan.nodes[name].inputs:
                    self._persist(input_name)
        if self.dead_letters and self.bound.dead_letter is None:
            raise RunFailed(
                f"datasets route rejected rows ({', '.join(sorted(self.dead_letters))} stage) but "
                "no dead-letter sink is configured; add `errors: {dead_letter: {type: files, "
                "path: dlq/}}`"
            )

    def _persist(self, name: str) -> None:
        """Compute ``name`` once for all its writes. Spark matches cached plans when a job
        runs, so frames already derived from it use the cache too."""
        df = self.frames[name]
        if not any(df is done for done in self.persisted):
            self.persisted.append(df.persist())

    def dataset(self, name: str) -> tuple[Bound, str, DataFrame]:
        """Call the source's extractor or the transform's transformer for one dataset."""
        from pyspark.errors import AnalysisException

        item = self.bound.sources.get(name) or self.bound.transforms[name]
        options = self.secrets.options_for(item)
        try:
            if isinstance(item.block, SourceSpec):
                ctx = self.context(
                    item,
                    read_schema=schema_ddl(item.block.read_schema),
                    incremental=item.block.incremental,
                    bookmark=self.bookmarks.get(name),
                    propose_bookmark=self.proposed.__setitem__,
                )
                return item, "extract", item.component().extract(ctx, options)
            inputs = {i: self.frames[i] for i in self.spec.transforms[name].inputs}
            return (
                item,
                "transform",
                item.component().transform(self.context(item), inputs, options),
            )
        except AnalysisException as exc:
            message = short_error(exc).splitlines()[0]  # the rest is the plan
            raise ConfigError(
                ConfigIssue(item.path, message, "fix the expression or the column names")
            ) from None

    def _stage(
        self,
        item: Bound,
        loader: Loader,
        options: Any,
        index: int,
        df: DataFrame,
        dead_letter: bool = False,
    ) -> None:
        ctx = self.context(item, sink_index=index)
        # Registered before the action, so a failed stage is discarded with the others.
        entry = _Staging(
            item, loader, options, ctx, Staged(item.name, index, self.key), dead_letter
        )
        self.staged.append(entry)
        self.progress(f"staging {item.name} ({loader.name})")
        try:
            entry.handle = loader.stage(ctx, df, options)
        except EtlError:
            raise
        except Exception as exc:
            raise LoadError(f"{item.path}: staging failed: {short_error(exc)}") from exc

    def stage_all(self) -> None:
        sinks = self.bound.plan.sinks
        for index, name in enumerate(sinks):
            item = self.bound.sinks[name]
            df = self.observe(
                self.frames[self.spec.sinks[name].input], name, "load", item.component.name
            )
            self._stage(item, item.component(), self.secrets.options_for(item), index, df)
        dead_letter = self.bound.dead_letter
        if not self.dead_letters or dead_letter is None:
            return
        loader: Loader = dead_letter.component()
        for offset, (stage, frames) in enumerate(sorted(self.dead_letters.items())):
            records = frames[0]
            for more in frames[1:]:
                records = records.unionByName(more)
            name = f"dead_letter.{stage}"
            options = loader.dead_letter_options(
                self.secrets.options_for(dead_letter),
                pipeline=self.spec.name,
                run_key=self.key,
                stage=stage,
            )
            records = self.observe(records, name, "dead_letter", loader.name)
            sink = attrs.evolve(dead_letter, name=name, path=f"errors.dead_letter ({stage})")
            self._stage(sink, loader, options, len(sinks) + offset, records, dead_letter=True)

    def collect_counts(self) -> None:
        for metrics, observation in self.observations:
            rows = _observed_rows(observation)
            if metrics.stage == "dead_letter":
                self.metrics.dead_letters += rows or 0
                metrics.stage = "load"
                metrics.rows_out = rows
            elif metrics.stage == "load":
                metrics.rows_in = metrics.rows_out = rows
            else:
                metrics.rows_out = rows
        self.progress(
            "staged: "
            + ", ".join(
                f"{m.dataset}={m.rows_out}" for m in self.metrics.stages if m.stage == "load"
            )
        )

    def publish_all(self) -> None:
        for entry in sorted(self.staged, key=lambda e: not e.dead_letter):  # dead letters first
            self.progress(f"publishing {entry.item.name}")
            try:
                entry.loader.publish(entry.ctx, entry.handle, entry.options)
            except Exception as exc:
                done = ", ".join(self.metrics.published) or "none"
                raise RunFailed(
                    f"{entry.item.path}: publish failed: {short_error(exc)} (already published: "
                    f"{done}); rerun with --run-id {self.run_id} to publish the rest",
                    published=self.metrics.published,
                ) from exc
            self.metrics.published.append(entry.item.name)
            self.staged.remove(entry)
        if self.proposed:
            state = self.bound.state
            options = self.secrets.options_for(state)
            state.component().save(self.spec.base_dir, self.spec.name, self.proposed, options)

    def discard_all(self) -> None:
        for entry in self.staged:
            try:
                entry.loader.discard(entry.ctx, entry.handle, entry.options)
            except Exception as exc:  # noqa: BLE001 - keep discarding the others
                message = self.secrets.redact(str(exc))
                log.warning(
                    "etl: could not discard the staging of %s: %s", entry.item.name, message
                )
        self.staged.clear()


@contextmanager
def _inspection(
    bound: BoundPipeline, host: PluginHost, spark: SparkSession | None
) -> Iterator[_Run]:
    """A run-shaped context that builds datasets but never stages or publishes."""
    from etl_core.engine import get_spark

    spec = bound.spec
    spark = spark or get_spark(spec.engine, app_name=f"etl:{spec.name}")
    state = _Run(
        bound,
        host,
        spark,
        "inspect",
        run_key(spec.name, "inspect"),
        _Secrets(bound, host),
        lambda message: None,
        RunMetrics(pipeline=spec.name, run_id="inspect", run_key=""),
    )
    store = bound.state
    state.bookmarks = store.component().load(spec.base_dir, spec.name, store.options)
    try:
        for name in bound.plan.order:
            state.frames[name] = state.dataset(name)[2]
        yield state
    finally:
        state.secrets.close()


def build_datasets(
    bound: BoundPipeline, host: PluginHost, spark: SparkSession | None = None
) -> dict[str, DataFrame]:
    """Every dataset of the pipeline as a lazy DataFrame, for inspection (notebooks).
    Nothing is staged or published; analysis errors are raised as config errors."""
    with _inspection(bound, host, spark) as state:
        return state.frames


def explain(bound: BoundPipeline, host: PluginHost, spark: SparkSession | None = None) -> str:
    """The DAG as a tree, then each dataset's Spark plan (secrets redacted)."""
    import contextlib
    import io

    with _inspection(bound, host, spark) as state:
        parts = [dag_tree(bound), ""]
        for name, df in state.frames.items():
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                df.explain(extended=False)
            parts += [f"== {name} ==", buffer.getvalue().strip(), ""]
        return state.secrets.redact("\n".join(parts))


def dag_tree(bound: BoundPipeline) -> str:
    """Sinks at the top, each with what it reads below it."""
    plan = bound.plan
    lines = [f"{bound.spec.name}"]

    def label(name: str) -> str:
        node = plan.nodes[name]
        item = {**bound.sources, **bound.transforms, **bound.sinks}.get(name)
        kind = item.component.name if item else "?"
        unused = "  (feeds no sink)" if name in plan.unused else ""
        return f"{name} ({node.kind}: {kind}){unused}"

    def walk(name: str, prefix: str, last: bool) -> None:
        lines.append(f"{prefix}{'└── ' if last else '├── '}{label(name)}")
        inputs = plan.nodes[name].inputs
        for i, child in enumerate(inputs):
            walk(child, prefix + ("    " if last else "│   "), i == len(inputs) - 1)

    roots = [*plan.sinks, *(n for n in plan.unused if not plan.consumers(n))]
    for i, root in enumerate(roots):
        walk(root, "", i == len(roots) - 1)
    return "\n".join(lines)


def _observed_rows(observation: Observation, wait_s: float = 5.0) -> int | None:
    """The observed count, or ``None`` when no action computed that dataset (a transform may
    ignore one of its inputs); ``Observation.get`` alone would wait forever then."""
    future = getattr(getattr(observation, "_jo", None), "future", None)  # classic Spark only
    deadline = time.monotonic() + wait_s
    while future is not None and not future().isCompleted():
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)
    return observation.get.get("rows")


def run(
    bound: BoundPipeline,
    host: PluginHost,
    *,
    run_id: str | None = None,
    spark: SparkSession | None = None,
    progress: Progress | None = None,
) -> RunMetrics:
    """Run a bound pipeline once. Returns the metrics; raises :class:`EtlError` on failure
    (the metrics are then on the exception as ``exc.metrics``)."""
    spec = bound.spec
    run_id = run_id or str(uuid.uuid4())
    key = run_key(spec.name, run_id)
    say = progress or (lambda message: log.info("etl: %s", message))
    metrics = RunMetrics(pipeline=spec.name, run_id=run_id, run_key=key)
    secrets = _Secrets(bound, host)
    if spec.validate:
        log.warning("etl: `validate:` is accepted but not enforced by this version of etl-core")
    with run_lock(spec.base_dir, key):
        host.run_started(pipeline=spec.name, run_id=run_id, run_key=key)
        state: _Run | None = None
        try:
            if spark is None:
                from etl_core.engine import get_spark

                say("starting Spark")
                spark = get_spark(spec.engine, app_name=f"etl:{spec.name}")
            for dropped in clean_stale(bound, host, spark, secrets):
                say(f"removed stale staging {dropped}")
            state = _Run(bound, host, spark, run_id, key, secrets, say, metrics)
            store = bound.state
            options = secrets.options_for(store)
            state.bookmarks = store.component().load(spec.base_dir, spec.name, options)
            state.build()
            state.stage_all()
            state.collect_counts()
            state.publish_all()
            metrics.status = "succeeded"
        except BaseException as exc:
            metrics.status = "failed"
            metrics.error = secrets.redact(str(exc))
            if state is not None:
                state.discard_all()
            if not isinstance(exc, Exception) or isinstance(exc, ConfigError):
                raise
            failure = exc
            message = secrets.redact(str(exc) if isinstance(exc, EtlError) else short_error(exc))
            if not isinstance(exc, EtlError) or message != str(exc):
                failure = RunFailed(message, published=metrics.published)
            failure.metrics = metrics  # type: ignore[attr-defined]
            if failure is exc:
                raise
            raise failure from None
        finally:
            metrics.finished_at = dt.datetime.now(dt.UTC)
            if state is not None:
                for df in state.persisted:
                    df.unpersist()
            _report(bound, host, metrics, secrets)
            secrets.close()
    return metrics


def _report(bound: BoundPipeline, host: PluginHost, metrics: RunMetrics, secrets: _Secrets) -> None:
    for stage in metrics.stages:
        host.stage_finished(pipeline=metrics.pipeline, run_id=metrics.run_id, stage=stage)
    for item in bound.metrics:
        try:
            item.component().report(metrics, secrets.options_for(item))
        except Exception as exc:  # noqa: BLE001 - a reporter never fails the run
            message = secrets.redact(str(exc))
            log.warning("etl: metrics reporter %s failed: %s", item.component.name, message)
    host.run_finished(metrics=metrics)
