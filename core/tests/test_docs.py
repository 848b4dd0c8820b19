"""The reference docs cannot rot: every CLI command and option is in docs/cli.md, every key of
the pipeline model and every option of every built-in component is in docs/config-reference.md
(with its default), every exit code is listed, and the links between the docs resolve.

No Spark: these tests read the click command tree, the attrs classes and the markdown files.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import attrs
import click
import pytest

from etl_core import config, errors
from etl_core.cli import main
from etl_core.plugins import BUILTIN, KINDS, get_plugin_host

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CLI_DOC = DOCS / "cli.md"
REFERENCE = DOCS / "config-reference.md"
#: pages another session is still writing: their own links are not checked yet (links *to*
#: them are); drop a page from here when it is finished
DRAFTS = {"secrets.md"}

# --- markdown helpers -----------------------------------------------------------------------

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")


def _lines(path: Path) -> list[str]:
    """The file's lines, with fenced code blocks blanked (a ``# comment`` is no heading)."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            lines.append("")
            continue
        lines.append("" if fenced else line)
    return lines


def section(path: Path, title: str) -> list[str]:
    """The lines under the heading ``title`` (exact text), up to the next heading of the same
    or a higher level."""
    lines = _lines(path)
    for i, line in enumerate(lines):
        match = HEADING.match(line)
        if match and match[2] == title:
            level = len(match[1])
            end = next(
                (
                    j
                    for j in range(i + 1, len(lines))
                    if (m := HEADING.match(lines[j])) and len(m[1]) <= level
                ),
                len(lines),
            )
            return lines[i + 1 : end]
    pytest.fail(f"{path.relative_to(ROOT)} has no heading {title!r}")


def split_subsections(lines: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """The lines before the first sub-heading, and each sub-heading's lines by title."""
    head: list[str] = []
    subs: dict[str, list[str]] = {}
    current = head
    for line in lines:
        match = HEADING.match(line)
        if match:
            current = subs.setdefault(match[2], [])
        else:
            current.append(line)
    return head, subs


_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_KEY_CELL = re.compile(r"^`([^`]+)`$")


def cells(line: str) -> list[str]:
    return [c.strip() for c in _CELL_SPLIT.split(line.strip())[1:-1]]


def key_rows(lines: list[str]) -> dict[str, list[str]]:
    """Rows of ``| Key | Type | Default | Meaning |`` tables whose first cell is one `key`."""
    rows: dict[str, list[str]] = {}
    in_key_table = False
    for line in lines:
        if not line.startswith("|"):
            in_key_table = False
            continue
        row = cells(line)
        if row[:3] == ["Key", "Type", "Default"]:
            in_key_table = True
        match = _KEY_CELL.match(row[0]) if row and in_key_table else None
        if match:
            rows[match[1]] = row
    return rows


# --- the CLI --------------------------------------------------------------------------------


def commands() -> list[tuple[str, click.Command]]:
    """Every command as its full name (``etl``, ``etl run``, ``etl plugins show``)."""
    found: list[tuple[str, click.Command]] = []

    def walk(name: str, command: click.Command) -> None:
        found.append((name, command))
        if isinstance(command, click.Group):
            for sub_name, sub in sorted(command.commands.items()):
                walk(f"{name} {sub_name}", sub)

    walk("etl", main)
    return found


def option_names(command: click.Command) -> set[str]:
    return {
        opt
        for param in command.params
        if isinstance(param, click.Option)
        for opt in (*param.opts, *param.secondary_opts)
    }


HELP_OPTIONS = {"-h", "--help"}


def test_the_cli_has_the_commands_this_test_expects() -> None:
    names = [name for name, _ in commands()]
    expected = {"etl run", "etl validate", "etl explain", "etl clean", "etl plugins show"}
    assert expected | {"etl new connector"} <= set(names)


@pytest.mark.parametrize(("name", "command"), commands(), ids=[n for n, _ in commands()])
def test_every_command_option_and_argument_is_in_the_cli_reference(
    name: str, command: click.Command
) -> None:
    text = "\n".join(section(CLI_DOC, f"`{name}`"))
    missing = [
        opt
        for opt in sorted(option_names(command))
        if not re.search(rf"`{re.escape(opt)}(?=[`\s=\]])", text)
    ]
    missing += [
        param.name.upper()
        for param in command.params
        if isinstance(param, click.Argument)
        and param.name
        and not re.search(rf"\b{param.name.upper()}\b", text)
    ]
    if command is main:
        missing += [opt for opt in sorted(HELP_OPTIONS) if f"`{opt}`" not in text]
    assert not missing, f"docs/cli.md, section `{name}`, does not mention {missing}"


@pytest.mark.parametrize(("name", "command"), commands(), ids=[n for n, _ in commands()])
def test_the_cli_reference_documents_no_option_the_command_lacks(
    name: str, command: click.Command
) -> None:
    lines = section(CLI_DOC, f"`{name}`")
    documented = {
        opt
        for line in lines
        if line.startswith("|")
        for opt in re.findall(r"`(--?[a-z][a-z-]*)", _CELL_SPLIT.split(line)[1])
    }
    unknown = documented - option_names(command) - HELP_OPTIONS
    assert not unknown, f"docs/cli.md, section `{name}`, documents options it lacks: {unknown}"


def exit_codes() -> set[int]:
    """0, click's usage error (2), an interrupt (130), and every EtlError's exit code."""
    codes = {0, 2, 130}
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, errors.EtlError):
            codes.add(value.exit_code)
    return codes


def test_every_exit_code_is_in_the_cli_reference() -> None:
    rows = {
        row[0].strip("` ")
        for line in section(CLI_DOC, "Exit codes")
        if line.startswith("|") and (row := cells(line))
    }
    missing = sorted(code for code in exit_codes() if str(code) not in rows)
    assert not missing, f"docs/cli.md, section `Exit codes`, lacks {missing}"


# --- the pipeline file: core model and built-in components ----------------------------------

#: a heading of docs/config-reference.md → the class whose fields its table lists
SPEC_SECTIONS: dict[str, type] = {
    "Top-level keys": config.PipelineSpec,
    "engine": config.EngineSpec,
    "trigger": config.TriggerSpec,
    "watermark": config.WatermarkSpec,
    "credentials": config.CredentialSpec,
    "sources": config.SourceSpec,
    "transforms": config.TransformSpec,
    "sinks": config.SinkSpec,
    "Other component blocks": config.Block,
    "retry": config.RetrySpec,
    "circuit_breaker": config.BreakerSpec,
    "validate": config.ValidateSpec,
    "errors": config.ErrorsSpec,
    "tracing": config.TracingSpec,
}
#: fields of the model that are not keys of the file
INTERNAL = frozenset({"options", "base_dir", "source", "broken"})
#: keys the planner requires although the attrs class gives them an empty default
REQUIRED_BY_THE_PLAN = {(config.TransformSpec, "inputs"), (config.SinkSpec, "input")}

#: the heading suffix of each kind's section: "## `files` source"
KIND_TITLES = {
    "extractor": "source",
    "transformer": "transform",
    "loader": "sink",
    "validator": "validator",
    "credential_provider": "credential provider",
    "metrics_reporter": "metrics reporter",
    "state_store": "state store",
}


def builtin_components() -> list[tuple[str, str, type]]:
    host = get_plugin_host(autoload=False)
    return [
        (kind, name, cls)
        for kind in KINDS
        for name, cls in sorted(host.components(kind).items())
        if host.owner(kind, name) == BUILTIN
    ]


def fields(cls: type) -> list[attrs.Attribute[Any]]:
    return list(attrs.fields(attrs.resolve_types(cls)))


def nested_attrs_class(annotation: Any) -> type | None:
    """The attrs class inside ``X | None``, ``list[X]`` or ``dict[str, X]``, if any."""
    if isinstance(annotation, type) and attrs.has(annotation):
        return annotation
    for arg in typing.get_args(annotation):
        found = nested_attrs_class(arg)
        if found is not None:
            return found
    return None


def expected_default(field: attrs.Attribute[Any]) -> str | None:
    """How the docs write the field's default; ``None`` when it is not compared (a nested
    block, written as prose such as "all defaults")."""
    default = field.default
    if default is attrs.NOTHING:
        return "required"
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        default = default.factory()  # type: ignore[union-attr]
    if attrs.has(type(default)):
        return None
    if default is None:
        return "null"
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, list | dict) and not default:
        return "[]" if isinstance(default, list) else "{}"
    return str(default)


def documented_default(cell: str) -> str:
    """The first word of a Default cell, without backticks and quotes: `"1s"` → 1s."""
    word = cell.split()[0] if cell.split() else ""
    return word.strip("`").strip("\"'")


def check_table(
    where: str,
    cls: type,
    rows: dict[str, list[str]],
    *,
    required: frozenset[str] = frozenset(),
    internal: frozenset[str] = frozenset(),
) -> list[str]:
    """Every field of ``cls`` (but ``internal`` ones) has a row with its default, and every
    row is a field."""
    problems = []
    keys = [f for f in fields(cls) if f.name not in internal]
    for field in keys:
        if field.name not in rows:
            problems.append(f"{where}: key `{field.name}` is missing")
            continue
        row = rows[field.name]
        if len(row) < 3:
            problems.append(f"{where}: the row of `{field.name}` has no Default column")
            continue
        wanted = "required" if field.name in required else expected_default(field)
        if wanted is not None and documented_default(row[2]) != wanted:
            problems.append(
                f"{where}: `{field.name}` defaults to {wanted!r}, the docs say {row[2]!r}"
            )
    names = {f.name for f in keys}
    problems += [
        f"{where}: `{key}` is not a key of {cls.__name__}" for key in rows if key not in names
    ]
    return problems


@pytest.mark.parametrize("title", sorted(SPEC_SECTIONS))
def test_every_key_of_the_pipeline_model_is_in_the_reference(title: str) -> None:
    cls = SPEC_SECTIONS[title]
    head, _ = split_subsections(section(REFERENCE, title))
    required = frozenset(name for c, name in REQUIRED_BY_THE_PLAN if c is cls)
    problems = check_table(f"## {title}", cls, key_rows(head), required=required, internal=INTERNAL)
    assert not problems, "docs/config-reference.md is out of date:\n" + "\n".join(problems)


def test_the_reference_has_a_section_for_every_top_level_block() -> None:
    """Plain values (``name``, ``version``, ``execution``, ``checkpoint``) are in the top-level
    table only."""
    headings = {m[2] for line in _lines(REFERENCE) if (m := HEADING.match(line))}
    plain = {"name", "version", "execution", "checkpoint", "output_mode"}
    blocks = {f.name for f in fields(config.PipelineSpec)} - INTERNAL - plain
    missing = sorted(blocks - headings)
    assert not missing, f"docs/config-reference.md needs a heading for {missing}"


def test_the_engine_defaults_in_the_reference_match_the_code() -> None:
    from etl_core.run.engine import DEFAULT_CONF

    documented = {
        row[0].strip("`"): row[1].split()[0].strip("`")
        for line in section(REFERENCE, "engine")
        if line.startswith("|") and len(row := cells(line)) >= 2 and row[0].startswith("`spark.")
    }
    assert documented == DEFAULT_CONF


@pytest.mark.parametrize(
    ("kind", "name", "cls"),
    builtin_components(),
    ids=[f"{kind}:{name}" for kind, name, _ in builtin_components()],
)
def test_every_option_of_every_builtin_component_is_in_the_reference(
    kind: str, name: str, cls: type
) -> None:
    title = f"`{name}` {KIND_TITLES[kind]}"
    head, subs = split_subsections(section(REFERENCE, title))
    problems = check_table(f"## {title}", cls.Options, key_rows(head))
    for field in fields(cls.Options):
        inner = nested_attrs_class(field.type)
        if inner is None:
            continue
        sub = next((lines for t, lines in subs.items() if f"`{field.name}`" in t), None)
        if sub is None:
            problems.append(f"## {title}: no sub-heading naming `{field.name}` ({inner.__name__})")
            continue
        problems += check_table(f"## {title} / `{field.name}`", inner, key_rows(sub))
    assert not problems, "docs/config-reference.md is out of date:\n" + "\n".join(problems)


# --- the docs as a whole --------------------------------------------------------------------


def pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def test_the_index_links_every_page() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    missing = [p.name for p in pages() if p.name != "index.md" and f"]({p.name}" not in index]
    assert not missing, f"docs/index.md does not link {missing}"


def slug(title: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", title.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for line in _lines(path):
        match = HEADING.match(line)
        if match:
            base = slug(match[2])
            anchor, n = base, 0
            while anchor in found:
                n += 1
                anchor = f"{base}-{n}"
            found.add(anchor)
    return found


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", [p for p in pages() if p.name not in DRAFTS], ids=lambda p: p.name)
def test_links_between_the_docs_resolve(page: Path) -> None:
    broken = []
    for line in _lines(page):
        for target in LINK.findall(line):
            if re.match(r"^[a-z]+:", target):  # https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            path = (page.parent / file_part).resolve() if file_part else page
            if not path.exists() or (
                anchor and path.suffix == ".md" and anchor not in anchors(path)
            ):
                broken.append(target)
    assert not broken, f"docs/{page.name} has broken links: {broken}"


# --- sample output that is the real output -------------------------------------------------

#: console blocks whose command needs no data: their output is compared with a real run
SAMPLES = re.compile(
    r"^\$ (etl (?:plugins$|plugins show|validate examples/quickstart)[^\n]*)\n(.*?)(?=^\$ |^```)",
    re.S | re.M,
)


@pytest.mark.parametrize(
    ("page", "command", "shown"),
    [
        pytest.param(page.name, command, shown, id=f"{page.name}: {command}")
        for page in sorted(DOCS.glob("*.md"))
        if page.name != "plugin-author-guide.md"  # its samples are of the plugin it writes
        for command, shown in SAMPLES.findall(page.read_text())
    ],
)
def test_sample_output_in_the_docs_is_the_real_output(monkeypatch, page, command, shown):
    """`etl plugins show` and `etl validate` of the quickstart, as the docs print them, are
    what the commands print now (built-in components only, as on a fresh install)."""
    import shlex

    from click.testing import CliRunner

    monkeypatch.setenv("ETL_LOAD_PLUGINS", "")
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(main, shlex.split(command)[1:])
    assert result.output.rstrip("\n") == shown.rstrip("\n"), f"{page}: `{command}`"


# --- every pipeline in the docs is valid ------------------------------------------------------

YAML_BLOCK = re.compile(r"^```yaml( fragment)?\n(.*?)^```", re.M | re.S)


def yaml_blocks() -> list[Any]:
    found = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text()
        for m in YAML_BLOCK.finditer(text):
            # (a `# file:` block is the author guide's walk-through: it needs the plugin the
            # walk-through makes, and tests/test_template.py runs it with that plugin)
            if not m.group(1) and not m.group(2).startswith("# file: "):
                line = text[: m.start()].count("\n") + 1
                found.append(pytest.param(page, m.group(2), id=f"{page.name}:{line}"))
    return found


@pytest.mark.parametrize(("page", "code"), yaml_blocks())
def test_every_pipeline_block_of_the_docs_passes_validate(monkeypatch, tmp_path, page, code):
    """A ```yaml block is a whole pipeline that `etl validate` accepts, unless its fence says
    ```yaml fragment (a part of a file, or a mistake shown on purpose) or it is a file of the
    author guide's walk-through (`# file: `, run by tests/test_template.py). Variables it names
    are set to a placeholder; installed plugins count (the dev environment has them all)."""
    from etl_core.config.load import yaml_value

    for name in re.findall(r"\$\{(\w+)", code):
        monkeypatch.setenv(name, "placeholder")
    data = yaml_value(code, f"{page.name}")
    assert isinstance(data, dict) and {"name", "sources", "sinks"} <= set(data), (
        "a whole pipeline (name, sources, sinks), or mark the block ```yaml fragment"
    )
    config.check(data=data, base_dir=tmp_path, host=get_plugin_host())


def test_the_docs_cite_no_file_outside_the_repository_and_run_python3():
    """`DESIGN.md` is not in the repository; `python` may not exist where `python3` does."""
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text()
        assert "DESIGN §" not in text, page.name
        assert not re.search(r"^\$ python ", text, re.M), page.name
