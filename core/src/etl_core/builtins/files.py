"""The ``files`` source and sink: csv, json/jsonl and parquet on a local (or mounted) filesystem.

The sink stages a run's files under ``<path>/_etl/tmp/<run_key>/<n>/`` (names starting with
``_`` are invisible to Spark, pyarrow and this source) and publishes by moving them into place
and writing ``<path>/_etl/manifests/<run_key>.json``, the run's ledger entry
(:mod:`etl_core.manifests`, shared with other file-like sinks).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from etl_core import datasources, manifests
from etl_core.api import (
    Context,
    Extractor,
    LiveRuns,
    Loader,
    LoadError,
    PermanentError,
    Preflight,
    Staged,
)
from etl_core.options import one_of, positive

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

FORMATS = ("csv", "json", "jsonl", "parquet")
MANIFESTS = Path(manifests.MANIFESTS)
STAGING = Path(manifests.STAGING)


def _spark_format(fmt: str) -> str:
    return "json" if fmt == "jsonl" else fmt


def _local() -> Any:
    import pyarrow.fs as pafs

    return pafs.LocalFileSystem()


def data_files(root: Path) -> Iterator[Path]:
    """Visible data files under ``root`` (what Spark would read), relative to it."""
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(("_", "."))]
        for filename in filenames:
            relative = (Path(dirpath) / filename).relative_to(root)
            if not manifests.hidden(relative.as_posix()):
                yield relative


def _drop_empty_parts(folder: Path, format: str, header: bool) -> None:
    """Remove the part files that hold no row (a task with nothing to write still leaves a
    file: 0 bytes, a CSV header, a Parquet footer). Parquet keeps one when all are empty: it
    carries the schema."""
    parts = sorted(folder / p for p in data_files(folder))
    empty = [p for p in parts if _rows_in_part(p, format, header) == 0]
    if format == "parquet" and len(empty) == len(parts):
        empty = empty[1:]
    for part in empty:
        part.unlink()


def _rows_in_part(part: Path, format: str, header: bool) -> int:
    """0 for a part without rows; else a positive number (not always the exact count)."""
    if format == "parquet":
        import pyarrow.parquet as pq

        return pq.read_metadata(part).num_rows
    if part.stat().st_size == 0:
        return 0
    if format != "csv" or not header:
        return 1
    with part.open("rb") as f:  # the header line, then anything?
        f.readline()
        return 1 if f.read(1) else 0


def manifest_files(root: Path) -> list[Path] | None:
    """The files of the published manifests (their union, less what overwrites replaced),
    or ``None`` when the folder has no manifests."""
    listed = manifests.manifest_files(_local(), str(root))
    return None if listed is None else [Path(f) for f in listed]


def _reader_options(
    fmt: str, header: bool, delimiter: str, extra: dict[str, str]
) -> dict[str, str]:
    options = {"header": str(header).lower(), "sep": delimiter} if fmt == "csv" else {}
    return {**options, **extra}


@attrs.frozen
class FilesSourceOptions:
    path: str
    format: str = attrs.field(validator=one_of(*FORMATS))
    header: bool = True
    delimiter: str = ","
    options: dict[str, str] = attrs.field(factory=dict)


class FilesExtractor(Extractor):
    """Read csv, json/jsonl or parquet files: a file, a folder or a glob.

    A folder that an etl sink wrote is read through its manifests: only published files.
    With ``incremental: {by: modified_time}`` only files modified after the last successful
    run are read.
    """

    name = "files"
    Options = FilesSourceOptions
    capabilities = frozenset({"batch", "partitioned_read", "incremental", "streaming"})

    def check(self, options: FilesSourceOptions, *, incremental: Any) -> list[str]:
        return manifests.incremental_problems(incremental, "files")

    def preflight(self, ctx: Preflight, options: FilesSourceOptions) -> None:
        """A batch read needs its file, folder or glob to exist (a stream's files may come
        later)."""
        root = ctx.path(options.path)
        if ctx.streaming or root.is_dir() or _list_files(root):
            return
        relative = (
            ""
            if Path(options.path).expanduser().is_absolute()
            else (f" (relative to the pipeline file's folder {ctx.base_dir})")
        )
        raise PermanentError(
            f"no file matches path {options.path!r}{relative}; check `path` (a file, a folder or "
            "a glob such as data/*.csv)"
        )

    def extract_stream(self, ctx: Context, options: FilesSourceOptions) -> DataFrame:
        """Spark's file stream source: each micro-batch reads the files that appeared in the
        folder since the last one (the checkpoint remembers which were read). Needs
        ``read_schema``; malformed csv/json lines go to the dead letters as in a batch run."""
        from pyspark.sql import functions as F

        if not ctx.read_schema:
            raise PermanentError(
                f"source {ctx.dataset!r}: a streamed `files` source needs `read_schema` "
                "(a stream cannot look at files that have not arrived yet)"
            )
        capture = _captures_malformed(ctx, options)
        reader = ctx.spark.readStream.format(_spark_format(options.format)).options(
            **_reader_options(options.format, options.header, options.delimiter, options.options)
        )
        if capture:
            reader = reader.schema(f"{ctx.read_schema}, `{CORRUPT}` STRING").options(
                mode="PERMISSIVE", columnNameOfCorruptRecord=CORRUPT
            )
            return reader.load(str(ctx.path(options.path))).withColumn(
                _POSITION, F.input_file_name()
            )
        return reader.schema(ctx.read_schema).load(str(ctx.path(options.path)))

    def micro_batch(self, ctx: Context, options: FilesSourceOptions, rows: DataFrame) -> DataFrame:
        if CORRUPT not in rows.columns:
            return rows
        return _route_malformed(ctx, options, rows)

    def extract(self, ctx: Context, options: FilesSourceOptions) -> DataFrame:
        root = ctx.path(options.path)
        reader = ctx.spark.read.format(_spark_format(options.format)).options(
            **_reader_options(options.format, options.header, options.delimiter, options.options)
        )
        capture = _captures_malformed(ctx, options)
        if ctx.read_schema:
            reader = reader.schema(
                f"{ctx.read_schema}, `{CORRUPT}` STRING" if capture else ctx.read_schema
            )
        if capture:
            reader = reader.options(mode="PERMISSIVE", columnNameOfCorruptRecord=CORRUPT)
        listed = manifest_files(root) if root.is_dir() else None
        if ctx.incremental is None and listed is None:
            return _counted(
                ctx, options, _split_malformed(ctx, options, reader.load(str(root)), capture)
            )
        if listed is None:
            every = _list_files(root)
        else:
            every = [root / f for f in listed if (root / f).exists()]
            reader = reader.option("basePath", str(root))  # keeps partition columns
        paths = every
        if ctx.incremental is not None:
            folder = root if root.is_dir() else root.parent  # names in the bookmark: relative
            times = {os.path.relpath(p, folder): p.stat().st_mtime for p in every}
            new, bookmark = manifests.modified_since(times, ctx.bookmark)
            paths = [folder / p for p in new]
            if bookmark is not None:
                ctx.propose_bookmark(bookmark)
        if paths:
            df = reader.load([str(p) for p in paths])
            return _counted(ctx, options, _split_malformed(ctx, options, df, capture))
        ctx.report_rows(0)  # empty: Spark may optimise a count of it away
        if ctx.read_schema:
            return ctx.spark.createDataFrame([], ctx.read_schema)
        if every:  # nothing new: an empty dataset with the files' schema
            return reader.load(str(every[0])).limit(0)
        raise PermanentError(
            f"{root} has no data files; declare `read_schema` on the source to read it as an "
            "empty dataset"
        )

    def replay(
        self, ctx: Context, options: FilesSourceOptions, records: DataFrame, schema: Any
    ) -> DataFrame | None:
        """Parse the malformed lines of ``extract`` dead letters again with this source's
        (fixed) options and schema; lines that still do not parse are dead-lettered again."""
        from pyspark.sql import functions as F

        if options.format == "parquet":
            return super().replay(ctx, options, records, schema)
        parse = {
            **_reader_options(options.format, False, options.delimiter, options.options),
            "mode": "PERMISSIVE",
            "columnNameOfCorruptRecord": CORRUPT,
        }
        parse.pop("header", None)
        fields = [*schema.fields, *([] if CORRUPT in schema.names else [_corrupt_field()])]
        ddl = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in fields)
        if options.format == "csv":
            parsed = F.from_csv(F.col("row"), ddl, parse)
        else:
            parsed = F.from_json(F.col("row"), ddl, parse)
        rows = records.select(parsed.alias("_etl_r"), "row", "source_position").select(
            "_etl_r.*", "row", "source_position"
        )
        return _split_malformed(ctx, options, rows, True, prepared=True)


CORRUPT = "_etl_corrupt_record"
_POSITION = "_etl_source_position"


#: above this many files, reading every footer on the driver costs more than the count saves
MAX_FOOTERS = 2_000


def _counted(ctx: Context, options: FilesSourceOptions, df: DataFrame) -> DataFrame:
    """Report a Parquet source's rows from its files' footers (no pass over the data, so the
    runner adds no count node that would block filter pushdown into the scan)."""
    if options.format != "parquet":
        return df
    files = df.inputFiles()
    if len(files) > MAX_FOOTERS or not all(f.startswith("file:") for f in files):
        return df
    import pyarrow.parquet as pq

    ctx.report_rows(sum(pq.read_metadata(_path_of(f)).num_rows for f in files))
    return df


def _path_of(uri: str) -> str:
    from urllib.parse import unquote, urlparse

    return unquote(urlparse(uri).path)


def _corrupt_field() -> Any:
    from pyspark.sql import types as T

    return T.StructField(CORRUPT, T.StringType())


def _captures_malformed(ctx: Context, options: FilesSourceOptions) -> bool:
    """Malformed csv/json lines go to the dead letters when the pipeline has a dead-letter sink,
    the source declares its ``read_schema`` and its options choose no parse ``mode``."""
    return (
        ctx.dead_letter_sink
        and ctx.read_schema is not None
        and options.format != "parquet"
        and not any(key.lower() == "mode" for key in options.options)
    )


def _split_malformed(
    ctx: Context,
    options: FilesSourceOptions,
    df: DataFrame,
    capture: bool,
    prepared: bool = False,
) -> DataFrame:
    """Route the rows Spark could not parse (the corrupt-record column is set) to the dead
    letters with their file, and return the others. Parsed once: the frame is persisted, which
    is also what lets Spark query the corrupt-record column alone."""
    from pyspark.sql import functions as F

    if not capture:
        return df
    if prepared:  # replayed records: the line and its position are already columns
        df = df.withColumnsRenamed({"row": CORRUPT + "_line", "source_position": _POSITION})
        line = F.coalesce(F.col(CORRUPT), F.col(CORRUPT + "_line"))
        df = df.withColumn(CORRUPT, F.when(F.col(CORRUPT).isNotNull(), line))
        df = df.drop(CORRUPT + "_line")
    else:
        df = df.withColumn(_POSITION, F.input_file_name())
    return _route_malformed(ctx, options, df)


def _route_malformed(ctx: Context, options: FilesSourceOptions, df: DataFrame) -> DataFrame:
    """The rows whose corrupt-record column is set to the dead letters with their file
    (column ``_POSITION``); the others on."""
    return datasources.split_unreadable(
        ctx,
        df,
        CORRUPT,
        rule="malformed",
        message=f"malformed {options.format} record: it does not match the read schema",
        position=_POSITION,
        drop=[_POSITION],
    )


def _list_files(root: Path) -> list[Path]:
    """A file, the visible files of a folder, or the matches of a glob."""
    if root.is_file():
        return [root]
    if root.is_dir():
        return [root / f for f in sorted(data_files(root))]
    return sorted(p for p in root.parent.glob(root.name) if p.is_file())


@attrs.frozen
class FilesSinkOptions:
    path: str
    format: str = attrs.field(default="parquet", validator=one_of(*FORMATS))
    header: bool = True
    compression: str | None = None
    #: columns to partition the output by (``col=value/`` folders)
    partition_by: list[str] = attrs.field(factory=list)
    #: at most this many files (per partition folder): the rows are coalesced into as many
    #: tasks before writing, so fewer tasks write
    max_files: int | None = attrs.field(default=None, validator=attrs.validators.optional(positive))
    #: at most this many rows per file (Spark's ``maxRecordsPerFile``)
    target_file_rows: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(positive)
    )
    options: dict[str, str] = attrs.field(factory=dict)


class FilesLoader(Loader):
    """Write csv, json/jsonl or parquet files into a folder, atomically per run (per
    micro-batch in a streaming pipeline)."""

    name = "files"
    Options = FilesSinkOptions
    capabilities = frozenset({"batch", "streaming"})
    modes: ClassVar[tuple[str, ...]] = ("error", "append", "overwrite")

    @staticmethod
    def _staging(ctx: Context, options: FilesSinkOptions) -> Path:
        return ctx.path(options.path) / STAGING / ctx.run_key / str(ctx.sink_index)

    def stage(self, ctx: Context, df: DataFrame, options: FilesSinkOptions) -> Staged:
        target = ctx.path(options.path)
        if not (target / MANIFESTS / f"{ctx.run_key}.json").exists():  # else: a resumed run
            self._refuse_existing(target, ctx)
        staging = self._staging(ctx, options)
        shutil.rmtree(staging, ignore_errors=True)
        writer_options = _reader_options(options.format, options.header, ",", options.options)
        if options.compression:
            writer_options["compression"] = options.compression
        if options.target_file_rows:
            writer_options["maxRecordsPerFile"] = str(options.target_file_rows)
        if options.max_files:
            df = df.coalesce(options.max_files)
        writer = df.write.format(_spark_format(options.format)).options(**writer_options)
        if options.partition_by:
            writer = writer.partitionBy(*options.partition_by)
        writer.save(str(staging))
        # (a compressed CSV part's header cannot be told from rows without reading it)
        _drop_empty_parts(staging, options.format, options.header and not options.compression)
        if options.format == "jsonl":  # Spark names JSON lines files .json
            for part in data_files(staging):
                if ".json" in part.name:
                    name = part.name.replace(".json", ".jsonl", 1)
                    (staging / part).replace(staging / part.with_name(name))
        return Staged(ctx.dataset, ctx.sink_index or 0, ctx.run_key, {"staging": str(staging)})

    @staticmethod
    def _refuse_existing(target: Path, ctx: Context) -> None:
        if ctx.mode == "error" and next(data_files(target), None) is not None:
            raise LoadError(
                f"sink {ctx.dataset!r}: {target} already holds data and the sink's mode is "
                "`error`; set `mode: append` or `mode: overwrite`, or empty the folder"
            )

    def publish(self, ctx: Context, staged: Staged, options: FilesSinkOptions) -> None:
        """Move the files in, then write the run's manifest: the moment manifest readers see
        the new rows. An overwrite's manifest ``replaces`` the older ones, whose files go last."""
        target = ctx.path(options.path)
        if not manifests.has_manifest(_local(), str(target), ctx.run_key):
            self._refuse_existing(target, ctx)
            record = manifests.run_record(ctx, options.format)
            replace = "all" if ctx.mode == "overwrite" else "none"
            staging = str(self._staging(ctx, options))
            manifests.publish_run(_local(), str(target), staging, ctx.run_key, record, replace)
        self.discard(ctx, staged, options)

    def discard(self, ctx: Context, staged: Staged, options: FilesSinkOptions) -> None:
        staging = self._staging(ctx, options)
        shutil.rmtree(staging, ignore_errors=True)
        for folder in (staging.parent, staging.parent.parent, staging.parent.parent.parent):
            try:
                folder.rmdir()  # only when empty: other sinks of the run may still stage here
            except OSError:
                break

    def clean_stale(
        self, ctx: Context, options: FilesSinkOptions, live_runs: LiveRuns
    ) -> list[str]:
        target = ctx.path(options.path)
        staging_root = target / STAGING
        dropped = []
        for run_dir in sorted(staging_root.glob("*")) if staging_root.is_dir() else []:
            if live_runs.stale(run_dir.name, run_dir.stat().st_mtime):
                shutil.rmtree(run_dir, ignore_errors=True)
                dropped.append(str(run_dir))
        for folder in (staging_root, staging_root.parent):
            with contextlib.suppress(OSError):
                folder.rmdir()
        # an overwrite that died after its manifest was written
        manifests.finish_replacements(_local(), str(target))
        return dropped

    @classmethod
    def dead_letter_options(
        cls, options: FilesSinkOptions, *, pipeline: str, run_key: str, stage: str
    ) -> FilesSinkOptions:
        path = str(Path(options.path) / pipeline / run_key / stage)
        return attrs.evolve(options, path=path, format="jsonl")
