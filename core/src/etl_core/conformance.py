"""Conformance suites for extractors and loaders (v1): inherit them, provide a few hooks, get
the tests. Nothing here knows a particular system; a connector's test module subclasses:

.. code-block:: python

    from etl_core.testing import ExtractorConformance, LoaderConformance, TypeCase

    class TestMyDbLoader(LoaderConformance):
        component = "mydb"                       # the loader's type name
        type_cases = [TypeCase("qty", "INTEGER", (1, None, -5), "int32")]

        @pytest.fixture
        def target(self):                        # a fresh, unique target name per test
            ...
        def create_target(self, target, columns, rows=(), key=()): ...
        def read_target(self, target): ...       # list of dicts, the target's native values
        def sink_block(self, target, **options): ...   # the sink block, without `input`
        def failing_sink_block(self, target): ...      # a sink block that fails at run time

Hooks (methods or fixtures of the subclass):

- fixture ``target``: a fresh target name (a table, a topic, a prefix) unique to the test;
  the subclass drops what it created when the test ends.
- ``create_target(target, columns, rows=(), key=())``: create the target with ``columns``
  (a sequence of ``(name, native_type)``), insert ``rows`` (mappings of native values), and
  make ``key`` its primary/unique key when given.
- ``read_target(target) -> list[dict]``: every row of the target with native values (what
  ``create_target`` accepts), in any order.
- ``sink_block(target, **options)`` / ``source_block(target, **options)``: the pipeline block
  (``type`` and options) that writes / reads ``target``. Extra ``options`` (``mode``,
  ``key``) are the component's own and merged in.
- ``partition_options(column, partitions)``: extra source options for a partitioned read.
- ``failing_sink_block(target)`` / ``failing_source_block(target)``: a block that fails at run
  time (e.g. a missing table); the tests check the error and that no secret leaks.
- ``credential_values()``: the credential fields by value (default: a marker ``password``);
  the suite serves them from an ``env`` credentials entry named ``conformance``, added as
  ``credentials: conformance`` to every block the hooks build.
- ``staging_leftovers(target) -> list[str]``: staging objects left behind (default: none known).
- ``type_cases``: a list of :class:`TypeCase`, one per row of the connector's type mapping.
- ``modes``: the load modes the loader supports (``upsert`` tests need a key).

Both suites run pipelines through :func:`etl_core.testing.run_pipeline` on the shared
``etl_spark`` session, with parquet files (pyarrow) on the other end, and the plugin host
from the ``conformance_host`` fixture (entry points loaded; override it to narrow).
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import pytest

from etl_core.api import RunMetrics
from etl_core.errors import EtlError
from etl_core.plugins import PluginHost, get_plugin_host

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

__all__ = ["ExtractorConformance", "LoaderConformance", "TypeCase"]

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


def _norm(value: Any) -> Any:
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
        return [_norm(v) for v in value]
    return value


def _rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[tuple[Any, ...]]:
    keyed = [tuple(_norm(row.get(c)) for c in columns) for row in rows]
    return sorted(keyed, key=repr)


class _Base:
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

    # -- shared machinery ------------------------------------------------------------------
    @pytest.fixture
    def conformance_host(self) -> PluginHost:
        return get_plugin_host()

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
        from etl_core.testing import run_pipeline

        def runner(
            sources: Mapping[str, Any],
            sinks: Mapping[str, Any],
            transforms: Mapping[str, Any] | None = None,
            run_id: str | None = None,
        ) -> RunMetrics:
            pipeline = {
                "name": "conformance",
                "credentials": conformance_env,
                "sources": dict(sources),
                "sinks": dict(sinks),
            }
            if transforms:
                pipeline["transforms"] = dict(transforms)
            return run_pipeline(
                pipeline, spark=etl_spark, host=conformance_host, base_dir=tmp_path, run_id=run_id
            )

        return runner

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
        for field, value in self.credential_values().items():
            if any(word in field for word in ("password", "secret", "token")) and value:
                assert value not in text, f"the {field} leaked into an error message"


class LoaderConformance(_Base):
    """Tests every loader must pass. Subclass, set ``component`` and provide the hooks."""

    component: ClassVar[str]
    modes: ClassVar[frozenset[str]] = frozenset({"append", "overwrite", "error"})

    def sink_block(self, target: str, **options: Any) -> dict[str, Any]:
        raise NotImplementedError

    def failing_sink_block(self, target: str) -> dict[str, Any]:
        raise NotImplementedError

    def load(
        self,
        run: Any,
        tmp_path: Path,
        target: str,
        rows: Sequence[Mapping[str, Any]],
        schema: pa.Schema | None = None,
        run_id: str | None = None,
        transforms: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> RunMetrics:
        folder = tmp_path / f"input-{uuid.uuid4().hex[:8]}"
        self.write_parquet(folder, rows, schema or self.basic_schema())
        sink = {**self._with_credentials(self.sink_block(target, **options))}
        sink["input"] = "last" if transforms else "rows"
        return run(
            {"rows": {"type": "files", "format": "parquet", "path": str(folder)}},
            {"out": sink},
            transforms=transforms,
            run_id=run_id,
        )

    def assert_target(self, target: str, rows: Sequence[Mapping[str, Any]]) -> None:
        columns = [name for name, _ in BASIC]
        assert _rows(self.read_target(target), columns) == _rows(rows, columns)

    def test_round_trip(self, run, tmp_path, target):
        self.create_target(target, self.basic_columns())
        rows = self.basic_rows(1000)
        metrics = self.load(run, tmp_path, target, rows, mode="append")
        assert metrics.status == "succeeded"
        self.assert_target(target, rows)
        assert self.staging_leftovers(target) == []

    def test_empty_input(self, run, tmp_path, target):
        self.create_target(target, self.basic_columns())
        metrics = self.load(run, tmp_path, target, [], mode="append")
        staged = metrics.stage("out", "load")
        assert staged is not None and staged.rows_out == 0
        assert self.read_target(target) == []

    def test_nulls(self, run, tmp_path, target):
        self.create_target(target, self.basic_columns())
        rows: list[dict[str, Any]] = [
            {"id": 1, "name": None, "amount": None},
            {"id": 2, "name": "", "amount": 0.0},
        ]
        self.load(run, tmp_path, target, rows, mode="append")
        self.assert_target(target, rows)

    def test_every_mapped_type(self, run, tmp_path, target):
        import pyarrow as pa

        cases = [case for case in self.type_cases if case.loadable]
        if not cases:
            pytest.skip("no loadable type_cases declared")
        count = max(len(case.values) for case in cases)
        columns = [("id", self.basic_types["id"]), *((c.column, c.native_type) for c in cases)]
        self.create_target(target, columns)
        schema = pa.schema([("id", pa.int64()), *((c.column, c.arrow()) for c in cases)])
        rows = [
            {"id": i, **{c.column: c.values[i] if i < len(c.values) else None for c in cases}}
            for i in range(count)
        ]
        self.load(run, tmp_path, target, rows, schema=schema, mode="append")
        back = {row["id"]: row for row in self.read_target(target)}
        assert sorted(back) == list(range(count))
        for case in cases:
            natives = case.native_values
            got = [_norm(back[i][case.column]) for i in range(len(natives))]
            want = [_norm(v) for v in natives]
            assert got == want, f"type case {case.column} ({case.native_type})"

    def test_overwrite_replaces_rows(self, run, tmp_path, target):
        self.create_target(target, self.basic_columns(), self.basic_rows(5))
        rows = self.basic_rows(3, start=100)
        self.load(run, tmp_path, target, rows, mode="overwrite")
        self.assert_target(target, rows)

    def test_error_mode_refuses_a_target_with_rows(self, run, tmp_path, target):
        old = self.basic_rows(2)
        self.create_target(target, self.basic_columns(), old)
        with pytest.raises(EtlError) as failure:
            self.load(run, tmp_path, target, self.basic_rows(3, start=10), mode="error")
        assert "out" in str(failure.value)
        self.assert_target(target, old)
        assert self.staging_leftovers(target) == []

    def test_upsert_updates_and_inserts(self, run, tmp_path, target):
        if "upsert" not in self.modes:  # then asking for it is a clear error, nothing written
            self.create_target(target, self.basic_columns(), self.basic_rows(2))
            with pytest.raises(EtlError, match="upsert"):
                self.load(run, tmp_path, target, self.basic_rows(3), mode="upsert")
            self.assert_target(target, self.basic_rows(2))
            return
        self.create_target(target, self.basic_columns(), self.basic_rows(10), key=["id"])
        changed = [{**row, "name": "changed"} for row in self.basic_rows(10)[5:]]
        new = self.basic_rows(5, start=11)
        self.load(run, tmp_path, target, changed + new, mode="upsert", key=["id"])
        self.assert_target(target, self.basic_rows(10)[:5] + changed + new)

    def test_partition_boundaries_lose_and_duplicate_nothing(self, run, tmp_path, target):
        """Many small input partitions, ids spanning negative to large values."""
        self.create_target(target, self.basic_columns())
        ids = [-(2**40), -1, 0, 1, 2, 3, 2**31 - 1, 2**31, 2**40]
        rows = [{"id": i, "name": str(i), "amount": 1.0} for i in ids]
        self.load(run, tmp_path, target, rows, mode="append")
        self.assert_target(target, rows)

    def test_failure_mid_load_leaves_target_unchanged(self, run, tmp_path, target):
        old = self.basic_rows(3, start=5000)
        self.create_target(target, self.basic_columns(), old)
        transforms = {
            "last": {
                "type": "sql",
                "inputs": ["rows"],
                "query": "SELECT id, CASE WHEN id = 2999 THEN raise_error('boom mid-load') "
                "ELSE name END AS name, amount FROM rows",
            }
        }
        with pytest.raises(EtlError):
            self.load(
                run, tmp_path, target, self.basic_rows(3000), transforms=transforms, mode="append"
            )
        self.assert_target(target, old)
        assert self.staging_leftovers(target) == []

    def test_rerun_with_the_same_run_id_is_idempotent(self, run, tmp_path, target):
        self.create_target(target, self.basic_columns())
        rows = self.basic_rows(20)
        first = self.load(run, tmp_path, target, rows, run_id="conformance-run-1", mode="append")
        again = self.load(run, tmp_path, target, rows, run_id="conformance-run-1", mode="append")
        assert first.status == again.status == "succeeded"
        self.assert_target(target, rows)
        assert self.staging_leftovers(target) == []

    def test_secrets_do_not_leak_into_errors(self, run, tmp_path, target):
        folder = self.write_parquet(tmp_path / "in", self.basic_rows(3), self.basic_schema())
        sink = {**self._with_credentials(self.failing_sink_block(target)), "input": "rows"}
        with pytest.raises(EtlError) as failure:
            run(
                {"rows": {"type": "files", "format": "parquet", "path": str(folder)}}, {"out": sink}
            )
        self.assert_no_secret(failure.value)
        metrics = getattr(failure.value, "metrics", None)
        if metrics is not None:
            self.assert_no_secret(str(metrics.to_dict()))


class ExtractorConformance(_Base):
    """Tests every extractor must pass. Subclass, set ``component`` and provide the hooks."""

    component: ClassVar[str]
    #: partition counts tried by the partition test
    partition_counts: ClassVar[tuple[int, ...]] = (1, 3, 7, 50)

    def source_block(self, target: str, **options: Any) -> dict[str, Any]:
        raise NotImplementedError

    def partition_options(self, column: str, partitions: int) -> dict[str, Any]:
        raise NotImplementedError

    def failing_source_block(self, target: str) -> dict[str, Any]:
        raise NotImplementedError

    def extract(self, run: Any, tmp_path: Path, target: str, **options: Any) -> list[dict]:
        out = tmp_path / f"out-{uuid.uuid4().hex[:8]}"
        run(
            {"src": self._with_credentials(self.source_block(target, **options))},
            {"out": {"type": "files", "input": "src", "path": str(out), "mode": "overwrite"}},
        )
        return self.read_parquet(out) if out.exists() else []

    def test_round_trip(self, run, tmp_path, target):
        rows = self.basic_rows(1000)
        self.create_target(target, self.basic_columns(), rows)
        got = self.extract(run, tmp_path, target)
        assert _rows(got, ["id", "name", "amount"]) == _rows(rows, ["id", "name", "amount"])

    def test_empty_table(self, run, tmp_path, target):
        self.create_target(target, self.basic_columns())
        assert self.extract(run, tmp_path, target) == []

    def test_nulls(self, run, tmp_path, target):
        rows: list[dict[str, Any]] = [
            {"id": 1, "name": None, "amount": None},
            {"id": 2, "name": "", "amount": 0.0},
        ]
        self.create_target(target, self.basic_columns(), rows)
        got = self.extract(run, tmp_path, target)
        assert _rows(got, ["id", "name", "amount"]) == _rows(rows, ["id", "name", "amount"])

    def test_every_mapped_type(self, run, tmp_path, target):
        if not self.type_cases:
            pytest.skip("no type_cases declared")
        count = max(len(case.native_values) for case in self.type_cases)
        columns = [("id", self.basic_types["id"])]
        columns += [(c.column, c.native_type) for c in self.type_cases]
        rows = [
            {
                "id": i,
                **{
                    c.column: c.native_values[i] if i < len(c.native_values) else None
                    for c in self.type_cases
                },
            }
            for i in range(count)
        ]
        self.create_target(target, columns, rows)
        back = {row["id"]: row for row in self.extract(run, tmp_path, target)}
        assert sorted(back) == list(range(count))
        for case in self.type_cases:
            got = [_norm(back[i][case.column]) for i in range(len(case.values))]
            want = [_norm(v) for v in case.values]
            assert got == want, f"type case {case.column} ({case.native_type})"

    def test_partition_boundaries(self, run, tmp_path, target):
        ids = [-(2**40), -7, -1, 0, 1, 2, 3, 10, 11, 99, 100, 2**31 - 1, 2**31, 2**40]
        rows = [{"id": i, "name": str(i), "amount": 1.0} for i in ids]
        rows.append({"id": None, "name": "null key", "amount": 2.0})
        self.create_target(target, self.basic_columns(), rows)
        for partitions in self.partition_counts:
            got = self.extract(run, tmp_path, target, **self.partition_options("id", partitions))
            assert _rows(got, ["id", "name"]) == _rows(rows, ["id", "name"]), partitions

    def test_secrets_do_not_leak_into_errors(self, run, tmp_path, target):
        source = self._with_credentials(self.failing_source_block(target))
        sink = {"type": "files", "input": "src", "path": str(tmp_path / "out")}
        with pytest.raises(EtlError) as failure:
            run({"src": source}, {"out": sink})
        self.assert_no_secret(failure.value)
        metrics = getattr(failure.value, "metrics", None)
        if metrics is not None:
            self.assert_no_secret(str(metrics.to_dict()))
