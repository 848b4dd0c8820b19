"""The connector template as a new connector author meets it, in a fresh virtualenv holding
only the etl-core wheel built from this checkout (with its `new` extra) and pytest:

- the plugin author guide's walk-through, run command by command and file by file as the guide
  shows them: render `notes` with an extractor and a loader, run its tests (the full extractor
  and loader suites), a pipeline through it, its wheel;
- every other combination of kinds rendered by `etl new connector`, and the top-level
  `cookiecutter-connector` (a link to the packaged template) rendered from the replay file
  beside this test, as `cookiecutter --replay-file` does: each clean under ruff, installed with
  pip, listed by `etl plugins`, running a case of each of its suites, and made of the same code
  as the package of all four kinds, whose credential provider and reporter suites run whole.
"""

from __future__ import annotations

import ast
import itertools
import re
import shlex
import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from etl_core.scaffold import KINDS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugin-author-guide.md"
WALK_THROUGH = "## From `etl new connector` to a wheel"
REPLAY = Path(__file__).parent / "template-replay.json"
#: one letter per kind, for the package names of the combinations
LETTER = {"extractor": "e", "loader": "l", "credential_provider": "c", "metrics_reporter": "m"}
#: each kind's conformance classes in the rendered tests
SUITES = {
    "extractor": "ExtractorConformance",
    "loader": "LoaderConformance",
    "credential_provider": "CredentialProviderConformance",
    "metrics_reporter": "ReporterConformance",
}
#: the case of each suite every combination runs
ONE_CASE = {
    "extractor": "test_round_trip",
    "loader": "test_round_trip",
    "credential_provider": "test_an_entry_resolves_to_its_fields",
    "metrics_reporter": "test_receives_the_runs_metrics",
}
#: the walk-through renders ("extractor", "loader"); this test the others
COMBINATIONS = [
    c for n in range(1, 5) for c in itertools.combinations(KINDS, n) if c != ("extractor", "loader")
]


@pytest.fixture(scope="module")
def author(wheelhouse, fresh_venv):
    """The author's virtualenv: pip finds etl-core in the wheelhouse, the rest on the index."""
    env = fresh_venv("author")
    env.env["PIP_FIND_LINKS"] = str(wheelhouse)
    env.pip_install("etl-core[new]", "pytest")
    return env


def walk_through() -> list[tuple[str, str]]:
    """The guide's walk-through as steps: ("run", command) for each `$` line of a console
    block, ("write", name + "\\n" + text) for each block whose first line is `# file: NAME`."""
    text = GUIDE.read_text()
    start = text.index(WALK_THROUGH)
    section = text[start : text.index("\n## ", start + len(WALK_THROUGH))]
    steps = []
    for kind, body in re.findall(r"^```(\w+)\n(.*?)^```", section, re.M | re.S):
        if kind == "console":
            steps += [("run", line[2:]) for line in body.splitlines() if line.startswith("$ ")]
        elif body.startswith("# file: "):
            name, _, rest = body.partition("\n")
            steps.append(("write", name.removeprefix("# file: ") + "\n" + rest))
    return steps


def test_the_author_guide_walk_through_runs(author, tmp_path):
    steps = walk_through()
    assert [s for s in steps if s[0] == "run"][:2] == [
        ("run", "pip install 'etl-core[new]' build"),
        ("run", "etl new connector notes --kinds extractor,loader"),
    ]
    outputs = {}
    for kind, step in steps:
        if kind == "write":
            name, _, body = step.partition("\n")
            (tmp_path / name).write_text(body)
            continue
        program, *args = shlex.split(step)
        outputs[step] = author.run(program, *args, cwd=tmp_path, timeout=1200)
    assert re.search(r"\b\d+ passed\b", outputs["pytest etl-plugin-notes"])
    claimed = re.search(r"`(etl conformance: \d+ cases not applicable)", GUIDE.read_text())
    assert claimed and claimed[1] in outputs["pytest etl-plugin-notes"]  # the guide's summary
    assert "failed" not in outputs["pytest etl-plugin-notes"]
    assert "succeeded" in outputs["etl run pipeline.yaml"]
    assert "notes" in outputs["etl plugins show notes"]
    assert (tmp_path / "dist" / "etl_plugin_notes-0.1.0-py3-none-any.whl").exists()
    read = (
        "from pathlib import Path; from etl_plugin_notes import client; "
        "t = client.read_table(Path('tables/clicks')); print(len(t.files), len(t.runs))"
    )
    assert author.run("python", "-c", read, cwd=tmp_path).split() == ["1", "1"]


def normalized_definitions(package: Path, name: str) -> dict[str, str]:
    """Every top-level function and class of a rendered package's modules, as AST dumps with
    the connector's names replaced by placeholders."""
    cls = name.replace("-", " ").replace("_", " ").title().replace(" ", "")
    found = {}
    for module in sorted((package / "src").glob("*/*.py")):
        text = module.read_text().replace(f"etl_plugin_{name}", "etl_plugin_NAME")
        text = text.replace(f"ETL_{name.upper()}_", "ETL_NAME_").replace(cls, "CLS")
        text = re.sub(rf"\b{name}\b", "NAME", text)
        for node in ast.parse(text).body:
            if isinstance(node, ast.FunctionDef):
                found[f"{module.name}:{node.name}"] = ast.dump(node)
            elif isinstance(node, ast.ClassDef):  # each method apart: kinds add methods
                methods = [n for n in node.body if isinstance(n, ast.FunctionDef)]
                for method in methods:
                    found[f"{module.name}:{node.name}.{method.name}"] = ast.dump(method)
                rest = [n for n in node.body if n not in methods]
                found[f"{module.name}:{node.name}"] = ast.dump(
                    ast.ClassDef(node.name, node.bases, node.keywords, rest, node.decorator_list)
                )
    return found


def test_every_combination_renders_installs_lints_and_runs(author, tmp_path):
    """Each combination is rendered, linted, installed, listed and runs one case of each of
    its suites; the full suites run on the package of all four kinds (credential provider and
    reporter here; extractor and loader in the walk-through's package, the same code), and
    every function and class of every combination is checked to be the code of that package,
    names aside, so the full suites need not repeat per combination."""
    out = tmp_path / "connectors"
    names = {}
    for kinds in COMBINATIONS:
        name = "kit" + "".join(LETTER[k] for k in kinds)
        author.run("etl", "new", "connector", name, "--kinds", ",".join(kinds), "-o", out)
        names[name] = kinds
    # the top-level template, non-interactively from the replay file (all four kinds)
    cookiecutter = author.bin / "cookiecutter"
    author.run(cookiecutter, "--replay-file", REPLAY, "-o", out, ROOT / "cookiecutter-connector")
    names["replayed"] = KINDS
    packages = {name: out / f"etl-plugin-{name}" for name in names}
    assert sorted(out.iterdir()) == sorted(packages.values())
    full = normalized_definitions(packages["replayed"], "replayed")
    for name, package in packages.items():
        has_datasource = (package / "src" / f"etl_plugin_{name}" / "datasource.py").exists()
        assert has_datasource == bool({"extractor", "loader"} & set(names[name])), package
        for where, code in normalized_definitions(package, name).items():
            assert code == full.get(where), f"{name}: {where} differs from the full package"

    ruff = shutil.which("ruff")
    assert ruff, "ruff (requirements-dev.txt) is needed to lint the rendered packages"
    author.run(ruff, "check", "--no-cache", ".", cwd=out)
    author.run(ruff, "format", "--check", "--no-cache", ".", cwd=out)

    author.pip_install("--no-deps", *packages.values())
    listed = author.run("etl", "plugins")
    for name in names:
        assert f"etl-plugin-{name} 0.1.0  (entry point '{name}')" in listed

    wanted, ids = [], []  # (class, test or "") of every case to run, and their node ids
    for name, kinds in names.items():
        for kind in kinds:
            cls = f"Test{name.title()}{SUITES[kind]}"
            whole = name == "replayed" and kind in ("credential_provider", "metrics_reporter")
            test = "" if whole else ONE_CASE[kind]
            wanted.append((cls, test))
            node = f"etl-plugin-{name}/tests/test_conformance.py::{cls}"
            ids.append(f"{node}::{test}" if test else node)
    report, config = tmp_path / "junit.xml", tmp_path / "pytest.ini"
    config.write_text("[pytest]\n")  # one configuration for all the packages' tests
    author.run(
        "python",
        "-m",
        "pytest",
        "-c",
        config,
        "--rootdir",
        out,
        "-p",
        "no:cacheprovider",
        "--import-mode=importlib",
        f"--junitxml={report}",
        *ids,
        cwd=out,
        timeout=1200,
    )
    passed: Counter[str] = Counter()
    ran = set()
    for case in ET.parse(report).iter("testcase"):
        assert case.find("failure") is None and case.find("error") is None, case.attrib
        if case.find("skipped") is None:
            cls = case.attrib["classname"].rsplit(".", 1)[-1]
            passed[cls] += 1
            ran.add((cls, case.attrib["name"]))
    for cls, test in wanted:
        assert (cls, test) in ran if test else passed[cls] >= 2, (cls, test, sorted(ran))
