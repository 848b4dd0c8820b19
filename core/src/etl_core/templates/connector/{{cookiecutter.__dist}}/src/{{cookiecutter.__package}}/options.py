{%- set kinds = cookiecutter.kinds.split(',') | map('trim') | list -%}
"""The options of each component: the keys of its block in a pipeline file, besides the
core-owned ones (``type``, ``input``, ``mode``, ``read_schema``, ...). ``etl plugins show
{{ cookiecutter.name }}`` prints them from these classes, with the ``#:`` comments as help."""

from __future__ import annotations

import attrs
{%- if 'extractor' in kinds %}


@attrs.frozen
class SourceOptions:
    #: the table's folder, relative to the pipeline file's folder
    path: str
{%- endif %}
{%- if 'loader' in kinds %}


@attrs.frozen
class SinkOptions:
    #: the table's folder, relative to the pipeline file's folder; the table must exist
    path: str
{%- endif %}
{%- if 'credential_provider' in kinds %}


@attrs.frozen
class CredentialOptions:
    #: the entry: a key of the secrets file
    path: str
    #: the secrets file (JSON: entry → {field: value}); default: $ETL_{{ cookiecutter.name|upper|replace('-', '_') }}_SECRETS
    file: str | None = None
{%- endif %}
{%- if 'metrics_reporter' in kinds %}


@attrs.frozen
class ReporterOptions:
    #: append one JSON line per stage of each run to this file (folders are created)
    path: str
{%- endif %}
