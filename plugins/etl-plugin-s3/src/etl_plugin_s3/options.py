"""Options of the ``s3`` source and sink (attrs classes, structured strictly by the core)."""

from __future__ import annotations

from typing import Any

import attrs

from etl_core import Secret, one_of, positive

FORMATS = ("parquet", "csv", "json", "jsonl")


def _no_slashes(_: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    from etl_core.options import ValueProblem

    if "/" in value or not value:
        raise ValueProblem(
            f"{value!r} is not a bucket name; give the bucket alone and the rest as `prefix`",
            attribute.name,
        )


@attrs.frozen
class Access:
    """Where the bucket is and whose keys open it. Every field is per block: nothing is read
    from or written to process-global settings except, when no keys and no profile are given,
    the AWS default chain (environment, ~/.aws, instance metadata) read by the client."""

    #: AWS region of the bucket, e.g. ``eu-west-1``
    region: str | None = None
    #: another endpoint: an S3-compatible store or a local test server (``http://host:port``)
    endpoint_url: str | None = None
    #: keys of this block, from a ``credentials:`` entry or ``{secret: ...}`` references
    access_key_id: Secret | None = None
    secret_access_key: Secret | None = None
    session_token: Secret | None = None
    #: a named AWS profile (needs boto3), resolved on the driver, when no keys are given
    profile: str | None = None


@attrs.frozen(kw_only=True)
class S3SourceOptions(Access):
    bucket: str = attrs.field(validator=_no_slashes)
    format: str = attrs.field(validator=one_of(*FORMATS))
    #: read every visible object under this key prefix (a "folder": ``sales/2024/``)
    prefix: str = ""
    #: or the keys matching this pattern (``sales/*/part-*.csv``; ``*`` does not cross ``/``,
    #: ``**`` does)
    glob: str | None = None
    #: ``infer`` from the key (``.gz``), ``gzip`` or ``none`` (csv and json)
    compression: str = attrs.field(default="infer", validator=one_of("infer", "gzip", "none"))
    header: bool = True
    delimiter: str = ","
    #: ``hive``: ``key=value`` folders become columns; ``none``: they do not
    partitioning: str = attrs.field(default="hive", validator=one_of("hive", "none"))
    #: split a parquet object at row-group boundaries into partitions of Spark's file split
    #: size (else one partition per object)
    split_row_groups: bool = True
    #: an object that cannot be read as ``format``: ``fail`` the run, or ``dead_letter`` it
    #: (one record per object; needs `errors.dead_letter`) and read the rest
    on_corrupt: str = attrs.field(default="fail", validator=one_of("fail", "dead_letter"))

    def __attrs_post_init__(self) -> None:
        from etl_core.options import ValueProblem

        if self.glob is not None and self.prefix:
            raise ValueProblem("give either `prefix` or `glob`, not both", "glob")


@attrs.frozen(kw_only=True)
class S3SinkOptions(Access):
    bucket: str = attrs.field(validator=_no_slashes)
    #: the target "folder"; the run's staging and manifests live under it (``_etl/``)
    prefix: str = ""
    format: str = attrs.field(default="parquet", validator=one_of(*FORMATS))
    #: parquet: snappy (default), zstd, gzip, none; csv and json: gzip or none (default)
    compression: str | None = None
    header: bool = True
    delimiter: str = ","
    #: columns to partition the output by (``col=value/`` folders)
    partition_by: list[str] = attrs.field(factory=list)
    #: start a new object when one reaches this many MiB (before compression for csv/json)
    target_file_size_mb: int = attrs.field(default=128, validator=positive)

    def __attrs_post_init__(self) -> None:
        from etl_core.options import ValueProblem

        allowed = (
            ("snappy", "zstd", "gzip", "lz4", "brotli", "none")
            if self.format == "parquet"
            else ("gzip", "none")
        )
        if self.compression is not None and self.compression not in allowed:
            raise ValueProblem(
                f"{self.compression!r} is not a {self.format} compression; use one of "
                f"{', '.join(allowed)}",
                "compression",
            )
