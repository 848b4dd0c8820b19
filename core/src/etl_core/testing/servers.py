"""Test servers for connector tests: a free port, a readiness probe, a server process started
once and stopped at the end, moto (S3, CloudWatch, IAM) with fixes for two of its bugs, and a
throwaway PostgreSQL cluster that checks passwords."""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

__all__ = [
    "MotoServer",
    "PasswordPostgres",
    "answers",
    "free_port",
    "moto_process",
    "password_postgres_cluster",
    "server_process",
]


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


@attrs.frozen
class PasswordPostgres:
    """A PostgreSQL cluster on 127.0.0.1 that checks passwords (scram-sha-256)."""

    port: int
    superuser: str
    password: str
    #: ``pg_ctl`` (as the postgres user) and its arguments for this cluster, for :meth:`down`
    pg_ctl: tuple[str, ...] = ()

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """The server stopped for the block (connections are refused), started after."""
        *command, options = self.pg_ctl
        subprocess.run([*command, "-m", "fast", "stop"], check=True, capture_output=True)
        try:
            yield
        finally:
            subprocess.run([*command, "-o", options, "start"], check=True, capture_output=True)

    def connection(self, database: str = "postgres") -> dict[str, Any]:
        """A ``connection:`` block of the postgres plugin for this cluster."""
        return {"host": "127.0.0.1", "port": self.port, "database": database, "sslmode": "disable"}

    def connect(self, user: str, password: str, dbname: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            dbname=dbname,
            user=user,
            password=password,
            connect_timeout=5,
        )


def _pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are missing")
    return Path(initdb).parent


@contextlib.contextmanager
def password_postgres_cluster() -> Iterator[PasswordPostgres]:
    """A new cluster with password auth on a free port for the block (the machine's own
    PostgreSQL trusts every local connection): initdb + pg_ctl as the ``postgres`` user
    (PostgreSQL refuses to run as root) in a folder under /tmp, stopped and removed after.
    About 3 s; start it once per test session."""
    bindir = _pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="etl-pg-"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(root, "postgres")
    password = secrets.token_urlsafe(18)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if as_postgres:
        shutil.chown(pwfile, "postgres")
    data, port = root / "data", free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*as_postgres, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(args[:2])} failed:\n{done.stdout}\n{done.stderr}")

    initdb = ["-D", str(data), "-U", "postgres", "-A", "scram-sha-256", "--no-sync"]
    run(str(bindir / "initdb"), *initdb, f"--pwfile={pwfile}")
    pwfile.unlink()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root}"
    log = str(root / "log")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", log, "-o", options, "start")
    pg_ctl = (*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", log, options)
    try:
        yield PasswordPostgres(port, "postgres", password, pg_ctl)
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop")
        shutil.rmtree(root, ignore_errors=True)
