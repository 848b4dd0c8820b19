"""SIGTERM during a real ``etl run`` process: staging discarded, nothing published, exit != 0.

A subprocess on purpose: signals and exit codes are process behaviour.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
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
    query: "SELECT u.* FROM users u CROSS JOIN range(0, 20000000, 1, 200)"
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
    assert not any(staging_root.glob("*/*")), sorted(str(p) for p in staging_root.rglob("*"))
    assert not list((tmp_path / ".etl" / "runs").glob("*.lock"))


def group_members(pgid: int) -> list[str]:
    """The live (not zombie) processes of process group ``pgid``, as ``pid name``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, fields = text[text.index("(") + 1 : text.rindex(")")], text.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(f"{stat.parent.name} {name}")
    return found


def interrupt_group(process: subprocess.Popen[str], ready: Callable[[], bool]) -> tuple[str, float]:
    """Once ``ready()``, Ctrl-C as a terminal sends it: SIGINT to the whole process group (etl,
    its JVM, pyspark's workers). Returns stderr and the seconds from the signal to the exit."""
    deadline = time.monotonic() + 300
    while not ready():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "never ready"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    sent = time.monotonic()
    process.wait(timeout=60)
    took = time.monotonic() - sent
    return process.stderr.read(), took  # type: ignore[union-attr]


@pytest.mark.parametrize("phase", ["starting Spark", "staging"])
def test_ctrl_c_prints_one_line_and_exits_at_once(tmp_path, phase):
    """Ctrl-C while Spark starts, and while a job stages rows: one warning and the error, no
    py4j or worker tracebacks, exit 130, nothing published, and no process of the run left
    behind (a JVM still booting would outlive etl). Measured from the signal to the exit:
    0.2-0.5 s while Spark starts, 1.0-1.3 s while staging. The join runs as 200 short tasks: a
    cancelled task stops only when Spark next reads its kill flag, which a CPU-bound task in
    the middle of a large partition may not do for ~10 s."""
    (tmp_path / "users.csv").write_text("user_id,name\n1,ann\n2,bob\n")
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    process = subprocess.Popen(
        [*etl_command(), "run", str(tmp_path / "pipeline.yaml")],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a foreground job
        env={**os.environ, "PYSPARK_PYTHON": sys.executable},
    )
    seen: list[str] = []
    try:
        if phase == "starting Spark":

            def ready() -> bool:
                seen.append(process.stderr.readline())  # type: ignore[union-attr]
                if seen[-1].startswith("· starting Spark"):
                    time.sleep(1.5)  # the JVM is booting
                    return True
                return False
        else:

            def ready() -> bool:
                return any((tmp_path / "out" / "_etl" / "tmp").glob("*/*"))

        stderr, took = interrupt_group(process, ready)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    stderr = "".join(seen) + stderr
    assert process.returncode == 130, stderr
    after = stderr.split("SIGINT received", 1)[1].splitlines()[1:]
    assert after == [
        "error: interrupted by SIGINT: the staging in progress was discarded, nothing was "
        "published; run again to load the data"
    ], stderr
    assert "Traceback" not in stderr and "py4j" not in stderr
    assert took < 5, f"exited {took:.1f} s after the signal"  # was 8-26 s while starting
    time.sleep(0.5)
    assert group_members(process.pid) == []
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.parquet"))


def test_a_run_ends_after_its_jvm_which_maps_the_prepared_class_data_archive(tmp_path):
    """`etl engine prepare` (nothing to do when the archive is there), then a run: its JVM
    maps the archive (seen in /proc/PID/maps while it runs), and when `etl run` exits, no
    process of the run is left (the JVM is waited for, not left to exit on its own)."""
    prepared = subprocess.run(
        [*etl_command(), "engine", "prepare"], capture_output=True, text=True, timeout=600
    )
    assert prepared.returncode == 0, prepared.stderr
    archive = re.search(r"(/\S+\.jsa) \(", prepared.stdout).group(1)  # type: ignore[union-attr]
    assert Path(archive).is_file(), prepared.stdout
    (tmp_path / "users.csv").write_text("user_id,name\n1,ann\n2,bob\n")
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    out, err = (open(tmp_path / name, "w+") for name in ("stdout", "stderr"))  # noqa: SIM115
    process = subprocess.Popen(
        [*etl_command(), "run", "pipeline.yaml", "--set", "transforms.many.query=TABLE users"],
        cwd=tmp_path,
        stdout=out,  # files, not pipes: the JVM writes to them too, and reading a pipe to its
        stderr=err,  # end would wait for the JVM as well as for etl
        text=True,
        start_new_session=True,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable},
    )
    mapped = False
    try:
        while process.poll() is None and not mapped:
            for member in group_members(process.pid):
                pid, name = member.split(" ", 1)
                if name == "java":
                    with contextlib.suppress(OSError):
                        mapped = archive in Path(f"/proc/{pid}/maps").read_text()
            time.sleep(0.05)
        process.wait(timeout=300)
        left = group_members(process.pid)  # at once: no sleep before looking
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    stdout, stderr = ((tmp_path / name).read_text() for name in ("stdout", "stderr"))
    assert process.returncode == 0, stderr
    assert "published: out" in stdout
    assert mapped, "the run's JVM did not map the archive"
    assert left == []
