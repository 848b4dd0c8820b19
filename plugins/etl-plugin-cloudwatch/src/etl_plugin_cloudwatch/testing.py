"""pytest plugin (entry point ``pytest11: etl_cloudwatch``): a real moto server for tests.

Fixtures:

- ``moto_server``: one ``moto_server`` process per test session on a free port of 127.0.0.1
  (the CloudWatch API among others), started on first use and stopped at the end. Tests
  share it: give each test its own namespace.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from etl_core.testing import answers, free_port, server_process


@attrs.frozen
class MotoServer:
    endpoint_url: str
    log_file: Path


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    binary = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    if not Path(binary).exists():
        pytest.fail("moto_server is missing: pip install 'moto[server]'")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_file = tmp_path_factory.mktemp("moto") / "moto.log"
    command = [binary, "-H", "127.0.0.1", "-p", str(port)]
    with server_process(command, ready=lambda: answers(f"{url}/moto-api/"), log_file=log_file):
        yield MotoServer(url, log_file)
