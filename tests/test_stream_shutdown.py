"""A streaming `etl run` stopped by SIGTERM (a real process): the running micro-batch
finishes, the process exits 0, and the next start continues from the checkpoint."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from etl_core.manifests import manifest_files

pytestmark = [pytest.mark.spark, pytest.mark.slow]

PIPELINE = """
version: 1
name: stream_stop
execution: streaming
trigger: {processing_time: 1s}
sources:
  events:
    type: files
    format: csv
    path: incoming
    read_schema: "id BIGINT, kind STRING"
sinks:
  out: {type: files, input: events, path: out}
"""


def published(path):
    names = manifest_files(pafs.LocalFileSystem(), str(path)) or []
    return sorted(row["id"] for name in names for row in pq.read_table(path / name).to_pylist())


def write(folder, name, ids):
    (folder / name).write_text("id,kind\n" + "".join(f"{i},k\n" for i in ids))


def test_sigterm_finishes_the_batch_exits_0_and_the_next_start_continues(tmp_path, etl_run):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    write(incoming, "a.csv", range(0, 5))
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [shutil.which("etl") or "etl", "run", str(tmp_path / "pipeline.yaml"),
         "--health-port", str(port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while published(tmp_path / "out") != list(range(5)):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the first batch never published"
            time.sleep(0.2)
        write(incoming, "b.csv", range(5, 8))
        while published(tmp_path / "out") != list(range(8)):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the second batch never published"
            time.sleep(0.2)
        latest = {}
        while not latest.get("finished_at"):  # Spark's progress comes after the publish
            assert time.monotonic() < deadline, "no batch on /stream"
            url = f"http://127.0.0.1:{port}/stream"
            with contextlib.suppress(urllib.error.HTTPError), urllib.request.urlopen(url) as r:
                latest = json.loads(r.read())
            time.sleep(0.2)
        assert latest["batch_id"] >= 0 and latest["lag_by_partition"] == {}  # files: none
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert "etl_stream_batch_id" in r.read().decode()
        write(incoming, "c.csv", range(8, 10))  # may or may not be read before the stop
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
        took = time.monotonic() - stopped_at
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert "stopped" in stdout, stdout
    assert took < 60, took
    # the next start (available_now) reads what the stopped run had not: each row once
    etl_run(tmp_path / "pipeline.yaml", overrides=["trigger={available_now: true}"])
    assert published(tmp_path / "out") == list(range(10))
