"""SIGTERM during a real ``etl run`` process: staging discarded, nothing published, exit != 0.

A subprocess on purpose: signals and exit codes are process behaviour.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

PIPELINE = """\
name: slow
sources:
  users:
    type: files
    format: csv
    path: users.csv
    read_schema: "user_id BIGINT, name STRING"
transforms:
  many:
    type: sql
    inputs: [users]
    query: "SELECT u.* FROM users u CROSS JOIN range(20000000)"
sinks:
  out:
    type: files
    input: many
    format: parquet
    path: out
    mode: overwrite
"""


def etl_command() -> list[str]:
    script = shutil.which("etl") or str(Path(sys.executable).with_name("etl"))
    return [script]


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def status(port: int, path: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.status


def test_sigterm_discards_the_staging_and_publishes_nothing(tmp_path, etl_run):
    (tmp_path / "users.csv").write_text("user_id,name\n1,ann\n2,bob\n")
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    # a published target first (a quick run on the shared session), to prove it stays as is
    etl_run(tmp_path / "pipeline.yaml", overrides=["transforms.many.query=SELECT * FROM users"])
    target = tmp_path / "out"
    before = files_under(target)
    assert any(name.endswith(".parquet") for name in before)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [*etl_command(), "run", str(tmp_path / "pipeline.yaml"), "--health-port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable},
    )
    try:
        staging_root = target / "_etl" / "tmp"
        deadline = time.monotonic() + 300
        while not any(staging_root.glob("*/*")):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the run never started staging"
            time.sleep(0.2)
        assert status(port, "/health") == 200
        assert status(port, "/ready") == 200
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 143, stderr
    assert (
        "error: interrupted by SIGTERM: the staging in progress was discarded, nothing was "
        "published" in stderr
    )
    assert "Traceback" not in stderr
    assert files_under(target) == before
    assert not any(staging_root.glob("*/*"))
    assert not list((tmp_path / ".etl" / "runs").glob("*.lock"))
