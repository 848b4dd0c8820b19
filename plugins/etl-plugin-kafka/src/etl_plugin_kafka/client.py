"""Talks to Kafka through one of two clients with one interface: ``confluent`` (librdkafka, the
default: about 20 times faster here) and ``kafka-python`` (pure Python). The driver lists
partitions and their offsets; each executor task fetches one offset range (the data source
turns it into Arrow batches). Imports no client and no pyarrow until used: ``etl plugins``
loads this module. Errors come out as the core's Transient/PermanentError, naming the block; no
message quotes a password (the clients' own texts carry none)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import attrs

from etl_core import EtlError, PermanentError, TransientError

#: records per Arrow batch a fetch yields
BATCH_RECORDS = 50_000
#: the Kafka columns every format has, after the key and value (or the value's fields)
META_DDL = "topic STRING, partition INT, offset BIGINT, timestamp TIMESTAMP, "
META_DDL += "headers ARRAY<STRUCT<key: STRING, value: BINARY>>"
META = ("topic", "partition", "offset", "timestamp", "headers")


@attrs.define
class Records:
    """Consecutive records of one partition, column by column (no object per record)."""

    keys: list[bytes | None] = attrs.field(factory=list)
    values: list[bytes | None] = attrs.field(factory=list)
    offsets: list[int] = attrs.field(factory=list)
    #: milliseconds since the epoch, or None
    timestamps: list[int | None] = attrs.field(factory=list)
    headers: list[Sequence[tuple[str, bytes | None]]] = attrs.field(factory=list)

    def __len__(self) -> int:
        return len(self.offsets)


@attrs.frozen
class Settings:
    """What a client needs, as plain values (it travels to the executors in the data source's
    options; the password under its own option, which Spark redacts from plans)."""

    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    ssl_cafile: str | None = None
    api_version: str | None = None
    timeout_s: float = 10.0
    user: str | None = None
    password: str | None = None


_TRANSIENT_CODES = {
    "_TRANSPORT",
    "_ALL_BROKERS_DOWN",
    "_TIMED_OUT",
    "_RESOLVE",
    "NETWORK_EXCEPTION",
    "REQUEST_TIMED_OUT",
    "LEADER_NOT_AVAILABLE",
    "NOT_LEADER_FOR_PARTITION",
    "NOT_LEADER_OR_FOLLOWER",
    "BROKER_NOT_AVAILABLE",
}
_TRANSIENT_TEXT = re.compile(
    r"NoBrokersAvailable|KafkaTimeoutError|timed out|Connection refused|KafkaConnectionError",
    re.I,
)


def offset_of(spec: Any, topic: str, partition: int, low: int, high: int, option: str) -> int:
    """Where ``spec`` (``earliest``, ``latest`` or ``{topic: {partition: offset}}``) puts
    ``topic[partition]``, whose offsets run from ``low`` to ``high``."""
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


def fill_splits(ranges: Sequence[Sequence[Any]], step: int) -> list[list[list[Any]]]:
    """The ranges ``[topic, partition, start, end]`` laid end to end and cut every ``step``
    records: the splits of a read, each read by one consumer, ``step`` records each (the last
    one fewer). A large partition spreads over several splits, small ones share one."""
    splits: list[list[list[Any]]] = []
    room = 0
    for topic, partition, start, end in ranges:
        while start < end:
            if room == 0:
                splits.append([])
                room = step
            take = min(room, end - start)
            splits[-1].append([topic, partition, start, start + take])
            start, room = start + take, room - take
    return splits


def translate(exc: BaseException, what: str) -> EtlError:
    """A client error as a typed one naming ``what``: transient for brokers that cannot be
    reached or moved leadership, permanent for the rest (auth, unknown topics, bad offsets)."""
    if isinstance(exc, EtlError):
        return exc
    code = ""
    error = exc.args[0] if exc.args else None
    if hasattr(error, "name"):  # confluent_kafka.KafkaError
        code = error.name()
        text = f"{code}: {error.str()}"
    else:
        text = f"{type(exc).__name__}: {exc}".strip()
    if code in _TRANSIENT_CODES or _TRANSIENT_TEXT.search(text):
        return TransientError(f"{what}: cannot reach the brokers ({text}); check `connection`")
    if "AUTH" in code.upper() or "Authentication" in text or "SASL" in text:
        return PermanentError(f"{what}: the brokers refused the login ({text})")
    return PermanentError(f"{what}: {text}")


def reachable(settings: Settings, what: str) -> None:
    """Fail at once, as transient, when no bootstrap server accepts a TCP connection (the
    clients otherwise retry for minutes, whatever their timeouts say)."""
    import socket

    for address in settings.bootstrap_servers.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), settings.timeout_s).close()
            return
        except (OSError, ValueError):
            continue
    raise TransientError(
        f"{what}: cannot reach any of the brokers {settings.bootstrap_servers}; check "
        "`connection.bootstrap_servers`"
    )


def _confluent_connection(settings: Settings) -> dict[str, Any]:
    """librdkafka's settings of the connection, the login among them."""
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "security.protocol": settings.security_protocol,
        "socket.timeout.ms": int(settings.timeout_s * 1000),
        "log_level": 2,
    }
    if settings.sasl_mechanism:
        conf["sasl.mechanisms"] = settings.sasl_mechanism
    if settings.user is not None:
        conf.update({"sasl.username": settings.user, "sasl.password": settings.password})
    if settings.ssl_cafile:
        conf["ssl.ca.location"] = settings.ssl_cafile
    return conf


def _kafka_python_connection(settings: Settings) -> dict[str, Any]:
    """kafka-python's arguments of the connection, the login among them."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "security_protocol": settings.security_protocol,
        "request_timeout_ms": int(settings.timeout_s * 1000) + 1000,
    }
    if settings.api_version:
        kwargs["api_version"] = tuple(int(p) for p in settings.api_version.split("."))
    if settings.sasl_mechanism:
        kwargs["sasl_mechanism"] = settings.sasl_mechanism
    if settings.user is not None:
        kwargs.update(sasl_plain_username=settings.user, sasl_plain_password=settings.password)
    if settings.ssl_cafile:
        kwargs["ssl_cafile"] = settings.ssl_cafile
    return kwargs


def _open(kind: Any, settings: Settings, what: str, *args: Any) -> Any:
    """``kind(settings, *args)`` once a broker answers; its errors typed, naming ``what``."""
    reachable(settings, what)
    try:
        return kind(settings, *args)
    except Exception as exc:  # noqa: BLE001 - every client error becomes a typed one
        raise translate(exc, what) from None


def backend(settings: Settings, client: str, what: str) -> Backend:
    """A consumer of ``client`` (``confluent`` or ``kafka-python``)."""
    return _open(ConfluentBackend if client == "confluent" else KafkaPythonBackend, settings, what)


def commit_offsets(
    settings: Settings, client: str, group: str, offsets: dict[str, dict[str, int]]
) -> None:
    """Record ``offsets`` (``{topic: {partition: next offset}}``) as consumer group ``group``'s
    position: for lag monitoring tools only, etl never reads from a group's offsets."""
    places = [(t, int(p), o) for t, parts in offsets.items() for p, o in parts.items()]
    if client == "confluent":
        from confluent_kafka import Consumer, TopicPartition

        conf = {**_confluent_connection(settings), "group.id": group, "enable.auto.commit": False}
        consumer = Consumer(conf)
        try:
            marks = [TopicPartition(t, p, o) for t, p, o in places]
            consumer.commit(offsets=marks, asynchronous=False)
        finally:
            consumer.close()
        return
    from kafka import KafkaConsumer
    from kafka import TopicPartition as Partition
    from kafka.structs import OffsetAndMetadata

    python_consumer = KafkaConsumer(
        **_kafka_python_connection(settings), group_id=group, enable_auto_commit=False
    )
    try:
        python_consumer.commit(
            {Partition(t, p): OffsetAndMetadata(o, "", -1) for t, p, o in places}
        )
    finally:
        python_consumer.close()


class Backend:
    """One client's consumer, assigned by hand: no consumer group, nothing committed."""

    def partitions(self, topics: Sequence[str], pattern: str | None) -> list[tuple[str, int]]:
        raise NotImplementedError

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        raise NotImplementedError

    def fetch(self, topic: str, partition: int, start: int, end: int) -> Iterator[Records]:
        """The records of ``[start, end)``, in batches (fewer when the log has gaps)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @staticmethod
    def _chosen(names: Sequence[str], topics: Sequence[str], pattern: str | None) -> list[str]:
        if pattern:
            return sorted(n for n in names if re.fullmatch(pattern, n))
        missing = [t for t in topics if t not in names]
        if missing:
            raise PermanentError(f"no topic {', '.join(map(repr, missing))} on the brokers")
        return list(topics)


class ConfluentBackend(Backend):
    def __init__(self, settings: Settings):
        from confluent_kafka import Consumer

        conf: dict[str, Any] = {
            **_confluent_connection(settings),
            "group.id": "etl-reader",  # required by the client; nothing is committed
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # a fetch at a partition's end waits this long for new records, and the next range
            # of the split is fetched only after it: batch reads stop at a known end anyway
            "fetch.wait.max.ms": 10,
            # librdkafka pauses fetching for a second when its prefetch queue is full; a reader
            # that drains it at once only loses time waiting
            "fetch.queue.backoff.ms": 10,
        }
        self.timeout = settings.timeout_s
        self.consumer = Consumer(conf)

    def partitions(self, topics: Sequence[str], pattern: str | None) -> list[tuple[str, int]]:
        metadata = self.consumer.list_topics(timeout=self.timeout)
        names = self._chosen(list(metadata.topics), topics, pattern)
        return [(t, p) for t in names for p in sorted(metadata.topics[t].partitions)]

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        from confluent_kafka import TopicPartition

        low, high = self.consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=self.timeout
        )
        return int(low), int(high)

    def fetch(self, topic: str, partition: int, start: int, end: int) -> Iterator[Records]:
        from confluent_kafka import KafkaError, KafkaException, TopicPartition

        self.consumer.assign([TopicPartition(topic, partition, start)])
        position = start
        while position < end:
            messages = self.consumer.consume(min(BATCH_RECORDS, end - position), self.timeout)
            if not messages:
                raise TransientError(
                    f"no records from {topic}[{partition}] at offset {position} within "
                    f"{self.timeout:g}s"
                )
            batch, done = Records(), False
            for message in messages:
                error = message.error()
                eof = error is not None and error.code() == KafkaError._PARTITION_EOF  # noqa: SLF001 - its public name
                elsewhere = message.partition() != partition or message.topic() != topic
                if elsewhere and (error is None or eof):
                    continue  # fetched for the range this consumer read before
                if eof:
                    done = True
                    break
                if error is not None:
                    raise KafkaException(error)
                offset = message.offset()
                if offset >= end:
                    done = True
                    break
                kind, stamp = message.timestamp()
                batch.keys.append(message.key())
                batch.values.append(message.value())
                batch.offsets.append(offset)
                batch.timestamps.append(stamp if kind else None)
                batch.headers.append(message.headers() or ())
                position = offset + 1
            if batch:
                yield batch
            if done:
                return

    def close(self) -> None:
        self.consumer.close()


class KafkaPythonBackend(Backend):
    def __init__(self, settings: Settings):
        from kafka import KafkaConsumer

        kwargs: dict[str, Any] = {
            **_kafka_python_connection(settings),
            "enable_auto_commit": False,
            "group_id": None,
        }
        self.timeout = settings.timeout_s
        self.consumer = KafkaConsumer(**kwargs)
        try:  # metadata calls wait forever for brokers that never answer: bound the wait here
            self.consumer.bootstrap(timeout_ms=int(settings.timeout_s * 1000))
        except BaseException:
            self.consumer.close()
            raise

    def partitions(self, topics: Sequence[str], pattern: str | None) -> list[tuple[str, int]]:
        names = self._chosen(sorted(self.consumer.topics()), topics, pattern)
        return [(t, p) for t in names for p in sorted(self.consumer.partitions_for_topic(t))]

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        from kafka import TopicPartition

        tp = TopicPartition(topic, partition)
        low = self.consumer.beginning_offsets([tp], timeout_ms=self.timeout * 1000)[tp]
        high = self.consumer.end_offsets([tp], timeout_ms=self.timeout * 1000)[tp]
        return int(low), int(high)

    def fetch(self, topic: str, partition: int, start: int, end: int) -> Iterator[Records]:
        from kafka import TopicPartition

        tp = TopicPartition(topic, partition)
        self.consumer.assign([tp])
        self.consumer.seek(tp, start)
        while self.consumer.position(tp) < end:
            polled = self.consumer.poll(
                timeout_ms=int(self.timeout * 1000), max_records=BATCH_RECORDS
            ).get(tp, [])
            if not polled:
                if self.consumer.position(tp) >= end:
                    return
                raise TransientError(
                    f"no records from {topic}[{partition}] at offset "
                    f"{self.consumer.position(tp)} within {self.timeout:g}s"
                )
            if polled[-1].offset >= end:
                polled = [r for r in polled if r.offset < end]
            batch = Records(
                [r.key for r in polled],
                [r.value for r in polled],
                [r.offset for r in polled],
                [r.timestamp for r in polled],
                [r.headers or () for r in polled],
            )
            if batch:
                yield batch
            if polled[-1].offset >= end - 1:
                return

    def close(self) -> None:
        self.consumer.close()


@attrs.frozen
class ProducerSettings:
    """How a sink produces: the producer's options besides the connection."""

    topic: str
    acks: str = "all"
    compression: str = "none"
    linger_ms: int = 5


class Producer:
    """One client's producer for one topic: ``send`` queues, ``flush`` waits until every
    queued record is acknowledged and raises the first delivery error. Idempotent when
    ``acks`` is ``all`` (a retried send is written once per producer session)."""

    def send(self, key: bytes | None, value: bytes | None, headers: Sequence[Any]) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def producer(settings: Settings, client: str, produce: ProducerSettings, what: str) -> Producer:
    """A producer of ``client`` for ``produce.topic``."""
    kind = ConfluentProducer if client == "confluent" else KafkaPythonProducer
    return _open(kind, settings, what, produce)


class ConfluentProducer(Producer):
    def __init__(self, settings: Settings, produce: ProducerSettings):
        from confluent_kafka import Producer as Client

        conf: dict[str, Any] = {
            **_confluent_connection(settings),
            "acks": produce.acks,
            "enable.idempotence": produce.acks == "all",
            "compression.type": produce.compression,
            "linger.ms": produce.linger_ms,
        }
        self.topic = produce.topic
        self.timeout = settings.timeout_s
        self.failed: list[Any] = []
        self.client = Client(conf)

    def _delivered(self, error: Any, _message: Any) -> None:
        if error is not None:
            self.failed.append(error)

    def send(self, key: bytes | None, value: bytes | None, headers: Sequence[Any]) -> None:
        while True:
            try:
                self.client.produce(
                    self.topic,
                    value,
                    key,
                    headers=list(headers) or None,
                    on_delivery=self._delivered,
                )
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                self.client.poll(0.05)
        if self.failed:
            self._raise()

    def flush(self) -> None:
        from confluent_kafka import KafkaError, KafkaException

        remaining = self.client.flush(self.timeout * 6)
        if self.failed:
            self._raise()
        if remaining:
            raise KafkaException(
                KafkaError(KafkaError._TIMED_OUT, f"{remaining} records not acknowledged")  # noqa: SLF001 - its public name
            )

    def _raise(self) -> None:
        from confluent_kafka import KafkaException

        raise KafkaException(self.failed[0])

    def close(self) -> None:
        self.client.flush(0)


class KafkaPythonProducer(Producer):
    def __init__(self, settings: Settings, produce: ProducerSettings):
        from kafka import KafkaProducer

        kwargs: dict[str, Any] = {
            **_kafka_python_connection(settings),
            "acks": "all" if produce.acks == "all" else int(produce.acks),
            "enable_idempotence": produce.acks == "all",
            "compression_type": None if produce.compression == "none" else produce.compression,
            "linger_ms": produce.linger_ms,
            "max_block_ms": int(settings.timeout_s * 1000),
        }
        self.topic = produce.topic
        self.timeout = settings.timeout_s
        self.failed: list[BaseException] = []
        self.client = KafkaProducer(**kwargs)

    def send(self, key: bytes | None, value: bytes | None, headers: Sequence[Any]) -> None:
        pairs = [(k, b"" if v is None else v) for k, v in headers]  # it sends no null value
        future = self.client.send(self.topic, value=value, key=key, headers=pairs)
        future.add_errback(self.failed.append)
        if self.failed:
            raise self.failed[0]

    def flush(self) -> None:
        self.client.flush(timeout=self.timeout * 6)
        if self.failed:
            raise self.failed[0]

    def close(self) -> None:
        self.client.close(timeout=0)
