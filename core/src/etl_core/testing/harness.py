"""The machinery both conformance suites share: type cases, the generic rows and columns, the
``run`` fixture serving credentials from an ``env`` entry, parquet on the other end."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import pytest

from etl_core.api import RunMetrics
from etl_core.plugins import PluginHost, get_plugin_host
from etl_core.testing.fixtures import run_pipeline
from etl_core.testing.selection import MARKER, not_applicable

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

__all__ = [
    "BASIC",
    "SECRET_MARKER",
    "ConformanceBase",
    "TypeCase",
    "kill_while_staging",
    "norm",
    "rows_of",
]

SECRET_MARKER = "etl-conformance-s3cr3t"  # noqa: S105 - a marker to look for, not a secret


@attrs.frozen
class TypeCase:
    """One row of a connector's type mapping.

    ``values`` are what Spark holds (and what pyarrow reads back from parquet written by
    Spark); ``native`` are the same values as the system stores them (what
    ``create_target`` inserts and ``read_target`` returns), defaulting to ``values``.
    ``arrow_type`` is the pyarrow type of ``values`` (a ``pa.DataType`` or the name of a
    ``pyarrow`` factory, e.g. ``"int32"``) used to write the loader's input. Include ``None``
    in ``values`` to test NULLs of the type. ``loadable=False`` skips the loader direction.
    """

    column: str
    native_type: str
    values: tuple[Any, ...]
    arrow_type: Any
    native: tuple[Any, ...] | None = None
    loadable: bool = True

    @property
    def native_values(self) -> tuple[Any, ...]:
        return self.values if self.native is None else self.native

    def arrow(self) -> pa.DataType:
        import pyarrow as pa

        return (
            getattr(pa, self.arrow_type)() if isinstance(self.arrow_type, str) else self.arrow_type
        )


#: the columns of the generic tests, with their Arrow types
BASIC = (("id", "int64"), ("name", "string"), ("amount", "float64"))


def norm(value: Any) -> Any:
    """Comparable form: floats rounded, decimals as strings, datetimes made naive UTC."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, decimal.Decimal):
        return str(value.normalize()) if value == value else "NaN"
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    if isinstance(value, list | tuple):
        return [norm(v) for v in value]
    return value


def rows_of(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[tuple[Any, ...]]:
    keyed = [tuple(norm(row.get(c)) for c in columns) for row in rows]
    return sorted(keyed, key=repr)


class ConformanceBase:
    """Hooks and fixtures both suites use; see :mod:`etl_core.testing.conformance`."""

    type_cases: ClassVar[Sequence[TypeCase]] = ()
    #: native types of the generic columns ``id``, ``name``, ``amount``
    basic_types: ClassVar[Mapping[str, str]] = {
        "id": "BIGINT",
        "name": "VARCHAR(100)",
        "amount": "DOUBLE PRECISION",
    }

    # -- hooks the subclass provides -------------------------------------------------------
    @pytest.fixture
    def target(self) -> str:
        raise NotImplementedError("provide a `target` fixture: a fresh target name per test")

    def create_target(
        self,
        target: str,
        columns: Sequence[tuple[str, str]],
        rows: Sequence[Mapping[str, Any]] = (),
        key: Sequence[str] = (),
    ) -> None:
        raise NotImplementedError

    def read_target(self, target: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    def staging_leftovers(self, target: str) -> list[str]:
        return []

    def unreachable_options(self) -> dict[str, Any] | None:
        """Options that point the component's block at an endpoint nobody answers (a closed
        port, a short connect timeout); ``None`` for a component without an endpoint, whose
        unreachable-endpoint case is then skipped, saying so."""
        return None

    #: why there is no bad-credentials case, when the component checks logins but its test
    #: endpoint cannot (the skip says so instead of "checks no credentials")
    no_refusal: ClassVar[str | None] = None

    def refused_credentials(self) -> tuple[dict[str, str], dict[str, Any]] | None:
        """For the bad-credentials case: credential values the component's test endpoint
        refuses (a wrong password; fields among :meth:`credential_values`'s) and the block
        options that point at an endpoint that checks them (``{}`` when the usual one does);
        ``None`` for a component that checks no credentials, whose case is then skipped,
        saying so."""
        return None

    def refused(self, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
        """Serve the refused credential values from the ``conformance`` entry; return the
        block options of :meth:`refused_credentials`."""
        answer = self.refused_credentials()
        if answer is None:
            why = self.no_refusal or f"{self.component} checks no credentials"  # type: ignore[attr-defined]
            pytest.skip(why)
        values, options = answer
        unknown = set(values) - set(self.credential_values())
        assert not unknown, f"refused_credentials names fields credential_values lacks: {unknown}"
        for field, value in values.items():
            monkeypatch.setenv(f"ETL_CONFORMANCE_{field.upper()}", value)
        self.refused_values = values
        return options

    def unreachable(self) -> dict[str, Any]:
        options = self.unreachable_options()
        if options is None:
            pytest.skip(f"{self.component} talks to no endpoint")  # type: ignore[attr-defined]
        return options

    # -- shared machinery ------------------------------------------------------------------
    @pytest.fixture
    def conformance_host(self) -> PluginHost:
        return get_plugin_host()

    @pytest.fixture(autouse=True)
    def _applies(self, request: pytest.FixtureRequest, conformance_host: PluginHost) -> None:
        """Skip, saying why, a case marked ``applies(...)`` that this component does not
        declare (the pytest plugin already deselected it when the component is installed)."""
        marker = request.node.get_closest_marker(MARKER)
        if marker is not None:
            kind, name = self.component_kind, self.component  # type: ignore[attr-defined]
            reason = not_applicable(conformance_host.component(kind, name), marker)
            if reason:
                pytest.skip(reason)

    def credential_values(self) -> dict[str, str]:
        """The credential fields the components take, by value. The suite serves them through
        an ``env`` credentials entry named ``conformance`` and checks that no value of a
        ``password``/``secret``/``token`` field ever shows in an error. Override to add
        fields (``{**super().credential_values(), "user": "etl"}``) or to use a password
        the server really checks."""
        return {"password": SECRET_MARKER}

    @pytest.fixture
    def conformance_env(self, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
        fields = {}
        for field, value in self.credential_values().items():
            variable = f"ETL_CONFORMANCE_{field.upper()}"
            monkeypatch.setenv(variable, value)
            fields[field] = variable
        return {"conformance": {"provider": "env", "fields": fields}}

    @pytest.fixture
    def run(
        self,
        etl_spark: SparkSession,
        tmp_path: Path,
        conformance_host: PluginHost,
        conformance_env: dict[str, Any],
    ) -> Any:
        def runner(
            sources: Mapping[str, Any],
            sinks: Mapping[str, Any],
            transforms: Mapping[str, Any] | None = None,
            run_id: str | None = None,
            start_over: bool = False,
            **top: Any,
        ) -> RunMetrics:
            pipeline = {
                "name": "conformance",
                "credentials": conformance_env,
                "sources": dict(sources),
                "sinks": dict(sinks),
                **top,
            }
            if transforms:
                pipeline["transforms"] = dict(transforms)
            return run_pipeline(
                pipeline, spark=etl_spark, host=conformance_host, base_dir=tmp_path,
                run_id=run_id, start_over=start_over,
            )  # fmt: skip

        return runner

    @pytest.fixture
    def preflight(
        self, tmp_path: Path, conformance_host: PluginHost, conformance_env: dict[str, Any]
    ) -> Any:
        """``preflight(sources, sinks)``: bind the pipeline and run the checks ``etl run``
        makes before Spark starts; returns their seconds or raises ``PreflightFailed``."""
        from etl_core import config
        from etl_core.run.preflight import preflight_alone

        def checker(sources: Mapping[str, Any], sinks: Mapping[str, Any]) -> float:
            pipeline = {"name": "conformance", "credentials": conformance_env}
            pipeline.update(sources=dict(sources), sinks=dict(sinks))
            bound = config.check(data=pipeline, base_dir=tmp_path, host=conformance_host)
            return preflight_alone(bound, conformance_host)

        return checker

    @staticmethod
    def _with_credentials(block: Mapping[str, Any]) -> dict[str, Any]:
        return {**block, "credentials": "conformance"}

    @staticmethod
    def basic_rows(count: int, start: int = 1) -> list[dict[str, Any]]:
        return [
            {
                "id": i,
                "name": None if i % 7 == 0 else f"name {i}",
                "amount": None if i % 5 == 0 else i * 1.5,
            }
            for i in range(start, start + count)
        ]

    def basic_columns(self) -> list[tuple[str, str]]:
        return [(name, self.basic_types[name]) for name, _ in BASIC]

    @staticmethod
    def write_parquet(
        folder: Path, rows: Sequence[Mapping[str, Any]], schema: pa.Schema, files: int = 3
    ) -> Path:
        """Write ``rows`` as ``files`` parquet files (so Spark reads several partitions)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        folder.mkdir(parents=True, exist_ok=True)
        chunks = [rows[i::files] for i in range(files)] if rows else [[]]
        for i, chunk in enumerate(chunks):
            table = pa.Table.from_pylist(list(chunk), schema=schema)
            pq.write_table(table, folder / f"part-{i}.parquet")
        return folder

    @staticmethod
    def basic_schema() -> pa.Schema:
        import pyarrow as pa

        return pa.schema([(name, getattr(pa, kind)()) for name, kind in BASIC])

    @staticmethod
    def read_parquet(folder: Path) -> list[dict[str, Any]]:
        import pyarrow.dataset as ds

        return ds.dataset(folder, format="parquet").to_table().to_pylist()

    def assert_no_secret(self, exc: BaseException | str) -> None:
        text = exc if isinstance(exc, str) else f"{exc!s}\n{exc!r}"
        values = [*self.credential_values().items(), *getattr(self, "refused_values", {}).items()]
        for field, value in values:
            if any(word in field for word in ("password", "secret", "token")) and value:
                assert value not in text, f"the {field} leaked into an error message"


def kill_while_staging(
    pipeline: Path, *, sink: str, started: Callable[[], bool], grace_s: float = 1.0
) -> None:
    """Run ``etl run pipeline`` in its own process group, wait until it says it is staging
    ``sink`` (its progress lines on stderr) and ``started()`` sees staging written, give its
    tasks ``grace_s`` more, then SIGKILL the whole group (driver, JVM, Python workers) as an
    out-of-memory killer would."""
    import os
    import select
    import signal
    import subprocess
    import sys
    import time

    process = subprocess.Popen(
        [sys.executable, "-c", "from etl_core.cli import main; main()", "run", str(pipeline)],
        cwd=pipeline.parent,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + 180
    try:
        while not (any(f"staging {sink} " in line for line in seen) and started()):
            assert process.poll() is None, f"etl run ended first:\n{''.join(seen)}"
            assert time.monotonic() < deadline, f"staging never started:\n{''.join(seen)}"
            if select.select([process.stderr], [], [], 0.2)[0]:
                seen.append(process.stderr.readline())
        time.sleep(grace_s)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "".join(seen)
