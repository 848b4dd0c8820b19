"""The ``kafka`` source: plans offset ranges on the driver, reads them on the executors."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from etl_core import (
    Context,
    Extractor,
    LiveRuns,
    Loader,
    LoadError,
    PermanentError,
    Preflight,
    Staged,
    datasources,
)
from etl_plugin_kafka.client import (
    META,
    META_DDL,
    ProducerSettings,
    Settings,
    backend,
    fill_splits,
    offset_of,
    reachable,
    translate,
)
from etl_plugin_kafka.options import Connection, KafkaSinkOptions, KafkaSourceOptions

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

#: the columns before the Kafka ones, by format (json: the value's fields, then the key)
KEY_VALUE = {"bytes": "key BINARY, value BINARY", "string": "key STRING, value STRING"}


#: the fewest records a split gets when `records_per_split` is not set
MIN_SPLIT = 10_000


class KafkaExtractor(Extractor):
    """Topics (or a pattern) as a batch: each partition's records from the starting to the
    ending offsets fixed when the run plans its read, split into Spark partitions. With
    ``incremental: {by: offset}`` a run starts where the last published one ended."""

    name = "kafka"
    Options = KafkaSourceOptions
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"batch", "partitioned_read", "incremental", "streaming"}
    )

    def endpoint(self, options: KafkaSourceOptions) -> str:
        return f"kafka://{options.connection.bootstrap_servers}"

    def check(self, options: KafkaSourceOptions, *, incremental: Any) -> list[str]:
        if incremental is None or dict(incremental) == {"by": "offset"}:
            return []
        return [
            f"`incremental: {dict(incremental)}`: kafka sources read incrementally by offset "
            "only; write `incremental: {by: offset}`"
        ]

    def preflight(self, ctx: Preflight, options: KafkaSourceOptions) -> None:
        """A broker answers, and the topics exist (or the pattern matches one)."""
        consumer = backend(_settings(options), options.client, "kafka")
        try:
            if not consumer.partitions(options.topics, options.pattern):
                raise PermanentError(f"no topic matches `pattern: {options.pattern}`")
        except Exception as exc:  # noqa: BLE001 - every client error becomes a typed one
            raise translate(exc, "kafka") from None
        finally:
            consumer.close()

    def extract(self, ctx: Context, options: KafkaSourceOptions) -> DataFrame:
        from etl_plugin_kafka.datasource import UNREADABLE, KafkaDataSource

        what = f"source {ctx.dataset!r} (kafka {', '.join(options.topics) or options.pattern})"
        capture = options.format == "json" and ctx.dead_letter_sink
        schema = self._schema(ctx, options, what)
        if capture:
            schema += f", {UNREADABLE} STRING"
        settings = _settings(options)
        splits, ends = self._plan(ctx, options, settings, what)
        if ctx.incremental is not None:
            ctx.propose_bookmark({**(ctx.bookmark or {}), **ends})
        if not splits:
            ctx.report_rows(0)  # empty: Spark may optimise a count of it away
            return ctx.spark.createDataFrame([], schema).drop(UNREADABLE)
        plan = {"client": options.client, "format": options.format, "splits": splits}
        source_options = {"plan": plan, **_connection_options(settings, what)}
        df = datasources.read(ctx.spark, KafkaDataSource, schema, source_options)
        return self._split(ctx, df) if capture else df

    def extract_stream(self, ctx: Context, options: KafkaSourceOptions) -> DataFrame:
        """The topics as a stream from ``starting_offsets`` (a restart resumes from the
        checkpoint), at most ``max_records_per_batch`` records a micro-batch."""
        from etl_plugin_kafka.datasource import UNREADABLE, KafkaDataSource

        what = f"source {ctx.dataset!r} (kafka {', '.join(options.topics) or options.pattern})"
        if options.ending_offsets != "latest":
            raise PermanentError(f"{what}: a stream has no end: remove `ending_offsets`")
        schema = self._schema(ctx, options, what)
        if options.format == "json" and ctx.dead_letter_sink:
            schema += f", {UNREADABLE} STRING"
        plan = {
            "client": options.client,
            "format": options.format,
            "topics": options.topics,
            "pattern": options.pattern,
            "starting_offsets": options.starting_offsets,
            "max_records": options.max_records_per_batch,
            "records_per_split": options.records_per_split,
            "parallelism": datasources.parallelism(ctx.spark),
            "group_id": options.group_id,
        }
        source_options = {"plan": plan, **_connection_options(_settings(options), what)}
        return datasources.read_stream(ctx.spark, KafkaDataSource, schema, source_options)

    def micro_batch(self, ctx: Context, options: KafkaSourceOptions, rows: DataFrame) -> DataFrame:
        from etl_plugin_kafka.datasource import UNREADABLE

        return self._split(ctx, rows) if UNREADABLE in rows.columns else rows

    @staticmethod
    def _split(ctx: Context, df: DataFrame) -> DataFrame:
        """Malformed JSON values (the marker column set) to the dead letters."""
        from pyspark.sql import functions as F

        from etl_plugin_kafka.datasource import UNREADABLE

        return datasources.split_unreadable(
            ctx,
            df,
            UNREADABLE,
            rule="malformed",
            message="malformed json record: the value is not a JSON object of the read schema",
            position=F.format_string("%s[%d]@%d", "topic", "partition", "offset"),
        )

    def _plan(
        self, ctx: Context, options: KafkaSourceOptions, settings: Settings, what: str
    ) -> tuple[list[list[list[Any]]], dict[str, dict[str, int]]]:
        """The splits to read, each a list of ranges ``[topic, partition, start, end]`` of
        ``records_per_split`` records in all (the last one fewer): the partitions' ranges one
        after the other, cut where a split is full, so that a large partition spreads over
        several splits and small ones share one, read by one consumer. Also each topic's
        partition end offsets (the bookmark of an incremental read)."""
        consumer = backend(settings, options.client, what)
        ranges: list[list[Any]] = []
        ends: dict[str, dict[str, int]] = {}
        try:
            for topic, partition in consumer.partitions(options.topics, options.pattern):
                low, high = consumer.watermarks(topic, partition)
                start = self._start(ctx, options, topic, partition, low, high)
                end = offset_of(options.ending_offsets, topic, partition, low, high,
                              "ending_offsets")  # fmt: skip
                start, end = max(start, low), min(end, high)
                ends.setdefault(topic, {})[str(partition)] = max(start, end)
                ranges.append([topic, partition, start, end])
        except Exception as exc:  # noqa: BLE001 - every client error becomes a typed one
            raise translate(exc, what) from None
        finally:
            consumer.close()
        total = sum(end - start for _, _, start, end in ranges)
        step = options.records_per_split or max(
            MIN_SPLIT, -(-total // datasources.parallelism(ctx.spark))
        )
        return fill_splits(ranges, step), ends

    @staticmethod
    def _start(
        ctx: Context, options: KafkaSourceOptions, topic: str, partition: int, low: int, high: int
    ) -> int:
        """Where the last published run ended (incremental), else ``starting_offsets``."""
        done = ((ctx.bookmark or {}) if ctx.incremental is not None else {}).get(topic, {})
        if str(partition) not in done:
            return offset_of(options.starting_offsets, topic, partition, low, high,
                           "starting_offsets")  # fmt: skip
        start = int(done[str(partition)])
        if start < low:
            ctx.log.warning(
                "source %r: %s[%d] offsets %d..%d were deleted by the topic's retention "
                "before this source read them",
                ctx.dataset, topic, partition, start, low - 1,
            )  # fmt: skip
        if start > high:
            ctx.log.warning(
                "source %r: the bookmark of %s[%d] (offset %d) lies past its end (%d): was the "
                "topic recreated? Records below offset %d are not read; remove the source's "
                "bookmark from the state store (.etl/state/ by default) to read them",
                ctx.dataset, topic, partition, start, high, start,
            )  # fmt: skip
        return start

    @staticmethod
    def _schema(ctx: Context, options: KafkaSourceOptions, what: str) -> str:
        if options.format != "json":
            return f"{KEY_VALUE[options.format]}, {META_DDL}"
        if not ctx.read_schema:
            raise PermanentError(
                f"{what}: `format: json` reads the value's fields as columns: declare them in "
                "the source's `read_schema`"
            )
        names = ctx.spark.createDataFrame([], ctx.read_schema).columns
        taken = [n for n in names if n in (*META, "key")]
        if taken:
            raise PermanentError(
                f"{what}: `read_schema` column(s) {', '.join(taken)} clash with the Kafka "
                "columns (key, topic, partition, offset, timestamp, headers); rename them"
            )
        return f"{ctx.read_schema}, key STRING, {META_DDL}"


def _settings(options: KafkaSourceOptions | KafkaSinkOptions) -> Settings:
    c: Connection = options.connection
    return Settings(
        c.bootstrap_servers, c.security_protocol, c.sasl_mechanism, c.ssl_cafile,
        c.api_version, c.timeout_s,
        options.user.reveal() if options.user is not None else None,
        options.password.reveal() if options.password is not None else None,
    )  # fmt: skip


def _connection_options(settings: Settings, what: str) -> dict[str, Any]:
    """The data source options that carry ``settings`` (the password apart, where Spark
    redacts it)."""
    public = attrs.asdict(attrs.evolve(settings, password=None))
    secret = json.dumps(settings.password)  # a string option travels as it is: encode it
    return {"connection": public, "secret": secret, "what": what}


#: the columns a sink stages: what each record is made of
WIRE_DDL = "key BINARY, value BINARY, headers ARRAY<STRUCT<key: STRING, value: BINARY>>"
#: the file that marks a staging complete (readers skip names starting with `_`)
STAGED = "_etl_staged"
#: JSON values keep every column (nulls too) and timestamps to the microsecond, in UTC
JSON_OPTIONS = {"ignoreNullFields": "false", "timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX"}
#: published runs are remembered this long, so that a rerun with the same `--run-id` skips
#: them (DESIGN §4: publishing twice is a no-op)
LEDGER_DAYS = 7


class KafkaLoader(Loader):
    """Stages the records (key, value, headers) as Parquet under ``staging``; publishes by
    producing them from the executors, then remembers the run. Kafka offers no transaction
    here: a publish that fails midway leaves what it produced, and the rerun produces it
    again (at-least-once)."""

    name = "kafka"
    Options = KafkaSinkOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"batch", "streaming"})
    modes: ClassVar[tuple[str, ...]] = ("append",)

    def endpoint(self, options: KafkaSinkOptions) -> str:
        return f"kafka://{options.connection.bootstrap_servers}"

    def check(self, options: KafkaSinkOptions, *, mode: str, key: Sequence[str]) -> list[str]:
        return []

    @staticmethod
    def _where(ctx: Context, options: KafkaSinkOptions) -> tuple[Path, Path, str]:
        root = ctx.path(options.staging)
        staging = root / "tmp" / ctx.run_key / str(ctx.sink_index or 0)
        ledger = root / "published" / f"{ctx.run_key}-{ctx.dataset}"
        return staging, ledger, f"sink {ctx.dataset!r} (kafka topic {options.topic})"

    def preflight(self, ctx: Preflight, options: KafkaSinkOptions) -> None:
        """A broker accepts a connection."""
        reachable(_settings(options), "kafka")

    def stage(self, ctx: Context, df: DataFrame, options: KafkaSinkOptions) -> Staged:
        staging, _, what = self._where(ctx, options)
        wire = _records(df, options, what)
        consumer = backend(_settings(options), options.client, what)
        try:  # the topic must exist before anything is staged for it
            consumer.partitions([options.topic], None)
        except Exception as exc:  # noqa: BLE001 - every client error becomes a typed one
            raise translate(exc, what) from None
        finally:
            consumer.close()
        shutil.rmtree(staging, ignore_errors=True)
        wire.write.parquet(str(staging))
        (staging / STAGED).touch()  # the write finished: what publish checks
        return Staged(ctx.dataset, ctx.sink_index or 0, ctx.run_key, {"staging": str(staging)})

    def publish(self, ctx: Context, staged: Staged, options: KafkaSinkOptions) -> None:
        """Produce the staged records in one Spark job (each task waits for its records'
        acknowledgements), then write the run into the ledger and drop the staging."""
        from etl_plugin_kafka.datasource import KafkaDataSource

        staging, ledger, what = self._where(ctx, options)
        if not ledger.exists():
            if not (staging / STAGED).exists():
                raise LoadError(
                    f"{what}: the staging of this run is gone or unfinished ({staging}); "
                    f"rerun with --run-id {ctx.run_id}"
                )
            produce = ProducerSettings(
                options.topic, str(options.acks), options.compression, options.linger_ms
            )
            source_options = {
                **_connection_options(_settings(options), what),
                "produce": attrs.asdict(produce),
                "client": options.client,
            }
            records = ctx.spark.read.schema(WIRE_DDL).parquet(str(staging))
            datasources.write(records, KafkaDataSource, source_options)
            ledger.parent.mkdir(parents=True, exist_ok=True)
            ledger.write_text(json.dumps({"run_id": ctx.run_id, "topic": options.topic}))
        self.discard(ctx, staged, options)

    def discard(self, ctx: Context, staged: Staged, options: KafkaSinkOptions) -> None:
        staging, _, _ = self._where(ctx, options)
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):  # only when empty: other sinks may still stage
            staging.parent.rmdir()

    def clean_stale(
        self, ctx: Context, options: KafkaSinkOptions, live_runs: LiveRuns
    ) -> list[str]:
        root = ctx.path(options.staging)
        dropped = []
        for run_dir in sorted((root / "tmp").glob("*")):
            if live_runs.stale(run_dir.name, run_dir.stat().st_mtime):
                shutil.rmtree(run_dir, ignore_errors=True)
                dropped.append(str(run_dir))
        expired = time.time() - LEDGER_DAYS * 86400
        for entry in (root / "published").glob("*"):
            if entry.stat().st_mtime < expired:
                entry.unlink(missing_ok=True)
        return dropped

    @classmethod
    def dead_letter_options(
        cls, options: KafkaSinkOptions, *, pipeline: str, run_key: str, stage: str
    ) -> KafkaSinkOptions:
        """Each dead-letter record (DESIGN §7) as one JSON value, without a key."""
        return attrs.evolve(options, format="json", message_key=[])


def _records(df: DataFrame, options: KafkaSinkOptions, what: str) -> DataFrame:
    """``df`` as the records to produce (:data:`WIRE_DDL`), failing before anything is staged
    when a column the format needs is missing or of the wrong type."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    types = dict(df.dtypes)
    missing = [c for c in options.message_key if c not in types]
    if missing:
        raise PermanentError(
            f"{what}: `message_key` column(s) {', '.join(missing)} not in the input; known: "
            f"{', '.join(df.columns)}"
        )
    no_headers = F.array().cast(T.ArrayType(T.StructType.fromDDL("key STRING, value BINARY")))
    if options.format == "json":
        row = F.struct(*[F.col(f"`{c}`") for c in df.columns])
        value = F.to_json(row, JSON_OPTIONS).cast("binary")
        key, headers = None, no_headers
    else:
        if "value" not in types:
            raise PermanentError(
                f"{what}: `format: {options.format}` writes the input's `value` column, which "
                f"it lacks (columns: {', '.join(df.columns)}); use `format: json` to write "
                "each row as a JSON object"
            )
        value = _as_bytes(types, "value", options.format, what)
        key = _as_bytes(types, "key", options.format, what) if "key" in types else None
        headers = F.col("headers") if "headers" in types else no_headers
    if options.message_key:
        columns = [F.col(f"`{c}`") for c in options.message_key]
        several = F.to_json(F.struct(*columns), JSON_OPTIONS)
        text = columns[0].cast("string") if len(columns) == 1 else several
        key = text.cast("binary")
    return df.select(
        (key if key is not None else F.lit(None).cast("binary")).alias("key"),
        value.alias("value"),
        headers.cast("array<struct<key: string, value: binary>>").alias("headers"),
    )


def _as_bytes(types: dict[str, str], column: str, fmt: str, what: str) -> Any:
    from pyspark.sql import functions as F

    wanted = "binary" if fmt == "bytes" else "string"
    if types[column] != wanted:
        raise PermanentError(
            f"{what}: `format: {fmt}` needs the `{column}` column as {wanted.upper()}, not "
            f"{types[column].upper()}; cast it in a transform"
        )
    return F.col(column).cast("binary")
