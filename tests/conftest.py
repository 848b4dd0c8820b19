"""Fixtures of the cross-package tests: the wheels of every distribution of this repository,
built once per test session, and fresh virtualenvs that install them by name as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: every distribution this repository publishes: etl-core and each plugin
PROJECTS = [ROOT / "core", *sorted((ROOT / "plugins").glob("etl-plugin-*"))]


def run(command: Sequence[str | Path], *, timeout: float = 600, **kwargs: object) -> str:
    """Run ``command``; fail the test with its output when it exits non-zero."""
    done = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, timeout=timeout, **kwargs
    )
    assert done.returncode == 0, (
        f"{' '.join(map(str, command))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist of etl-core and of every plugin, and the wheel built from each sdist, as
    ``nox -s build`` makes them into ``dist/`` (here without build isolation: the build
    backend of requirements-dev.txt, no download)."""
    folder = tmp_path_factory.mktemp("wheelhouse")
    for project in PROJECTS:
        run([sys.executable, "-m", "build", "--no-isolation", "-o", folder, project])
    return folder


class Venv:
    """A fresh virtualenv, with helpers to run its programs in a clean environment: no
    PYTHONPATH, no ETL_* variables, and no PYSPARK_*/SPARK_* ones (the test session's Spark
    sets PYSPARK_PYTHON to this interpreter, whose workers would not see the venv's packages)."""

    def __init__(self, path: Path):
        self.path = path
        self.bin = path / "bin"
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV")
            and not k.startswith(("ETL_", "PYSPARK_", "SPARK_"))
        }
        self.env["PATH"] = f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env["VIRTUAL_ENV"] = str(path)

    def run(self, program: str, *args: str | Path, timeout: float = 600, **kwargs: object) -> str:
        return run([self.bin / program, *args], env=self.env, timeout=timeout, **kwargs)

    def pip_install(self, *args: str | Path) -> str:
        return self.run("python", "-m", "pip", "install", "--disable-pip-version-check", *args)


@pytest.fixture(scope="session")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Venv]:
    """``fresh_venv(name)``: a new virtualenv holding only pip."""

    def make(name: str) -> Venv:
        path = tmp_path_factory.mktemp(name)
        venv.create(path, with_pip=True, clear=True)
        return Venv(path)

    return make
