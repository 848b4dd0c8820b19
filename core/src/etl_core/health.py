"""Health endpoints and graceful shutdown for ``etl run``.

:class:`RunControl` is what the runner, the signal handlers and the health server share about
the live run. :class:`HealthServer` serves ``/health`` (liveness), ``/ready`` (Spark started)
and ``/metrics`` (the live run's metrics, Prometheus text format) from one thread.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import attrs

from etl_core.errors import RunFailed
from etl_core.metrics import metric_families, render_text
from etl_core.run.engine import jvm_up

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from etl_core.api import RunMetrics

__all__ = ["HealthServer", "RunControl", "RunInterrupted", "graceful_shutdown"]

log = logging.getLogger("etl.run")

#: exit codes by the shell's convention: 128 + the signal number
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


class RunInterrupted(RunFailed):
    """A signal stopped the run before it published; every staging was discarded."""

    def __init__(self, signum: int):
        self.exit_code = SIGNAL_EXIT.get(signal.Signals(signum), 1)
        name = signal.Signals(signum).name
        super().__init__(
            f"interrupted by {name}: the staging in progress was discarded, nothing was "
            "published; run again to load the data"
        )


@attrs.define(eq=False)
class RunControl:
    """The live run, as the runner reports it; a stop request from a signal."""

    metrics: RunMetrics | None = None
    ready: bool = False
    publishing: bool = False
    stop_signal: int | None = None
    spark: SparkSession | None = None
    #: a stream: a stop lets the running micro-batch finish (its jobs are not cancelled)
    finish_running: bool = False
    #: the SIGINT handler of :func:`graceful_shutdown`, while it is installed (the session's
    #: start keeps it: ``get_spark(keep_sigint=...)``)
    on_signal: Any = None
    #: set when the run is over: no more jobs to cancel
    ended: threading.Event = attrs.field(factory=threading.Event)

    def started(self, spark: SparkSession) -> None:
        self.spark = spark
        self.ready = True

    def request_stop(self, signum: int) -> None:
        """Ask the run to stop. Before publishing, the Spark jobs are cancelled (from another
        thread: the main thread is waiting on them); while publishing, it finishes."""
        self.stop_signal = signum
        spark = self.spark
        if spark is not None and not self.publishing and not self.finish_running:
            threading.Thread(
                target=self._cancel_jobs, args=(spark,), name="etl-cancel", daemon=True
            ).start()

    def _cancel_jobs(self, spark: SparkSession, every_s: float = 0.2, for_s: float = 60) -> None:
        """Cancel the running jobs, then those that start until the run ends: a stop may come
        while an action is being planned, or between two of its jobs."""
        deadline = time.monotonic() + for_s
        while time.monotonic() < deadline:
            try:
                spark.sparkContext.cancelAllJobs()
            except Exception:  # noqa: BLE001 - the session is stopping: nothing left to cancel
                return
            if self.ended.wait(every_s):
                return

    def check(self) -> None:
        """Raise :class:`RunInterrupted` if a stop was requested."""
        if self.stop_signal is not None:
            raise RunInterrupted(self.stop_signal)

    def start_publishing(self) -> None:
        """From here on a stop request lets the run finish: publishing is never cut in half."""
        self.publishing = True
        self.check()


@contextmanager
def graceful_shutdown(control: RunControl) -> Iterator[None]:
    """SIGTERM and SIGINT ask ``control`` to stop; a second signal stops the process at once."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, _frame: Any) -> None:
        for s in previous:
            signal.signal(s, signal.SIG_DFL)
        log.warning(
            "etl: %s received: stopping (discarding the staging in progress); send it again to "
            "kill the process",
            signal.Signals(signum).name,
        )
        control.request_stop(signum)
        if control.spark is None and not control.publishing and not jvm_up():
            # nothing staged yet: stop waiting for the JVM to boot (it is killed). Once its
            # gateway is up, the session's start is a few py4j calls, which an exception
            # raised inside would break noisily: the runner checks the request after them.
            raise RunInterrupted(signum)

    for s in previous:
        signal.signal(s, handler)
    control.on_signal = handler
    try:
        yield
    finally:
        control.on_signal = None
        control.ended.set()
        for s, old in previous.items():
            signal.signal(s, old)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        control = self.server.control
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self._send(200, "ok\n")
        elif path == "/ready":
            self._send(200, "ready\n") if control.ready else self._send(503, "starting\n")
        elif path == "/stream":
            latest = control.metrics.streaming[-1] if control.metrics is not None else None
            if latest is None:
                self._send(404, "no micro-batch has finished (or this is not a stream)\n")
            else:
                body = json.dumps(attrs.asdict(latest), indent=1) + "\n"
                self._send(200, body, "application/json")
        elif path == "/metrics":
            metrics = control.metrics
            text = render_text(metric_families(metrics)) if metrics is not None else ""
            self._send(200, text, "text/plain; version=0.0.4; charset=utf-8")
        else:
            self._send(404, "not found: try /health, /ready, /metrics or /stream\n")

    def _send(self, status: int, body: str, content_type: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("etl: health: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], control: RunControl):
        self.control = control
        super().__init__(address, _Handler)


class HealthServer:
    """``with HealthServer(control, port):`` serves the endpoints in a background thread.
    Port 0 picks a free port (see :attr:`port`)."""

    def __init__(self, control: RunControl, port: int, host: str = "127.0.0.1"):
        self._server = _Server((host, port), control)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="etl-health", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def __enter__(self) -> HealthServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
