"""The built-in ``file`` credential provider: private files only, messages without values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etl_core import SecretError
from etl_core.builtins.credentials import FileOptions, FileProvider

PLANTED = "fl-Pl4nted-3b9a77"


def private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def revealed(fields) -> dict[str, str]:
    return {name: secret.reveal() for name, secret in fields.items()}


def test_a_yaml_file_gives_its_fields_as_written(tmp_path):
    path = private(tmp_path / "wh.yaml", f"user: etl\npassword: {PLANTED}\nport: 0123\nflag: no\n")
    assert revealed(FileProvider().resolve(FileOptions(path=str(path)))) == {
        "user": "etl",
        "password": PLANTED,
        "port": "0123",  # not the octal number 83
        "flag": "no",  # not False
    }


def test_a_json_file_and_a_fields_mapping(tmp_path):
    path = private(tmp_path / "s3.json", json.dumps({"key": "AKIAEXAMPLE", "secret": PLANTED}))
    options = FileOptions(
        path=str(path), fields={"access_key_id": "key", "secret_access_key": "secret"}
    )
    assert revealed(FileProvider().resolve(options)) == {
        "access_key_id": "AKIAEXAMPLE",
        "secret_access_key": PLANTED,
    }


def test_a_file_without_a_mapping_suffix_is_one_value(tmp_path):
    path = private(tmp_path / "pg_password", PLANTED + "\n")
    assert revealed(FileProvider().resolve(FileOptions(path=str(path)))) == {"value": PLANTED}
    options = FileOptions(path=str(path), fields={"password": "value"})
    assert revealed(FileProvider().resolve(options)) == {"password": PLANTED}


def test_inline_references_take_a_path_and_an_optional_field(tmp_path):
    path = private(tmp_path / "pw.txt", PLANTED)
    options = FileProvider.options_for_reference(str(path))
    assert options == FileOptions(path=str(path))
    assert revealed(FileProvider().resolve(options)) == {"value": PLANTED}


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_file_others_can_access_is_refused_with_the_chmod_to_run(tmp_path, mode):
    path = private(tmp_path / "wh.yaml", f"password: {PLANTED}\n", mode)
    with pytest.raises(SecretError) as caught:
        FileProvider().resolve(FileOptions(path=str(path)))
    message = str(caught.value)
    assert f"(mode 0{mode:o})" in message
    assert f"chmod 600 {path}" in message
    assert PLANTED not in message


def test_the_chmod_quotes_a_path_with_spaces(tmp_path):
    path = private(tmp_path / "my secrets.yaml", "password: x\n", 0o644)
    with pytest.raises(SecretError, match=f"chmod 600 '{path}'"):
        FileProvider().resolve(FileOptions(path=str(path)))


def test_owner_read_only_is_fine(tmp_path):
    path = private(tmp_path / "wh.yaml", f"password: {PLANTED}\n", 0o400)
    assert revealed(FileProvider().resolve(FileOptions(path=str(path)))) == {"password": PLANTED}


def test_a_relative_path_is_named_absolutely(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SecretError, match=f"secret file {tmp_path}/secrets/wh.yaml does not exist"):
        FileProvider().resolve(FileOptions(path="secrets/wh.yaml"))


@pytest.mark.parametrize(
    ("name", "text", "fields", "message"),
    [
        ("wh.yaml", f"password: {PLANTED}\n", {"user": "username"}, "has no field(s) 'username'"),
        ("wh.yaml", f"password: [{PLANTED}]\n", None, "field 'password' must be a string"),
        ("wh.json", f'{{"password": 12, "x": "{PLANTED}"}}', None, "'password' must be a string"),
        ("wh.yaml", f"- {PLANTED}\n", None, "must hold a mapping of fields"),
        ("wh.yaml", f"password: '{PLANTED}\n", None, "is not valid YAML (line 2)"),
        ("wh.json", f'{{"password": "{PLANTED}"', None, "is not valid JSON (line 1)"),
        ("empty", "\n", None, "is empty"),
    ],
)
def test_broken_files_are_named_but_never_quoted(tmp_path, name, text, fields, message):
    path = private(tmp_path / name, text)
    with pytest.raises(SecretError) as caught:
        FileProvider().resolve(FileOptions(path=str(path), fields=fields))
    assert message in str(caught.value)
    assert str(path) in str(caught.value)
    assert PLANTED not in str(caught.value)


def test_a_directory_is_not_a_secret_file(tmp_path):
    folder = tmp_path / "dir"
    folder.mkdir(mode=0o700)
    with pytest.raises(SecretError, match=r"is a directory|is not a regular file"):
        FileProvider().resolve(FileOptions(path=str(folder)))


@pytest.mark.spark
def test_a_pipeline_reads_an_entry_and_an_inline_reference(etl_run, etl_probe, tmp_path):
    private(tmp_path / "wh.yaml", f"user: etl\npassword: {PLANTED}\n")
    private(tmp_path / "token", "second-" + PLANTED + "\n")
    metrics = etl_run(
        {
            "name": "file_secrets",
            "credentials": {"wh": {"provider": "file", "path": str(tmp_path / "wh.yaml")}},
            "sources": {
                "a": {"type": etl_probe.name, "credentials": "wh"},
                "b": {
                    "type": etl_probe.name,
                    "password": {"secret": f"file:{tmp_path}/wh.yaml#password"},
                },
                "c": {"type": etl_probe.name, "password": {"secret": f"file:{tmp_path}/token"}},
            },
            "sinks": {
                f"out_{name}": {"type": "files", "input": name, "path": f"out_{name}"}
                for name in ("a", "b", "c")
            },
        },
        host=etl_probe.host(),
    )
    assert metrics.status == "succeeded"
    seen = sorted((o.user.reveal() if o.user else "", o.password.reveal()) for o in etl_probe.seen)
    assert seen == [("", PLANTED), ("", "second-" + PLANTED), ("etl", PLANTED)]
