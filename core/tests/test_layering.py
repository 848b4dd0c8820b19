"""The import contracts of DESIGN §14 (root pyproject.toml, ``lint-imports``) hold, and they
really fail the build when an import breaks one: checked on a copy of etl_core with a
deliberately broken import, run through the same command CI runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import etl_core

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(etl_core.__file__).parent

pytestmark = pytest.mark.slow


def lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:  # shadows the installed etl_core with the copy
        env["PYTHONPATH"] = str(pythonpath)
    command = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"]
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_contracts_hold_on_the_tree():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("config/model.py", "import etl_core.run.runner", "config never imports the run"),
        ("config/bind.py", "import pyspark.sql", "config never imports the run, nor Spark"),
        ("run/live.py", "from etl_core.run import gate", "no import cycle among the modules"),
        ("api.py", "from etl_core import config", "etl_core is layered"),
        ("plugins.py", "from etl_core.run import runner", "the plugin host never imports the run"),
    ],
)
def test_a_broken_import_fails_the_contracts(tmp_path, module, line, broken):
    copy = tmp_path / "src"
    shutil.copytree(PACKAGE, copy / "etl_core", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = copy / "etl_core" / module
    target.write_text(target.read_text() + f"\n{line}\n")
    result = lint_imports(tmp_path, pythonpath=copy)
    assert result.returncode != 0, result.stdout
    verdicts = [line for line in result.stdout.splitlines() if line.startswith(broken)]
    assert verdicts and verdicts[0].endswith(" BROKEN"), result.stdout
