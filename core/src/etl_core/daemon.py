"""Spark's Python worker daemon, importing pyspark from its installed package rather than from
``pyspark.zip``: the local engine's ``spark.python.daemon.module``.

Spark puts ``$SPARK_HOME/python/lib/pyspark.zip`` (and py4j's zip) first on its Python workers'
``PYTHONPATH``. Python caches no bytecode for modules imported from a zip: it compiles them
again in every worker process. Measured here, ``import pyspark, pyspark.worker, pyarrow`` took
0.68 s from the zip and 0.26 s from site-packages, in the task workers' daemon and in each
worker it forks. (The daemons that plan a Python data source's read and write are started with
Spark's own module, whatever this setting says.) When a zip is the one inside an
installed pyspark package (pip's pyspark), the same files are importable from that package:
the zip is left out of ``sys.path``. Then Spark's own daemon runs, unchanged.

Imports nothing but the standard library before pyspark.
"""

from __future__ import annotations

import os
import runpy
import sys


def unzipped(path: list[str]) -> list[str]:
    """``path`` without the zips of pyspark and py4j that lie inside a pyspark package installed
    on ``path`` itself (``<entry>/pyspark/python/lib/*.zip``, with ``<entry>/py4j`` for py4j's):
    the same files, importable with cached bytecode."""
    folders = [e for e in path if e and not e.endswith(".zip")]

    def installed(zipped: str) -> bool:
        name = os.path.basename(zipped)
        package = "pyspark" if name == "pyspark.zip" else "py4j" if name.startswith("py4j-") else ""
        lib = os.path.join("pyspark", "python", "lib", name)
        return bool(package) and any(
            os.path.samefile(zipped, os.path.join(f, lib))
            and os.path.isfile(os.path.join(f, package, "__init__.py"))
            for f in folders
            if os.path.exists(os.path.join(f, lib))
        )

    return [e for e in path if not (e.endswith(".zip") and os.path.exists(e) and installed(e))]


if __name__ == "__main__":
    sys.path[:] = unzipped(sys.path)
    runpy.run_module("pyspark.daemon", run_name="__main__", alter_sys=True)
