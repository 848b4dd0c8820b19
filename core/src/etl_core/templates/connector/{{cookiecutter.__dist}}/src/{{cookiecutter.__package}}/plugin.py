{%- set kinds = cookiecutter.kinds.split(',') | map('trim') | list -%}
{%- set cls = cookiecutter.__class -%}
{%- set ext, load = 'extractor' in kinds, 'loader' in kinds -%}
{%- set cred, rep = 'credential_provider' in kinds, 'metrics_reporter' in kinds -%}
"""Registers the ``{{ cookiecutter.name }}`` components with etl: this module is the plugin, named by
the ``etl`` entry point in pyproject.toml. Registrations only; the components live in
components.py."""

from __future__ import annotations

from collections.abc import Callable

from etl_core import (
{%- if cred %}
    CredentialProvider,
{%- endif %}
{%- if ext %}
    Extractor,
{%- endif %}
{%- if load %}
    Loader,
{%- endif %}
{%- if rep %}
    MetricsReporter,
{%- endif %}
    hookimpl,
)

from {{ cookiecutter.__package }}.components import (
{%- if cred %}
    {{ cls }}CredentialProvider,
{%- endif %}
{%- if ext %}
    {{ cls }}Extractor,
{%- endif %}
{%- if load %}
    {{ cls }}Loader,
{%- endif %}
{%- if rep %}
    {{ cls }}Reporter,
{%- endif %}
)
{%- if ext %}


@hookimpl
def etl_register_extractors(register: Callable[[type[Extractor]], None]) -> None:
    register({{ cls }}Extractor)
{%- endif %}
{%- if load %}


@hookimpl
def etl_register_loaders(register: Callable[[type[Loader]], None]) -> None:
    register({{ cls }}Loader)
{%- endif %}
{%- if cred %}


@hookimpl
def etl_register_credential_providers(
    register: Callable[[type[CredentialProvider]], None],
) -> None:
    register({{ cls }}CredentialProvider)
{%- endif %}
{%- if rep %}


@hookimpl
def etl_register_metrics_reporters(register: Callable[[type[MetricsReporter]], None]) -> None:
    register({{ cls }}Reporter)
{%- endif %}
