"""The ``s3`` extractor and loader: listing, planning, manifests and publishing on the driver
(pyarrow.fs), rows on the executors (the ``etl_s3`` data source)."""

from __future__ import annotations

import fnmatch
import json
import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from etl_core import (
    Context,
    EtlError,
    Extractor,
    LiveRuns,
    Loader,
    LoadError,
    PermanentError,
    Preflight,
    Staged,
    datasources,
    manifests,
)
from etl_plugin_s3.client import Connection, s3_url, translate
from etl_plugin_s3.options import S3SinkOptions, S3SourceOptions

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType

_INTEGER = re.compile(r"^-?\d{1,18}$")


def _root(bucket: str, prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{bucket}/{prefix}" if prefix else bucket


def _data_source_options(connection: Connection, plan: Mapping[str, Any], what: str) -> dict:
    return {
        "connection": connection.public_json(),
        "secret": connection.secret_json(),
        "plan": plan,
        "what": what,
    }


@attrs.frozen
class _Object:
    path: str  # bucket/key
    relative: str  # to the prefix (or the glob's base): where hive folders are read
    mtime: float
    size: int


class S3Extractor(Extractor):
    """Read parquet, csv or json(l) objects under a prefix or matching a glob, in parallel on
    the executors. A prefix an etl sink wrote is read through its manifests: only the objects
    of published runs."""

    name = "s3"
    Options = S3SourceOptions
    capabilities = frozenset({"batch", "partitioned_read", "incremental"})

    def endpoint(self, options: S3SourceOptions) -> str:
        return f"{options.endpoint_url or 's3'}/{options.bucket}"

    def check(self, options: S3SourceOptions, *, incremental: Any) -> list[str]:
        return manifests.incremental_problems(incremental, "s3")

    def preflight(self, ctx: Preflight, options: S3SourceOptions) -> None:
        """The bucket answers with these credentials."""
        _preflight(options)

    def extract(self, ctx: Context, options: S3SourceOptions) -> DataFrame:
        what, capture = self._what(ctx, options)
        connection = Connection.of(options, what)
        fs = connection.filesystem()
        try:
            every = self._objects(fs, options)
            if not every:
                _require_bucket(fs, options.bucket, what)
            paths = self._incremental(ctx, every)
            footers = _footers(fs, options, paths, need_first=not ctx.read_schema)
            # nothing new since the bookmark: the columns of what is there, and no rows
            schema = self._schema(ctx, fs, options, paths or every[:1], footers)
            parts = self._parts(options, paths, footers, datasources.parallelism(ctx.spark))
        except OSError as exc:
            raise translate(exc, what) from None
        if schema is None:
            raise PermanentError(
                f"{what}: no data objects there; declare `read_schema` on the source to read "
                "it as an empty dataset, or check `bucket`/`prefix`"
            )
        return self._load(ctx, options, connection, what, schema, parts, capture)

    def replay(
        self, ctx: Context, options: S3SourceOptions, records: DataFrame, schema: StructType
    ) -> DataFrame:
        """``etl dlq replay`` of this source's ``extract`` dead letters (one per corrupt
        object, its ``source_position`` the object's URL): read those objects again with the
        source's options now. An object fixed since is read whole; one still unreadable is
        dead-lettered again (``on_corrupt: dead_letter``) or fails the replay."""
        import pyarrow.fs as pafs

        what, capture = self._what(ctx, options)
        positions = sorted(
            {r[0] for r in records.select("source_position").distinct().collect() if r[0]}
        )
        if not positions:
            return ctx.spark.createDataFrame([], schema)
        paths = []
        for position in positions:
            path = position.removeprefix("s3://")
            if path == position or path.split("/", 1)[0] != options.bucket:
                raise PermanentError(
                    f"{what}: cannot replay the dead letter of {position!r}: it names no "
                    f"object of bucket {options.bucket!r}"
                )
            paths.append(path)
        connection = Connection.of(options, what)
        fs = connection.filesystem()
        root = _base(options)
        try:
            objects = []
            for info in fs.get_file_info(paths):
                if info.type != pafs.FileType.File:
                    raise PermanentError(
                        f"{what}: cannot replay the dead letter of {s3_url(info.path)}: the "
                        "object is gone"
                    )
                relative = info.path.removeprefix(root + "/")
                if relative == info.path:
                    relative = info.path.split("/", 1)[1]
                objects.append(_Object(info.path, relative, info.mtime.timestamp(), info.size))
            footers = _footers(fs, options, objects, need_first=False)
            parts = self._parts(options, objects, footers, datasources.parallelism(ctx.spark))
        except OSError as exc:
            raise translate(exc, what) from None
        return self._load(ctx, options, connection, what, schema, parts, capture)

    @staticmethod
    def _what(ctx: Context, options: S3SourceOptions) -> tuple[str, bool]:
        location = s3_url((options.glob and f"{options.bucket}/{options.glob}") or
                          _root(options.bucket, options.prefix))  # fmt: skip
        what = f"source {ctx.dataset!r} ({location})"
        capture = options.on_corrupt == "dead_letter"
        if capture and not ctx.dead_letter_sink:
            raise PermanentError(
                f"{what}: `on_corrupt: dead_letter` needs a dead-letter sink; add "
                "`errors: {dead_letter: {type: files, path: dlq/}}` (or an s3 one)"
            )
        return what, capture

    def _load(
        self,
        ctx: Context,
        options: S3SourceOptions,
        connection: Connection,
        what: str,
        schema: StructType,
        parts: list[dict[str, Any]],
        capture: bool,
    ) -> DataFrame:
        from pyspark.sql.types import StringType, StructField, StructType

        from etl_plugin_s3.datasource import CORRUPT, POSITION, S3DataSource

        if not parts:
            ctx.report_rows(0)  # empty: Spark may optimise a count of it away
            return ctx.spark.createDataFrame([], schema)
        if capture:  # a copy: ``schema`` may be the caller's
            extra = [StructField(CORRUPT, StringType()), StructField(POSITION, StringType())]
            schema = StructType([*schema.fields, *extra])
        plan = {
            "format": options.format,
            "compression": options.compression,
            "header": options.header,
            "delimiter": options.delimiter,
            "capture": capture,
            "parts": parts,
        }
        df = datasources.read(
            ctx.spark, S3DataSource, schema, _data_source_options(connection, plan, what)
        )
        return self._split_corrupt(ctx, df, options) if capture else df

    @staticmethod
    def _objects(fs: pafs.FileSystem, options: S3SourceOptions) -> list[_Object]:
        """The visible objects to read; under a prefix with manifests, only the published."""
        if options.glob is None:
            root = _base(options)
            found = manifests.data_files(fs, root)
            listed = manifests.manifest_files(fs, root)
            names = sorted(found) if listed is None else [f for f in listed if f in found]
            return [
                _Object(f"{root}/{n}", n, found[n].mtime.timestamp(), found[n].size) for n in names
            ]
        root = _base(options)
        base = root[len(options.bucket) + 1 :]
        pattern = _glob_regex(options.glob[len(base) :].lstrip("/"))
        found = manifests.data_files(fs, root)
        return [
            _Object(f"{root}/{n}", n, info.mtime.timestamp(), info.size)
            for n, info in sorted(found.items())
            if pattern.fullmatch(n)
        ]

    @staticmethod
    def _incremental(ctx: Context, every: list[_Object]) -> list[_Object]:
        if ctx.incremental is None:
            return every
        new, bookmark = manifests.modified_since({o.path: o.mtime for o in every}, ctx.bookmark)
        if bookmark is not None:
            ctx.propose_bookmark(bookmark)
        chosen = set(new)
        return [o for o in every if o.path in chosen]

    def _schema(
        self,
        ctx: Context,
        fs: pafs.FileSystem,
        options: S3SourceOptions,
        objects: list[_Object],
        footers: Mapping[str, _Footer | None],
    ) -> StructType | None:
        if ctx.read_schema:
            return ctx.spark.createDataFrame([], ctx.read_schema).schema
        if not objects:
            return None
        from pyspark.sql.pandas.types import from_arrow_schema
        from pyspark.sql.types import LongType, StringType, StructType

        footer = footers.get(objects[0].path)
        arrow = footer.schema if footer is not None else _first_schema(fs, options, objects[0])
        schema = StructType(list(from_arrow_schema(arrow).fields))
        if options.partitioning == "hive":
            values: dict[str, list[str | None]] = {}
            for obj in objects:
                for column, value in _hive_values(obj.relative).items():
                    values.setdefault(column, []).append(value)
            for column, seen in values.items():
                if column not in schema.names:
                    numbers = all(v is None or _INTEGER.match(v) for v in seen)
                    schema = schema.add(column, LongType() if numbers else StringType())
        return schema

    @staticmethod
    def _parts(
        options: S3SourceOptions,
        objects: list[_Object],
        footers: Mapping[str, _Footer | None],
        parallelism: int,
    ) -> list[dict[str, Any]]:
        """One partition per object, or, for parquet with ``split_row_groups``, per run of
        consecutive row groups of one object of about ``_split_bytes`` (as Spark splits
        files): as many partitions as cores for small inputs, 128 MiB each for large ones."""
        parts = []
        split = _split_bytes(objects, parallelism)
        for obj in objects:
            values = _hive_values(obj.relative) if options.partitioning == "hive" else {}
            groups: list[list[int] | None] = [None]
            footer = footers.get(obj.path)
            if footer is not None and footer.sizes:
                groups = _group_row_groups(footer.sizes, split)
            parts += [{"path": obj.path, "row_groups": g, "values": values} for g in groups]
        return parts

    @staticmethod
    def _split_corrupt(ctx: Context, df: DataFrame, options: S3SourceOptions) -> DataFrame:
        """Objects that could not be read (one marker row each) to the dead letters; the rest
        on. The read is persisted: one pass serves both."""
        from pyspark.sql import functions as F

        from etl_plugin_s3.datasource import CORRUPT, POSITION

        return datasources.split_unreadable(
            ctx,
            df,
            CORRUPT,
            rule="corrupt_object",
            message=F.col(CORRUPT),
            position=POSITION,
            row=F.to_json(F.struct(F.col(POSITION).alias("object"))),
            drop=[POSITION],
        )


def _base(options: S3SourceOptions) -> str:
    """``bucket/prefix``, or ``bucket/<the glob's literal folders>``: where hive folders and
    relative names start."""
    if options.glob is None:
        return _root(options.bucket, options.prefix)
    literal = re.split(r"[*?\[]", options.glob, maxsplit=1)[0]
    return _root(options.bucket, posixpath.dirname(literal))


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """``*`` and ``?`` within one path segment, ``**`` across segments."""
    parts = re.split(r"(\*\*/?)", pattern)
    regex = "".join(
        ".*" if part.startswith("**") else fnmatch.translate(part)[4:-3].replace(".*", "[^/]*")
        for part in parts
    )
    return re.compile(regex)


def _hive_values(relative: str) -> dict[str, str | None]:
    from etl_plugin_s3.datasource import HIVE_NULL

    values: dict[str, str | None] = {}
    for segment in relative.split("/")[:-1]:
        column, sep, value = segment.partition("=")
        if sep and column:
            from urllib.parse import unquote

            values[column] = None if value == HIVE_NULL else unquote(value)
    return values


def _first_schema(fs: pafs.FileSystem, options: S3SourceOptions, obj: _Object) -> pa.Schema:
    import pyarrow as pa

    if options.format == "parquet":
        import pyarrow.parquet as pq

        try:
            with fs.open_input_file(obj.path) as source:
                return pq.ParquetFile(source).schema_arrow
        except (pa.ArrowInvalid, OSError) as exc:
            if isinstance(exc, OSError) and "AWS Error" in str(exc):
                raise
            raise PermanentError(
                f"{s3_url(obj.path)} is not a readable parquet object ({exc}); declare "
                "`read_schema` to read the others (with `on_corrupt: dead_letter`), or "
                "remove it"
            ) from None
    from etl_plugin_s3.datasource import S3Reader

    compression = options.compression
    if compression == "infer":
        compression = "gzip" if obj.path.endswith(".gz") else "none"
    with fs.open_input_stream(
        obj.path, compression=None if compression == "none" else compression
    ) as stream:
        head = stream.read(1 << 20)
    if len(head) == 1 << 20:  # infer from whole lines of the first MiB
        head = head[: head.rfind(b"\n") + 1]
    try:
        return S3Reader.infer(head, options.format, options.header, options.delimiter)
    except pa.ArrowInvalid as exc:
        raise PermanentError(
            f"{s3_url(obj.path)} is not a readable {options.format} object ({exc}); declare "
            "`read_schema`, or remove it"
        ) from None


@attrs.frozen
class _Footer:
    """What the driver needs of a parquet object's footer."""

    schema: pa.Schema
    sizes: list[int]  # compressed bytes of each row group


#: Spark's defaults for file splits: ``spark.sql.files.maxPartitionBytes``, ``openCostInBytes``
MAX_SPLIT_BYTES = 128 << 20
OPEN_COST_BYTES = 4 << 20
#: footers read at once on the driver
FOOTER_THREADS = 16


def _footer(fs: pafs.FileSystem, path: str) -> _Footer | None:
    """The footer of a parquet object, or ``None`` when it is unreadable: then the object is
    one partition, and reading it reports (or dead-letters) it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with fs.open_input_file(path) as source:
            parquet = pq.ParquetFile(source)
            meta = parquet.metadata
            sizes = [
                sum(
                    meta.row_group(g).column(c).total_compressed_size
                    for c in range(meta.num_columns)
                )
                for g in range(meta.num_row_groups)
            ]
            return _Footer(parquet.schema_arrow, sizes)
    except (pa.ArrowInvalid, OSError) as exc:
        if isinstance(exc, OSError) and "AWS Error" in str(exc):
            raise
        return None


def _footers(
    fs: pafs.FileSystem, options: S3SourceOptions, objects: list[_Object], need_first: bool
) -> dict[str, _Footer | None]:
    """The footers the plan needs, read concurrently: every object's when row groups are
    split, else the first object's when the schema is inferred (each object's footer once)."""
    if options.format != "parquet" or not objects:
        return {}
    if options.split_row_groups:
        paths = [o.path for o in objects]
    elif need_first:
        paths = [objects[0].path]
    else:
        return {}
    if len(paths) == 1:
        return {paths[0]: _footer(fs, paths[0])}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(FOOTER_THREADS, len(paths))) as pool:
        return dict(zip(paths, pool.map(lambda p: _footer(fs, p), paths), strict=True))


def _split_bytes(objects: list[_Object], parallelism: int) -> int:
    """Spark's file split size: enough splits to give every core one, at most 128 MiB each,
    at least 4 MiB (an object's open cost counted as 4 MiB)."""
    total = sum(o.size + OPEN_COST_BYTES for o in objects)
    return min(MAX_SPLIT_BYTES, max(OPEN_COST_BYTES, total // parallelism))


def _group_row_groups(sizes: list[int], split: int) -> list[list[int] | None]:
    """Consecutive row groups packed into partitions of at most ``split`` bytes (a larger row
    group is a partition alone)."""
    groups: list[list[int] | None] = []
    current: list[int] = []
    size = 0
    for index, bytes_ in enumerate(sizes):
        if current and size + bytes_ > split:
            groups.append(current)
            current, size = [], 0
        current.append(index)
        size += bytes_
    groups.append(current)
    return groups


class S3Loader(Loader):
    """Stage objects under ``<prefix>/_etl/tmp/<run_key>/<n>/``; publish by moving them into
    place and writing ``<prefix>/_etl/manifests/<run_key>.json``."""

    name = "s3"
    Options = S3SinkOptions
    capabilities = frozenset({"batch", "streaming"})
    #: ``overwrite`` replaces the whole prefix, ``overwrite_partitions`` only the
    #: ``partition_by`` folders the run writes, ``error`` refuses a prefix holding data
    modes: ClassVar[tuple[str, ...]] = ("error", "append", "overwrite", "overwrite_partitions")

    def check(self, options: S3SinkOptions, *, mode: str, key: Sequence[str]) -> list[str]:
        if mode == "overwrite_partitions" and not options.partition_by:
            return ["`mode: overwrite_partitions` needs `partition_by: [column, ...]`"]
        return []

    def endpoint(self, options: S3SinkOptions) -> str:
        return f"{options.endpoint_url or 's3'}/{options.bucket}"

    @staticmethod
    def _where(ctx: Context, options: S3SinkOptions) -> tuple[str, str, str]:
        root = _root(options.bucket, options.prefix)
        staging = manifests.staging_path(root, ctx.run_key, ctx.sink_index or 0)
        return root, staging, f"sink {ctx.dataset!r} ({s3_url(root)})"

    def preflight(self, ctx: Preflight, options: S3SinkOptions) -> None:
        """The bucket answers with these credentials."""
        _preflight(options)

    def stage(self, ctx: Context, df: DataFrame, options: S3SinkOptions) -> Staged:
        from etl_plugin_s3.datasource import S3DataSource

        root, staging, what = self._where(ctx, options)
        missing = [c for c in options.partition_by if c not in df.columns]
        if missing:
            raise PermanentError(
                f"{what}: partition_by column(s) {', '.join(missing)} not in the input; "
                f"known: {', '.join(df.columns)}"
            )
        connection = Connection.of(options, what)
        fs = connection.filesystem()
        with _s3_errors(what):
            _require_bucket(fs, options.bucket, what)
            if not manifests.has_manifest(fs, root, ctx.run_key):  # else: a resumed run
                self._refuse_existing(fs, root, ctx.mode, what)
            _delete_tree(fs, staging)
        plan = {
            "staging": staging,
            "format": options.format,
            "compression": options.compression,
            "header": options.header,
            "delimiter": options.delimiter,
            "partition_by": options.partition_by,
            "target_bytes": options.target_file_size_mb << 20,
        }
        datasources.write(df, S3DataSource, _data_source_options(connection, plan, what))
        return Staged(ctx.dataset, ctx.sink_index or 0, ctx.run_key, {"staging": staging})

    @staticmethod
    def _refuse_existing(fs: pafs.FileSystem, root: str, mode: str | None, what: str) -> None:
        if mode == "error" and manifests.data_files(fs, root):
            raise LoadError(
                f"{what}: the prefix already holds data and the sink's mode is `error`; set "
                "`mode: append`, `overwrite` or `overwrite_partitions`, or empty the prefix"
            )

    def publish(self, ctx: Context, staged: Staged, options: S3SinkOptions) -> None:
        """Move the committed objects in (copy + delete), then write the run's manifest: the
        moment manifest readers see the new rows. Overwrites delete what they replaced last."""
        from etl_plugin_s3.datasource import COMMITTED

        root, staging, what = self._where(ctx, options)
        fs = Connection.of(options, what).filesystem()
        with _s3_errors(what):
            if not manifests.has_manifest(fs, root, ctx.run_key):
                self._refuse_existing(fs, root, ctx.mode, what)
                try:
                    with fs.open_input_stream(f"{staging}/{COMMITTED}") as stream:
                        committed = json.loads(stream.read())
                except FileNotFoundError:
                    raise LoadError(
                        f"{what}: the staging of this run is gone or unfinished "
                        f"({s3_url(staging)}); rerun with --run-id {ctx.run_id}"
                    ) from None
                record = manifests.run_record(ctx, options.format)
                replace = {"overwrite": "all", "overwrite_partitions": "partitions"}
                manifests.publish_run(
                    fs, root, staging, ctx.run_key, record,
                    replace.get(ctx.mode or "", "none"), only=committed,
                )  # fmt: skip
            self._drop_staging(fs, root, staging, ctx.run_key)

    def discard(self, ctx: Context, staged: Staged, options: S3SinkOptions) -> None:
        root, staging, what = self._where(ctx, options)
        fs = Connection.of(options, what).filesystem()
        with _s3_errors(what):
            self._drop_staging(fs, root, staging, ctx.run_key)

    @staticmethod
    def _drop_staging(fs: pafs.FileSystem, root: str, staging: str, run_key: str) -> None:
        _delete_tree(fs, staging)
        run_folder = manifests.staging_path(root, run_key)
        if not _files_under(fs, run_folder):  # other sinks of the run may still stage here
            _delete_tree(fs, run_folder)

    def clean_stale(self, ctx: Context, options: S3SinkOptions, live_runs: LiveRuns) -> list[str]:
        import pyarrow.fs as pafs

        root, _, what = self._where(ctx, options)
        fs = Connection.of(options, what).filesystem()
        dropped = []
        with _s3_errors(what):
            folder = f"{root}/{manifests.STAGING}"
            runs: dict[str, float] = {}
            for info in _files_under(fs, folder):
                run_key = info.path[len(folder) + 1 :].split("/", 1)[0]
                mtime = info.mtime.timestamp() if info.mtime else 0.0
                runs[run_key] = max(runs.get(run_key, 0.0), mtime)
            for info in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
                if info.type == pafs.FileType.Directory:
                    runs.setdefault(info.base_name, 0.0)
            for run_key, mtime in sorted(runs.items()):
                if live_runs.stale(run_key, mtime):
                    _delete_tree(fs, f"{folder}/{run_key}")
                    dropped.append(s3_url(f"{folder}/{run_key}"))
            manifests.finish_replacements(fs, root)  # an overwrite that died after its manifest
        return dropped

    @classmethod
    def dead_letter_options(
        cls, options: S3SinkOptions, *, pipeline: str, run_key: str, stage: str
    ) -> S3SinkOptions:
        """JSON lines under ``<prefix>/<pipeline>/<run_key>/<stage>/`` (DESIGN §7)."""
        prefix = "/".join(p for p in (options.prefix.strip("/"), pipeline, run_key, stage) if p)
        return attrs.evolve(
            options, prefix=prefix, format="jsonl", partition_by=[],
            compression=None,
        )  # fmt: skip


def _preflight(options: S3SourceOptions | S3SinkOptions) -> None:
    what = f"s3 {s3_url(_root(options.bucket, options.prefix))}"
    with _s3_errors(what):
        _require_bucket(Connection.of(options, what).filesystem(), options.bucket, what)


def _require_bucket(fs: pafs.FileSystem, bucket: str, what: str) -> None:
    """A listing of a missing bucket is empty (not found is allowed): say so instead."""
    import pyarrow.fs as pafs

    if fs.get_file_info(bucket).type == pafs.FileType.NotFound:
        raise PermanentError(
            f"{what}: NoSuchBucket: bucket {bucket!r} does not exist; check `bucket` (and "
            "`region`/`endpoint_url`)"
        )


def _files_under(fs: pafs.FileSystem, folder: str) -> list[pafs.FileInfo]:
    import pyarrow.fs as pafs

    selector = pafs.FileSelector(folder, recursive=True, allow_not_found=True)
    return [i for i in fs.get_file_info(selector) if i.type == pafs.FileType.File]


def _delete_tree(fs: pafs.FileSystem, folder: str) -> None:
    import pyarrow.fs as pafs

    if fs.get_file_info(folder).type != pafs.FileType.NotFound:
        fs.delete_dir(folder)


class _s3_errors:
    """S3 errors raised on the driver, as typed errors naming the block."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if isinstance(exc, OSError) and not isinstance(exc, EtlError):
            raise translate(exc, self.what) from None
        return False
