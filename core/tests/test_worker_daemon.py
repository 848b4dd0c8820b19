"""The local engine's Python worker daemon (``etl_core.daemon``) imports pyspark from its
installed package, where Python caches bytecode, instead of from Spark's ``pyspark.zip``."""

from __future__ import annotations

import zipfile

import pytest

from etl_core.daemon import unzipped


def installed_pyspark(site):
    (site / "pyspark" / "python" / "lib").mkdir(parents=True)
    (site / "pyspark" / "__init__.py").write_text("")
    (site / "py4j").mkdir()
    (site / "py4j" / "__init__.py").write_text("")
    lib = site / "pyspark" / "python" / "lib"
    for name in ("pyspark.zip", "py4j-0.10.9.9-src.zip"):
        zipfile.ZipFile(lib / name, "w").close()
    return lib


def test_the_zips_of_the_installed_pyspark_leave_the_path(tmp_path):
    site = tmp_path / "site-packages"
    lib = installed_pyspark(site)
    stdlib = str(tmp_path / "python311.zip")
    path = ["", str(lib / "pyspark.zip"), str(lib / "py4j-0.10.9.9-src.zip"), stdlib, str(site)]
    assert unzipped(path) == ["", stdlib, str(site)]


def test_a_zip_of_another_spark_stays(tmp_path):
    """SPARK_HOME of a Spark of its own: its zip is the pyspark its JVM matches."""
    site = tmp_path / "site-packages"
    installed_pyspark(site)
    other = installed_pyspark(tmp_path / "opt" / "spark")  # its zip, but no package on the path
    path = [str(other / "pyspark.zip"), str(site)]
    assert unzipped(path) == path
    assert unzipped([str(other / "pyspark.zip")]) == [str(other / "pyspark.zip")]


@pytest.mark.spark
def test_the_workers_import_pyspark_from_its_package(etl_spark):
    conf = etl_spark.sparkContext.getConf()
    assert conf.get("spark.python.daemon.module") == "etl_core.daemon"

    def where(_):
        import sys

        import pyspark

        yield pyspark.__file__, [p for p in sys.path if p.endswith("pyspark.zip")]

    [(module, zips)] = etl_spark.sparkContext.parallelize([0], 1).mapPartitions(where).collect()
    assert ".zip" not in module and zips == []
