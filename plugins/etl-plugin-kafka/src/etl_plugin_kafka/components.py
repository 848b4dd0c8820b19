"""The ``kafka`` source: plans offset ranges on the driver, reads them on the executors."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from etl_core import Context, Extractor, PermanentError, datasources
from etl_plugin_kafka.client import META, META_DDL, Settings, backend, translate
from etl_plugin_kafka.options import KafkaSourceOptions

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

#: the columns before the Kafka ones, by format (json: the value's fields, then the key)
KEY_VALUE = {"bytes": "key BINARY, value BINARY", "string": "key STRING, value STRING"}


def _offset(spec: Any, topic: str, partition: int, low: int, high: int, option: str) -> int:
    if spec == "earliest":
        return low
    if spec == "latest":
        return high
    offsets = {str(p): o for p, o in spec.get(topic, {}).items()}  # YAML keys: int or str
    if str(partition) not in offsets:
        raise PermanentError(
            f"`{option}` names no offset for {topic}[{partition}]; give one for every "
            "partition of the topics read, or use earliest/latest"
        )
    return int(offsets[str(partition)])


class KafkaExtractor(Extractor):
    """Topics (or a pattern) as a batch: each partition's records from the starting to the
    ending offsets fixed when the run plans its read, split into Spark partitions."""

    name = "kafka"
    Options = KafkaSourceOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"batch", "partitioned_read"})

    def extract(self, ctx: Context, options: KafkaSourceOptions) -> DataFrame:
        from etl_plugin_kafka.datasource import KafkaDataSource

        what = f"source {ctx.dataset!r} (kafka {', '.join(options.topics) or options.pattern})"
        schema = self._schema(ctx, options, what)
        settings = self._settings(options)
        consumer = backend(settings, options.client, what)
        try:
            splits = []
            for topic, partition in consumer.partitions(options.topics, options.pattern):
                low, high = consumer.watermarks(topic, partition)
                start = _offset(options.starting_offsets, topic, partition, low, high,
                                "starting_offsets")  # fmt: skip
                end = _offset(options.ending_offsets, topic, partition, low, high,
                              "ending_offsets")  # fmt: skip
                start, end = max(start, low), min(end, high)
                step = options.records_per_split
                for first in range(start, end, step):
                    splits.append([topic, partition, first, min(first + step, end)])
        except Exception as exc:  # noqa: BLE001 - every client error becomes a typed one
            raise translate(exc, what) from None
        finally:
            consumer.close()
        if not splits:
            ctx.report_rows(0)  # empty: Spark may optimise a count of it away
            return ctx.spark.createDataFrame([], schema)
        public = attrs.asdict(attrs.evolve(settings, password=None))
        plan = {"client": options.client, "format": options.format, "splits": splits}
        secret = json.dumps(settings.password)  # a string option travels as it is: encode it
        source_options = {"plan": plan, "connection": public, "secret": secret, "what": what}
        return datasources.read(ctx.spark, KafkaDataSource, schema, source_options)

    @staticmethod
    def _settings(options: KafkaSourceOptions) -> Settings:
        c = options.connection
        return Settings(
            c.bootstrap_servers, c.security_protocol, c.sasl_mechanism, c.ssl_cafile,
            c.api_version, c.timeout_s,
            options.user.reveal() if options.user is not None else None,
            options.password.reveal() if options.password is not None else None,
        )  # fmt: skip

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
