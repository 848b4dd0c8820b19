"""librdkafka's mock Kafka cluster as a process, for tests: ``python -m
etl_plugin_kafka.mock_cluster [BROKERS]``.

No Apache Kafka broker can be installed on the machines this project is tested on; the
``confluent-kafka`` wheel bundles librdkafka, whose mock cluster speaks the Kafka wire protocol
on a TCP port. This process starts one through ctypes, prints its bootstrap servers on the
first line of standard output, then reads commands, one per line, answering each with one line:

- ``topic NAME PARTITIONS``: create a topic (the mock refuses the admin API's CreateTopics);
  answers ``ok`` or ``error: ...``.

It stops on end of input or SIGTERM. The mock keeps at most about 5 MiB (and 100,000
messages) per partition and silently drops older data: size tests below that.
"""

from __future__ import annotations

import ctypes
import signal
import sys
from pathlib import Path

RD_KAFKA_PRODUCER = 0


def _library() -> ctypes.CDLL:
    import confluent_kafka

    folder = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    found = sorted(folder.glob("librdkafka*.so*"))
    if not found:
        raise SystemExit(f"no librdkafka in {folder}: pip install confluent-kafka")
    lib = ctypes.CDLL(str(found[0]))
    lib.rd_kafka_conf_new.restype = ctypes.c_void_p
    lib.rd_kafka_conf_set.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
    ]
    lib.rd_kafka_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_mock_cluster_new.restype = ctypes.c_void_p
    lib.rd_kafka_mock_cluster_new.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_topic_create.restype = ctypes.c_int
    lib.rd_kafka_mock_topic_create.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_int,
    ]
    lib.rd_kafka_mock_set_controller_id.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.rd_kafka_mock_group_initial_rebalance_delay_ms.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.rd_kafka_mock_cluster_destroy.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_err2str.restype = ctypes.c_char_p
    return lib


class _Stopped(Exception):
    """SIGTERM arrived."""


def _stop(*_: object) -> None:
    raise _Stopped


def main(brokers: int = 1) -> None:
    lib = _library()
    error = ctypes.create_string_buffer(512)
    conf = lib.rd_kafka_conf_new()
    # the handle only hosts the cluster: it connects nowhere, so it has nothing to warn about
    lib.rd_kafka_conf_set(conf, b"log_level", b"2", error, len(error))
    handle = lib.rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, len(error))
    if not handle:
        raise SystemExit(f"rd_kafka_new failed: {error.value.decode()}")
    cluster = lib.rd_kafka_mock_cluster_new(handle, brokers)
    if not cluster:
        raise SystemExit("rd_kafka_mock_cluster_new failed")
    lib.rd_kafka_mock_set_controller_id(cluster, 1)
    lib.rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0)
    signal.signal(signal.SIGTERM, _stop)
    print(lib.rd_kafka_mock_cluster_bootstraps(cluster).decode(), flush=True)
    try:
        for line in sys.stdin:
            command = line.split()
            if len(command) == 3 and command[0] == "topic" and command[2].isdigit():
                code = lib.rd_kafka_mock_topic_create(
                    cluster, command[1].encode(), int(command[2]), 1
                )
                answer = "ok" if code == 0 else f"error: {lib.rd_kafka_err2str(code).decode()}"
            else:
                answer = f"error: unknown command {line.strip()!r}"
            print(answer, flush=True)
    except _Stopped:
        pass
    finally:
        lib.rd_kafka_mock_cluster_destroy(cluster)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
