"""Options of the ``kafka`` source and sink (attrs classes, structured strictly by the core)."""

from __future__ import annotations

from typing import Any

import attrs

from etl_core import Secret, one_of, positive

FORMATS = ("bytes", "string", "json")
CLIENTS = ("confluent", "kafka-python")
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
ACKS = ("all", "1", "0")
COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")


def _offsets(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """``earliest``, ``latest``, or ``{topic: {partition: offset}}``."""
    from etl_core.options import ValueProblem

    if value in ("earliest", "latest"):
        return
    ok = isinstance(value, dict) and all(
        isinstance(parts, dict)
        and all(str(p).isdigit() and isinstance(o, int) and o >= 0 for p, o in parts.items())
        for parts in value.values()
    )
    if not ok:
        raise ValueProblem(
            f"{value!r}: use `earliest`, `latest`, or offsets per topic and partition, e.g. "
            "`{orders: {0: 1200, 1: 980}}`",
            attribute.name,
        )


@attrs.frozen
class Connection:
    #: ``host:port`` of one or more brokers, comma-separated
    bootstrap_servers: str
    security_protocol: str = attrs.field(default="PLAINTEXT", validator=one_of(*PROTOCOLS))
    #: with SASL_*: the mechanism; the login comes from `user` and `password`
    sasl_mechanism: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(one_of(*MECHANISMS))
    )
    #: with SSL/SASL_SSL: the CA file that signed the brokers' certificates
    ssl_cafile: str | None = None
    #: kafka-python only: the broker API version to assume, e.g. ``2.3.0`` (skips probing,
    #: which some brokers answer badly)
    api_version: str | None = None
    #: seconds to wait for the brokers before failing with a transient error
    timeout_s: float = attrs.field(default=10.0, validator=positive)


@attrs.frozen(kw_only=True)
class KafkaSourceOptions:
    connection: Connection
    #: the topics to read (or `pattern`)
    topics: list[str] = attrs.field(factory=list)
    #: or every topic whose name matches this regular expression
    pattern: str | None = None
    #: where each partition's read starts: ``earliest``, ``latest`` or explicit offsets
    starting_offsets: Any = attrs.field(default="earliest", validator=_offsets)
    #: where it ends (exclusive), fixed when the run plans its read: ``latest`` or explicit
    ending_offsets: Any = attrs.field(default="latest", validator=_offsets)
    #: ``bytes`` (key and value as binary), ``string`` (UTF-8) or ``json`` (the value's fields,
    #: declared by the source's `read_schema`, as columns)
    format: str = attrs.field(default="bytes", validator=one_of(*FORMATS))
    #: ``confluent`` (librdkafka, the default) or ``kafka-python`` (pure Python)
    client: str = attrs.field(default="confluent", validator=one_of(*CLIENTS))
    #: records per Spark partition: a larger topic partition is cut into several, smaller
    #: ones share one (read one after the other by one consumer). Default: the records to
    #: read spread evenly over the session's cores, at least 10,000 per split
    records_per_split: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(positive)
    )
    #: streaming: the most records a micro-batch reads, spread over the partitions
    max_records_per_batch: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(positive)
    )
    #: streaming: record each batch's end offsets as this consumer group's, for lag
    #: monitoring tools (the checkpoint alone decides what is read)
    group_id: str | None = None
    #: SASL login, from a `credentials:` entry
    user: Secret | None = None
    password: Secret | None = None

    def __attrs_post_init__(self) -> None:
        from etl_core.options import ValueProblem

        if bool(self.topics) == bool(self.pattern):
            raise ValueProblem("name the `topics` to read, or a `pattern`, not both", "topics")


@attrs.frozen(kw_only=True)
class KafkaSinkOptions:
    connection: Connection
    #: the topic to write (it must exist: topics are created by whoever owns the cluster)
    topic: str
    #: ``json`` (each row as a JSON object), ``string`` or ``bytes`` (the input's ``value``
    #: column, with its ``key`` and ``headers`` columns when it has them, as the source reads)
    format: str = attrs.field(default="json", validator=one_of(*FORMATS))
    #: the columns whose values make each record's key (one column: its text; several: a JSON
    #: object); records with the same key land in the same partition. Default: no key, or the
    #: input's ``key`` column with ``string``/``bytes``
    message_key: list[str] = attrs.field(factory=list)
    #: ``all`` (default: every in-sync replica has the record; the producer is idempotent),
    #: ``1`` (the leader has it) or ``0`` (sent, unconfirmed)
    acks: str | int = attrs.field(default="all", converter=str, validator=one_of(*ACKS))
    compression: str = attrs.field(default="none", validator=one_of(*COMPRESSIONS))
    #: how long the producer waits to fill a batch, in milliseconds
    linger_ms: int = attrs.field(default=5, validator=attrs.validators.ge(0))
    client: str = attrs.field(default="confluent", validator=one_of(*CLIENTS))
    #: where a run stages its rows until it publishes them (relative to the pipeline file); on
    #: a cluster, a folder the driver and every executor share
    staging: str = ".etl/staging/kafka"
    user: Secret | None = None
    password: Secret | None = None
