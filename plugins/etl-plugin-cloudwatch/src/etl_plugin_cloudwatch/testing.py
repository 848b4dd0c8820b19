"""pytest plugin (entry point ``pytest11: etl_cloudwatch``): a real moto server for tests.

Fixtures:

- ``moto_server``: one ``moto_server`` process per test session on a free port of 127.0.0.1
  (the CloudWatch API among others), started on first use and stopped at the end. Tests
  share it: give each test its own namespace.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

STARTUP_TIMEOUT_S = 60


@attrs.frozen
class MotoServer:
    endpoint_url: str
    log_file: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):  # noqa: S310
            return True
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    binary = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    if not Path(binary).exists():
        pytest.fail("moto_server is missing: pip install 'moto[server]'")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_file = tmp_path_factory.mktemp("moto") / "moto.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _ready(url):
            if process.poll() is not None:
                pytest.fail(
                    f"moto_server exited with {process.returncode}:\n{log_file.read_text()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"moto_server did not get ready in {STARTUP_TIMEOUT_S}s")
            time.sleep(0.1)
        yield MotoServer(url, log_file)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
