"""`etl new connector` without Spark: what it refuses, what it renders, and the template's own
metadata. The rendered packages' tests run in tests/test_template.py."""

from __future__ import annotations

import builtins
import json
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

from etl_core.cli import main
from etl_core.scaffold import KINDS, template_dir

ROOT = Path(__file__).resolve().parents[2]


def new(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["new", "connector", *args])
    return result.exit_code, result.output


def test_a_connector_is_rendered_with_the_kinds_chosen(tmp_path):
    code, output = new("notes", "--kinds", "loader,metrics_reporter", "-o", str(tmp_path))
    assert code == 0, output
    package = tmp_path / "etl-plugin-notes"
    assert f"created {package} (loader, metrics_reporter)" in output
    assert f"pip install -e '{package}[test]'" in output
    source = package / "src" / "etl_plugin_notes"
    assert sorted(p.name for p in source.iterdir()) == [
        "__init__.py",
        "client.py",
        "components.py",
        "datasource.py",
        "options.py",
        "plugin.py",
    ]
    plugin = (source / "plugin.py").read_text()
    assert "etl_register_loaders" in plugin and "etl_register_metrics_reporters" in plugin
    assert "etl_register_extractors" not in plugin
    pyproject = (package / "pyproject.toml").read_text()
    assert f'"etl-core>={metadata.version("etl-core")}"' in pyproject
    assert 'notes = "etl_plugin_notes.plugin"' in pyproject


def test_a_kind_that_moves_no_rows_gets_no_data_source(tmp_path):
    code, output = new("vaultish", "--kinds", "credential_provider", "-o", str(tmp_path))
    assert code == 0, output
    assert not (tmp_path / "etl-plugin-vaultish/src/etl_plugin_vaultish/datasource.py").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["Bad Name"], "name 'Bad Name': use lowercase letters"),
        (["notes", "--kinds", "extractor,sink"], "kinds sink: choose from extractor, loader"),
        (["notes", "--kinds", ","], "kinds (none)"),
    ],
)
def test_a_bad_name_or_kind_is_refused_before_anything_is_written(tmp_path, args, expected):
    code, output = new(*args, "-o", str(tmp_path))
    assert code == 2 and expected in output, output
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_left_alone(tmp_path):
    (tmp_path / "etl-plugin-notes").mkdir()
    (tmp_path / "etl-plugin-notes" / "mine.txt").write_text("keep me")
    code, output = new("notes", "-o", str(tmp_path))
    assert code == 2 and "already exists" in output
    assert (tmp_path / "etl-plugin-notes" / "mine.txt").read_text() == "keep me"


def test_without_cookiecutter_the_message_names_the_extra(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_cookiecutter(name, *args, **kwargs):
        if name.startswith("cookiecutter"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cookiecutter)
    code, output = new("notes", "-o", str(tmp_path))
    assert code == 1 and "pip install 'etl-core[new]'" in output, output


def test_a_direct_cookiecutter_user_gets_the_same_refusal(tmp_path):
    from cookiecutter.exceptions import FailedHookException
    from cookiecutter.main import cookiecutter

    with pytest.raises(FailedHookException):
        cookiecutter(
            str(ROOT / "cookiecutter-connector"),
            no_input=True,
            extra_context={"name": "notes", "kinds": "extractor,sink"},
            output_dir=str(tmp_path),
        )
    assert list(tmp_path.iterdir()) == []


def test_one_template_the_top_level_folder_links_to_the_packaged_one():
    top = ROOT / "cookiecutter-connector"
    assert top.is_symlink() and top.resolve() == template_dir().resolve()


def test_the_template_knows_the_kinds_and_the_version_of_etl_core():
    context = json.loads((template_dir() / "cookiecutter.json").read_text())
    assert context["_etl_core_version"] == metadata.version("etl-core")
    replay = json.loads((ROOT / "tests" / "template-replay.json").read_text())["cookiecutter"]
    assert replay["_etl_core_version"] == metadata.version("etl-core")
    hook = (template_dir() / "hooks" / "pre_gen_project.py").read_text()
    assert "KINDS = (" + ", ".join(f'"{k}"' for k in KINDS) + ")" in hook
