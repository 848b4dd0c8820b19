"""pytest plugin for etl and for connector authors (loaded through the ``pytest11`` entry point).

Fixtures:

- ``etl_spark``: one local SparkSession for the whole test session, started on first use.
- ``etl_host``: a fresh plugin host per test, built-ins only (entry points not loaded).
- ``etl_run``: load, bind and run a pipeline (a mapping or a file) on the shared session.
- ``moto_server``: one ``moto_server`` process (S3, CloudWatch, IAM… on a free port of
  127.0.0.1) for the whole test session, in its default mode (any key is accepted). Tests
  share it: give each test its own bucket or namespace.

Helpers: :func:`moto_process` starts a moto server of your own, e.g. one that enforces
authentication after its first ``N`` calls (``INITIAL_NO_AUTH_ACTION_COUNT``), for tests of
per-component credentials; :func:`free_port`, :func:`answers`, :func:`server_process`.

Conformance suites for connector authors (see :mod:`etl_core.conformance`):
:class:`ExtractorConformance`, :class:`LoaderConformance`, :class:`TypeCase`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from etl_core import config
from etl_core.api import RunMetrics
from etl_core.conformance import ExtractorConformance, LoaderConformance, TypeCase
from etl_core.plugins import PluginHost, get_plugin_host

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "ExtractorConformance",
    "LoaderConformance",
    "MotoServer",
    "TypeCase",
    "etl_host",
    "etl_run",
    "etl_spark",
    "moto_process",
    "moto_server",
    "run_pipeline",
]


@pytest.fixture(scope="session")
def etl_spark() -> Iterator[SparkSession]:
    from etl_core.config import EngineSpec
    from etl_core.engine import get_spark

    spark = get_spark(
        EngineSpec(master="local[2]", conf={"spark.sql.shuffle.partitions": "4"}), "etl-tests"
    )
    yield spark


@pytest.fixture
def etl_host() -> PluginHost:
    return get_plugin_host(autoload=False)


def run_pipeline(
    pipeline: Mapping[str, Any] | str | Path,
    *,
    spark: SparkSession,
    host: PluginHost | None = None,
    base_dir: Path | None = None,
    overrides: Sequence[str] = (),
    run_id: str | None = None,
    plugins: bool = False,
) -> RunMetrics:
    """Load, bind and run a pipeline on ``spark``; raises what ``etl run`` would report.

    ``plugins=True`` loads the installed plugins (entry points), as ``etl run`` does; by
    default only the built-ins are there."""
    from etl_core.runner import run

    host = host or get_plugin_host(autoload=plugins)
    if isinstance(pipeline, Mapping):
        bound = config.check(data=pipeline, overrides=overrides, base_dir=base_dir, host=host)
    else:
        bound = config.check(pipeline, overrides=overrides, host=host)
    return run(bound, host, run_id=run_id, spark=spark)


@pytest.fixture
def etl_run(etl_spark: SparkSession, tmp_path: Path) -> Callable[..., RunMetrics]:
    """``etl_run(pipeline, **kwargs)`` runs on the shared session, ``base_dir`` ``tmp_path``."""

    def runner(pipeline: Mapping[str, Any] | str | Path, **kwargs: Any) -> RunMetrics:
        kwargs.setdefault("base_dir", tmp_path)
        return run_pipeline(pipeline, spark=etl_spark, **kwargs)

    return runner


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str) -> bool:
    """Whether an HTTP GET of ``url`` succeeds (a readiness probe)."""
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - a local test server
            return True
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def server_process(
    command: Sequence[str],
    *,
    ready: Callable[[], bool],
    log_file: Path,
    timeout_s: float = 60,
    env: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server for the duration of the block: started, awaited until ``ready()``, stopped.

    Its output goes to ``log_file``, shown when it dies or never gets ready."""
    name = Path(command[0]).name
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=None if env is None else dict(env),
        )
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode}:\n{log_file.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not get ready in {timeout_s}s:\n{log_file.read_text()}")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@attrs.frozen
class MotoServer:
    endpoint_url: str
    log_file: Path

    @property
    def endpoint(self) -> str:
        """``host:port``, as ``pyarrow.fs.S3FileSystem(endpoint_override=...)`` takes it."""
        return self.endpoint_url.removeprefix("http://")


#: Two fixes to moto 5 (5.2.1), both in the test server only:
#: - it answers CompleteMultipartUpload with a ``CompleteMultipartUploadResponse`` root
#:   element where S3 sends ``CompleteMultipartUploadResult``; recent AWS C++ SDKs (pyarrow.fs)
#:   then treat every multipart upload as failed. The launcher rewrites that one element name.
#: - with authentication on, it checks signatures against the *decoded* query string, so any
#:   request with a ``/`` in a query value (``ListObjectsV2?prefix=t/``, from boto3 and
#:   pyarrow alike) fails with SignatureDoesNotMatch. The launcher re-encodes the query as
#:   SigV4 does before moto computes the signature.
_MOTO_LAUNCHER = """
import sys
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from moto import server
from moto.iam import access_control

def _encoded(text):
    return quote(unquote(text), safe="-_.~")

_create_aws_request = access_control.IAMRequestBase._create_aws_request

def create_aws_request(self):
    request = _create_aws_request(self)
    parts = urlsplit(request.url)
    pairs = (pair.partition("=") for pair in parts.query.split("&") if pair)
    query = "&".join(_encoded(k) + eq + _encoded(v) for k, eq, v in pairs)
    request.url = urlunsplit(parts._replace(query=query))
    return request

access_control.IAMRequestBase._create_aws_request = create_aws_request

class FixMultipartCompletion:
    def __init__(self, app):
        self.app = app

    def __getattr__(self, name):
        return getattr(self.app, name)

    def __call__(self, environ, start_response):
        if "uploadId" not in environ.get("QUERY_STRING", ""):
            return self.app(environ, start_response)
        captured = []
        body = b"".join(self.app(environ, lambda *args: captured.append(args)))
        wrong = b"CompleteMultipartUploadResponse"
        body = body.replace(wrong, b"CompleteMultipartUploadResult")
        status, headers, *rest = captured[0]
        headers = [(k, str(len(body)) if k.lower() == "content-length" else v) for k, v in headers]
        start_response(status, headers, *rest)
        return [body]

dispatcher = server.DomainDispatcherApplication
server.DomainDispatcherApplication = lambda *a, **k: FixMultipartCompletion(dispatcher(*a, **k))
server.main(sys.argv[1:])
"""


@contextlib.contextmanager
def moto_process(log_file: Path, *, no_auth_calls: int | None = None) -> Iterator[MotoServer]:
    """A ``moto_server`` process of its own on a free port, for the duration of the block.

    ``no_auth_calls=N`` turns authentication on after the server's first ``N`` calls
    (``INITIAL_NO_AUTH_ACTION_COUNT``): make exactly those calls to create buckets, IAM
    users, access keys and policies; after them, each key is held to its policies (another
    user's bucket → AccessDenied, a wrong secret → SignatureDoesNotMatch). A process of its
    own, because the auth counter and IAM state are global to a moto server."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        pytest.fail("moto_server is missing: pip install 'moto[server]'")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-c", _MOTO_LAUNCHER, "-H", "127.0.0.1", "-p", str(port)]
    env = dict(os.environ)
    if no_auth_calls is not None:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(no_auth_calls)
    with server_process(
        command, ready=lambda: answers(f"{url}/moto-api/"), log_file=log_file, env=env
    ):
        yield MotoServer(url, log_file)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto server (default mode: any key is accepted) for the test session."""
    with moto_process(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server
