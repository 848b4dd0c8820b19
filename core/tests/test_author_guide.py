"""The plugin author guide's Python snippets run. The `numbers` plugin the guide builds piece by
piece (blocks headed `# src/etl_plugin_numbers/<module>.py`) is assembled from its blocks and
its test (the block headed `# tests/test_numbers.py`) runs against it on the shared Spark
session; every other block runs in order in one namespace that holds `Component` (for the
interface listings, `class Loader(Component): ...`) and `hookimpl` (for the hook reference's
examples, as in a plugin module). The walk-through's blocks (`# file: ...`) run in
tests/test_template.py, in a fresh virtualenv."""

from __future__ import annotations
import __future__

import re
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.spark

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugin-author-guide.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def blocks() -> list[tuple[int, str]]:
    text = GUIDE.read_text()
    return [(text[: m.start()].count("\n") + 1, m.group(1)) for m in BLOCK.finditer(text)]


def test_every_snippet_runs(etl_spark, tmp_path, monkeypatch):
    package = tmp_path / "src" / "etl_plugin_numbers"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    namespace: dict = {"__name__": "guide"}
    # the interface listings' base class, and the marker the hook reference's examples use
    exec("from etl_core import hookimpl\nfrom etl_core.api import Component", namespace)
    numbers_test = None
    for line, code in blocks():
        first = code.partition("\n")[0]
        if first.startswith("# file: "):
            continue  # the walk-through: tests/test_template.py
        if first.startswith("# src/etl_plugin_numbers/"):
            with (package / Path(first[2:]).name).open("a") as module:
                module.write(code + "\n")
        elif first == "# tests/test_numbers.py":
            numbers_test = code
        else:
            flags = __future__.annotations.compiler_flag  # annotations name unimported types
            try:
                exec(compile(code, f"{GUIDE.name}:{line}", "exec", flags=flags), namespace)
            except Exception as exc:
                pytest.fail(f"the snippet at {GUIDE.name}:{line} fails: {exc!r}")
    assert sorted(p.name for p in package.iterdir()) == [
        "__init__.py",
        "components.py",
        "datasource.py",
        "plugin.py",
    ]
    assert numbers_test is not None

    # the assembled plugin, importable here and on Spark's Python workers
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    archive = tmp_path / "etl_plugin_numbers.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in package.iterdir():
            zipped.write(path, f"etl_plugin_numbers/{path.name}")
    etl_spark.sparkContext.addPyFile(str(archive))
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_numbers.py").write_text(numbers_test)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    try:
        code = pytest.main(
            [
                str(tmp_path / "tests"),
                "-q",
                "-p",
                "no:cacheprovider",
                "-c",
                str(tmp_path / "pytest.ini"),
            ]
        )
    finally:
        for name in [m for m in sys.modules if m.startswith("etl_plugin_numbers")]:
            del sys.modules[name]
        shutil.rmtree(package / "__pycache__", ignore_errors=True)
    assert code == 0, "the guide's tests/test_numbers.py failed against the guide's plugin"
