"""One quiet SparkSession per process. The only module that starts Spark."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any

from etl_core.errors import EtlError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pyspark.sql import SparkSession

    from etl_core.config.model import EngineSpec

#: applied before the user's ``engine.conf``, which wins
DEFAULT_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",  # stderr is etl's: its own progress lines
    "spark.sql.session.timeZone": "UTC",
    "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
    "spark.hadoop.parquet.enable.summary-metadata": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # pyspark records the Python call site of every Column/function call (a JVM round trip
    # and a stack walk each, and an IPython import where IPython is installed); the call sites
    # would be etl's own code, not the pipeline file's
    "spark.python.sql.dataFrameDebugging.enabled": "false",
}
#: launcher lines that say nothing to a user of etl
_NOISE = (
    "WARNING: Using incubator modules",
    "Using Spark's default log4j profile",
    "Setting default log level to",
    "To adjust logging level use",
)


def _log4j_config() -> str:
    return str(resources.files("etl_core") / "resources" / "log4j2.properties")


def spark_conf(engine: EngineSpec, app_name: str) -> dict[str, str]:
    conf = {**DEFAULT_CONF, "spark.app.name": app_name, "spark.driver.memory": engine.driver_memory}
    if (engine.master or "local").startswith("local"):
        # the workers run this Python: pyspark from its package, not from pyspark.zip
        conf["spark.python.daemon.module"] = "etl_core.daemon"
    log4j = f"-Dlog4j2.configurationFile=file:{_log4j_config()}"
    conf["spark.executor.extraJavaOptions"] = log4j
    conf["spark.driver.extraJavaOptions"] = log4j
    conf.update(engine.conf)
    if engine.class_data_sharing and not engine.remote:
        from etl_core.run.classdata import with_archive

        conf["spark.driver.extraJavaOptions"] = with_archive(conf)
    return conf


def _forward_filtered(stream: object, target: object, debug: bool = False) -> None:
    """Copy the JVM's stderr without the launcher's banner and, unless ``debug``, without the
    Python tracebacks of Spark's worker daemon (a task's error reaches etl through the job's
    failure and is reported once; a cancelled task's daemon prints a BrokenPipeError)."""
    in_traceback = False
    for line in iter(stream.readline, b""):  # type: ignore[attr-defined]
        text = line.decode(errors="replace")
        if not debug:
            if text.startswith("Traceback (most recent call last):"):
                in_traceback = True
                continue
            if in_traceback:
                in_traceback = text[:1].isspace()  # frames are indented; the error line ends it
                continue
        if not any(text.startswith(noise) for noise in _NOISE):
            target.write(text)  # type: ignore[attr-defined]  # not .buffer: Jupyter has none
            target.flush()  # type: ignore[attr-defined]


@contextmanager
def _killed_if_interrupted() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The JVM pyspark launches inside the block is killed if the block is left by an
    exception (Ctrl-C while Spark starts): until its gateway is up, it would outlive us."""
    from pyspark import java_gateway

    launched: list[subprocess.Popen[bytes]] = []
    original = java_gateway.Popen  # type: ignore[attr-defined]

    def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        launched.append(original(*args, **kwargs))
        return launched[-1]

    java_gateway.Popen = popen  # type: ignore[attr-defined, misc, assignment]
    try:
        yield launched
    except BaseException:
        for proc in launched:
            proc.kill()
            proc.wait(timeout=10)
        raise
    finally:
        java_gateway.Popen = original  # type: ignore[attr-defined, misc]


def _launch_quiet_gateway(conf: dict[str, str]) -> None:
    """Start the JVM with its stderr filtered, so its launcher banner does not reach users."""
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    if jvm_up():
        return
    spark_conf_obj = SparkConf(loadDefaults=False).setAll(list(conf.items()))
    popen_kwargs = {"stderr": subprocess.PIPE}
    with _killed_if_interrupted() as launched:
        gateway = launch_gateway(spark_conf_obj, popen_kwargs=popen_kwargs)
        launched.clear()  # up: it exits when this process does (its stdin closes)
    proc = getattr(gateway, "proc", None)
    if proc is not None and proc.stderr is not None:
        threading.Thread(
            target=_forward_filtered,
            args=(proc.stderr, sys.stderr, logging.getLogger("etl").isEnabledFor(logging.DEBUG)),
            daemon=True,
            name="etl-jvm-stderr",
        ).start()
    SparkContext._ensure_initialized(gateway=gateway)  # noqa: SLF001


def _quiet_query_context_loggers() -> None:
    """PySpark logs every analysis error with its JVM stack trace before raising it; etl
    reports the error itself, once (``--debug`` shows tracebacks)."""
    from pyspark.logger import PySparkLogger

    if logging.getLogger("etl").getEffectiveLevel() > logging.DEBUG:
        for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
            PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)


def get_spark(engine: EngineSpec, app_name: str = "etl", keep_sigint: Any = None) -> SparkSession:
    """The process's session: created on first use with the engine's settings, then reused.

    ``keep_sigint``: a SIGINT handler to keep. A new SparkContext installs pyspark's own (it
    cancels the jobs and raises KeyboardInterrupt inside whatever py4j call is running, which
    suits a notebook); ``etl run`` puts its own back as soon as the context exists."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - pyspark is a dependency
        raise EtlError("pyspark is not installed: pip install etl-core") from exc

    _quiet_query_context_loggers()
    conf = spark_conf(engine, app_name)
    if engine.remote:
        builder = SparkSession.builder.remote(engine.remote)
        for key, value in engine.conf.items():
            builder = builder.config(key, value)
        return builder.getOrCreate()
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    master = engine.master or "local[*]"
    conf["spark.master"] = master
    _launch_quiet_gateway(conf)
    if keep_sigint is not None:
        from pyspark import SparkConf, SparkContext

        SparkContext.getOrCreate(SparkConf().setAll(list(conf.items())))
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, keep_sigint)
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def jvm_up() -> bool:
    """This process has a JVM (a Spark gateway) up; never imports pyspark to find out."""
    pyspark = sys.modules.get("pyspark")
    return pyspark is not None and pyspark.SparkContext._gateway is not None  # noqa: SLF001


def stop_engine(timeout: float = 60) -> None:
    """Stop the JVM etl launched and wait until it has exited, so that the process ends after
    its JVM: a scheduler that sees ``etl run`` end may start the next run at once (and ``etl
    engine prepare``'s JVM writes its archive as it exits). Closing the gateway's stdin makes
    the JVM exit; Spark's shutdown hook stops the context (0.1-0.2 s here; a
    ``SparkSession.stop()`` first took 0.4 s more)."""
    if not jvm_up():
        return
    from pyspark import SparkContext

    gateway = SparkContext._gateway  # noqa: SLF001
    proc = getattr(gateway, "proc", None)
    server = getattr(SparkContext._active_spark_context, "_accumulatorServer", None)  # noqa: SLF001
    if server is not None:  # the JVM's exit ends its connection: an EOFError, and a traceback
        server.handle_error = lambda *_: None
    gateway.shutdown()
    SparkContext._gateway = None  # noqa: SLF001
    SparkContext._jvm = None  # noqa: SLF001
    SparkContext._active_spark_context = None  # noqa: SLF001
    if proc is not None:
        if proc.stdin is not None:
            proc.stdin.close()  # the gateway server exits when its stdin closes
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def class_data_missing(engine: EngineSpec) -> bool:
    """Sessions of ``engine`` would map a class-data archive, but there is none (yet)."""
    if not engine.class_data_sharing or engine.remote:
        return False
    return "SharedArchiveFile" not in spark_conf(engine, "etl")["spark.driver.extraJavaOptions"]


def prepare_class_data(
    engine: EngineSpec, force: bool = False, say: Callable[[str], object] = print
) -> tuple[Path, float | None]:
    """Make the class-data archive (:mod:`~etl_core.run.classdata`) for sessions with
    ``engine``'s settings: a session runs a small workload, its JVM writes the classes it
    loaded as it exits. Returns the path and the seconds taken (``None``: a usable archive was
    there, and not ``force``). The process must not have started Spark yet."""
    import tempfile
    import time
    from pathlib import Path

    import attrs

    from etl_core.run import classdata

    if jvm_up():
        raise EtlError("etl engine prepare: this process already runs a JVM; run it on its own")
    started = time.monotonic()
    conf = spark_conf(attrs.evolve(engine, class_data_sharing=False), "etl-prepare")
    path = classdata.archive_path(conf)
    if path is None:
        raise EtlError("no java found (JAVA_HOME or PATH): Spark needs Java 17 or newer")
    if classdata.usable(path) and not force:
        return path, None
    say("recording the classes of a small Spark workload (about 30 s)")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    options = conf["spark.driver.extraJavaOptions"]
    recording = f"{options} -XX:ArchiveClassesAtExit={partial} {classdata.QUIET}"
    recording_conf = {**engine.conf, "spark.driver.extraJavaOptions": recording}
    try:
        try:
            spark = get_spark(attrs.evolve(engine, conf=recording_conf))
            with tempfile.TemporaryDirectory(prefix="etl-prepare-") as work:
                classdata.workload(spark, Path(work))
        finally:
            stop_engine()  # the JVM writes the archive as it exits
        classdata.install(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path, time.monotonic() - started
