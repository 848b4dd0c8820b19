"""``etl new connector``: render the connector template that ships inside this package
(``etl_core/templates/connector``, a cookiecutter template; the repository's top-level
``cookiecutter-connector`` is a link to it, so there is one copy)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import metadata, resources
from pathlib import Path

from etl_core.errors import EtlError

#: the component kinds the template can render, each with its conformance suite
KINDS = ("extractor", "loader", "credential_provider", "metrics_reporter")
NAME = re.compile(r"[a-z][a-z0-9_-]*")


class ScaffoldError(EtlError):
    """A name or a kind the template cannot render, or a folder already there."""

    exit_code = 2


def template_dir() -> Path:
    """The packaged template's folder (a real folder: the wheel installs it as files)."""
    return Path(str(resources.files("etl_core") / "templates" / "connector"))


def problems(name: str, kinds: Sequence[str]) -> list[str]:
    """What is wrong with a connector ``name`` and ``kinds`` (the template's pre-generation
    hook says the same to a direct ``cookiecutter`` user)."""
    found = []
    if not NAME.fullmatch(name):
        found.append(f"name {name!r}: use lowercase letters, digits, '-' or '_', a letter first")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        found.append(f"kinds {', '.join(unknown) or '(none)'}: choose from {', '.join(KINDS)}")
    return found


def new_connector(
    name: str, kinds: Sequence[str], output_dir: Path, description: str | None = None
) -> Path:
    """Render ``etl-plugin-<name>`` with the ``kinds`` chosen into ``output_dir``; return the
    package's folder."""
    wrong = problems(name, kinds)
    if wrong:
        raise ScaffoldError("cannot render the connector: " + "; ".join(wrong))
    target = output_dir / f"etl-plugin-{name}"
    if target.exists():
        raise ScaffoldError(f"{target} already exists; remove it or choose another --output-dir")
    try:
        from cookiecutter.main import cookiecutter
    except ImportError:
        raise EtlError(
            "`etl new` renders a cookiecutter template and cookiecutter is not installed: "
            "pip install 'etl-core[new]'"
        ) from None
    context = {
        "name": name,
        "kinds": ",".join(kinds),
        "_etl_core_version": metadata.version("etl-core"),
    }
    if description:
        context["description"] = description
    rendered = cookiecutter(
        str(template_dir()), no_input=True, extra_context=context, output_dir=str(output_dir)
    )
    return Path(rendered)
