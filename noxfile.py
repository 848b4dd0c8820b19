"""Developer sessions: `nox -s lint`, `nox -s tests`, `nox -s build`, `nox -s template`."""

import shutil
from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

#: every distribution this repository publishes: etl-core and each plugin
PROJECTS = ["core", *sorted(str(p) for p in Path("plugins").glob("etl-plugin-*"))]


@nox.session
def lint(session: nox.Session) -> None:
    session.install("-r", "requirements-dev.txt")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
    session.run("lint-imports")  # DESIGN §14's layering contracts (root pyproject.toml)


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-r", "requirements-dev.txt")
    session.run("pytest", *session.posargs)


@nox.session
def build(session: nox.Session) -> None:
    """Wheels and sdists of etl-core and every plugin into dist/, each checked by twine.
    Install them by name: `pip install --find-links dist etl-core etl-plugin-postgres`."""
    session.install("build>=1.2", "twine>=5")
    shutil.rmtree("dist", ignore_errors=True)
    for project in PROJECTS:
        session.run("python", "-m", "build", "--outdir", "dist", project)
    session.run("twine", "check", "--strict", *sorted(str(p) for p in Path("dist").iterdir()))


@nox.session
def template(session: nox.Session) -> None:
    """The connector template: every combination of kinds rendered by `etl new connector` in a
    fresh virtualenv holding the etl-core wheel, installed, linted and tested
    (tests/test_template.py, which builds the wheels it installs)."""
    session.install("-r", "requirements-dev.txt")
    session.run("pytest", "tests/test_template.py", *session.posargs)
