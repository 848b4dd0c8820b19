"""Plugin discovery end to end: real distributions installed with pip, listed by ``etl plugins``.

The fixture distributions under ``tests/fixtures/`` are installed once into a temporary folder;
every ``etl`` call runs in a subprocess with that folder on ``PYTHONPATH``, so entry points are
found exactly as they would be in a user's environment.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures"
DISTRIBUTIONS = ("etl-plugin-hello", "etl-plugin-broken", "etl-plugin-misspelled")
RUN_CLI = "from etl_core.cli import main; main()"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site-packages")
    for distribution in DISTRIBUTIONS:
        installed = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--no-deps",
                "--target",
                str(target),
                str(FIXTURES / distribution),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert installed.returncode == 0, (
            f"pip could not install {distribution}:\n{installed.stdout}\n{installed.stderr}"
        )
    return target


def python(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` with ``site`` importable and only the given ETL_* variables set."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ETL_")}
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(site), os.environ.get("PYTHONPATH")])
    )
    environment.update(env)
    return subprocess.run(
        [sys.executable, *args], env=environment, capture_output=True, text=True, timeout=120
    )


def etl_plugins(site: Path, *options: str, **env: str) -> subprocess.CompletedProcess[str]:
    return python(site, "-c", RUN_CLI, "plugins", *options, **env)


def lines_naming(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if name in line]


HELLO = re.compile(
    r"^etl-plugin-hello 0\.1\.0  \(entry point 'hello'\)\n  transformer +hello +batch\n"
    r"  validator +even +-$",
    re.M,
)
BUILTINS = re.compile(r"^etl-core \S+\n  extractor +files ", re.M)


def test_installed_plugin_is_listed_next_to_the_builtins(site: Path) -> None:
    result = etl_plugins(site)

    assert result.returncode == 0, result.stderr
    assert BUILTINS.search(result.stdout), result.stdout
    assert HELLO.search(result.stdout), result.stdout


@pytest.mark.parametrize(
    ("entry_point", "module", "cause"),
    [
        ("broken", "etl_plugin_broken.plugin", "needs a driver that is not installed"),
        ("misspelled", "etl_plugin_misspelled.plugin", "unknown hook 'etl_register_extractorz'"),
    ],
)
def test_bad_plugin_is_skipped_with_one_warning_naming_it(
    site: Path, entry_point: str, module: str, cause: str
) -> None:
    result = etl_plugins(site)

    assert result.returncode == 0, result.stderr
    [warning] = lines_naming(result.stderr, f"'{entry_point}'")
    assert warning.startswith(f"warning: etl: skipping plugin '{entry_point}' ({module})")
    assert cause in warning
    assert "Traceback" not in result.stderr
    assert f"etl-plugin-{entry_point}" not in result.stdout
    assert HELLO.search(result.stdout), result.stdout


@pytest.mark.parametrize(
    ("entry_point", "other"), [("broken", "misspelled"), ("misspelled", "broken")]
)
def test_strict_fails_naming_the_plugin_that_cannot_be_loaded(
    site: Path, entry_point: str, other: str
) -> None:
    result = etl_plugins(site, "--strict", ETL_DISABLED_PLUGINS=other)

    assert result.returncode != 0
    [error] = lines_naming(result.stderr, f"'{entry_point}'")
    assert error.startswith(f"error: plugin '{entry_point}' (etl_plugin_{entry_point}.plugin)")
    assert "Traceback" not in result.stderr


def test_disabled_plugins_hides_a_plugin(site: Path) -> None:
    result = etl_plugins(site, ETL_DISABLED_PLUGINS="hello")

    assert result.returncode == 0, result.stderr
    assert "hello" not in result.stdout
    assert BUILTINS.search(result.stdout), result.stdout


def test_load_plugins_loads_only_the_named_ones(site: Path) -> None:
    result = etl_plugins(site, ETL_LOAD_PLUGINS="hello")

    assert result.returncode == 0, result.stderr
    assert HELLO.search(result.stdout), result.stdout
    assert BUILTINS.search(result.stdout), result.stdout
    assert "broken" not in result.stderr + result.stdout
    assert "misspelled" not in result.stderr + result.stdout


SPARK_CHECK = """
import sys
from etl_core.cli import main
main(["plugins"], standalone_mode=False)
print("pyspark imported:", any(m.partition(".")[0] == "pyspark" for m in sys.modules))
"""


def test_listing_plugins_does_not_import_spark(site: Path) -> None:
    result = python(site, "-c", SPARK_CHECK)

    assert result.returncode == 0, result.stderr
    assert HELLO.search(result.stdout), result.stdout
    assert result.stdout.splitlines()[-1] == "pyspark imported: False"


def test_a_plugin_rule_validates_a_real_run(site: Path, tmp_path: Path) -> None:
    """The `even` rule comes from the installed plugin's entry point; odd rows are quarantined."""
    (tmp_path / "n.csv").write_text("n\n" + "".join(f"{i}\n" for i in range(1, 11)))
    (tmp_path / "p.yaml").write_text(
        "name: evens\n"
        "sources:\n  numbers: {type: files, format: csv, path: n.csv, read_schema: 'n INT'}\n"
        "validate:\n  numbers: {on_failure: quarantine, rules: [{even: {column: n}}]}\n"
        "sinks:\n  out: {type: files, input: numbers, path: out, format: json}\n"
        "errors: {dead_letter: {type: files, path: dlq}}\n"
    )
    result = python(site, "-c", RUN_CLI, "run", str(tmp_path / "p.yaml"))
    assert result.returncode == 0, result.stderr
    assert re.search(r"numbers +validate +5\n", result.stdout)
    assert "even(n): FAILED (error), 5 rows" in result.stdout


def test_loading_every_installed_plugin_imports_no_driver_and_no_spark() -> None:
    """`etl plugins`, `etl validate` and the start of `etl run` load every plugin: a plugin's
    registration modules import its drivers (and pyarrow, Spark) only when a component runs."""
    heavy = (
        "pyspark", "pyarrow", "confluent_kafka", "kafka", "psycopg", "pymysql", "boto3", "hvac",
        "adbc_driver_postgresql", "connectorx", "keyring", "prometheus_client",
    )  # fmt: skip
    code = (
        "import sys\n"
        "from etl_core.plugins import get_plugin_host\n"
        "host = get_plugin_host()\n"
        "assert len(host.plugins()) > 5, host.plugins()\n"
        f"print([m for m in {heavy!r} if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
