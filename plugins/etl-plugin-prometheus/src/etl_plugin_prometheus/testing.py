"""pytest plugin (entry point ``pytest11: etl_prometheus``): a real Pushgateway for tests.

Fixtures:

- ``pushgateway``: one ``prometheus-pushgateway`` per test session on a free port of
  127.0.0.1, started on first use and stopped at the end. When the binary is missing and the
  tests run as root (CI), it is installed with ``apt-get install -y prometheus-pushgateway``.
  Tests share it: give each test its own ``job`` (see :func:`unique_job`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from etl_core.testing import answers, free_port, server_process

BINARY = "prometheus-pushgateway"


@attrs.frozen
class Pushgateway:
    url: str
    log_file: Path

    def metrics_text(self) -> str:
        """The gateway's ``/metrics`` page: every pushed series plus its own."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:  # noqa: S310
            return response.read().decode()

    def samples(self, job: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Pushed samples of one job: ``(name, labels without job/instance) → value``."""
        from prometheus_client.parser import text_string_to_metric_families

        found = {}
        for family in text_string_to_metric_families(self.metrics_text()):
            for sample in family.samples:
                if sample.labels.get("job") != job:
                    continue
                labels = {k: v for k, v in sample.labels.items() if k not in ("job", "instance")}
                found[(sample.name, frozenset(labels.items()))] = sample.value
        return found


def unique_job(prefix: str = "etl-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def pushgateway_binary() -> str:
    path = shutil.which(BINARY) or (
        f"/usr/bin/{BINARY}" if Path(f"/usr/bin/{BINARY}").exists() else None
    )
    if path:
        return path
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(f"{BINARY} is missing: apt-get install -y {BINARY}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", BINARY],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if done.returncode != 0:  # the package lists may be missing on a fresh machine
        subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=600)
        done = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", BINARY],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
    path = shutil.which(BINARY)
    if done.returncode != 0 or path is None:
        pytest.fail(f"could not install {BINARY}:\n{done.stdout}\n{done.stderr}")
    return path


@pytest.fixture(scope="session")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushgateway]:
    folder = tmp_path_factory.mktemp("pushgateway")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_file = folder / "pushgateway.log"
    command = [pushgateway_binary(), f"--web.listen-address=127.0.0.1:{port}"]
    with server_process(command, ready=lambda: answers(f"{url}/-/ready"), log_file=log_file):
        yield Pushgateway(url, log_file)
