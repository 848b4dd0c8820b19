"""Secrets in config are references: plaintext under secret-looking keys is refused (no Spark)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from etl_core import Secret, SecretRef
from etl_core.cli import main


def write(tmp_path, options: str, extra: str = "") -> str:
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: s\n"
        f"{extra}"
        "sources:\n"
        f"  a: {{type: files, format: csv, path: a.csv, {options}}}\n"
        "sinks:\n"
        "  o: {type: files, input: a, path: o}\n"
    )
    return str(path)


@pytest.mark.parametrize(
    ("options", "path"),
    [
        ("options: {password: hunter2}", "sources.a.options.password"),
        ("options: {api_key: abc}", "sources.a.options.api_key"),
        ("options: {db_password: abc}", "sources.a.options.db_password"),
        ("options: {secret_access_key: abc}", "sources.a.options.secret_access_key"),
    ],
)
def test_plaintext_secret_is_refused_with_the_reference_to_write(tmp_path, options, path):
    result = CliRunner().invoke(main, ["validate", write(tmp_path, options)])
    assert result.exit_code == 2
    assert path in result.stderr
    assert '{secret: "env:VARIABLE"}' in result.stderr
    assert "hunter2" not in result.output and "abc" not in result.output.split(path)[1]


def test_env_interpolation_under_a_secret_key_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PLANTED_VALUE", "s3cr3t-planted")
    result = CliRunner().invoke(
        main, ["validate", write(tmp_path, 'options: {token: "${PLANTED_VALUE}"}')]
    )
    assert result.exit_code == 2
    assert "sources.a.options.token" in result.stderr
    assert "s3cr3t-planted" not in result.output


def test_allow_plaintext_secrets_warns_and_passes(tmp_path):
    result = CliRunner().invoke(
        main, ["validate", "--allow-plaintext-secrets", write(tmp_path, "options: {password: x}")]
    )
    assert result.exit_code == 0, result.output
    assert "sources.a.options.password holds a plaintext secret" in result.stderr


def test_references_and_look_alike_keys_are_accepted(tmp_path):
    extra = "credentials:\n  db: {provider: env, fields: {password: DB_PASSWORD}}\n"
    options = 'credentials: db, options: {password: {secret: "env:X"}, sort_key: id}'
    # `options` is dict[str, str], so the reference itself is refused by type, not as plaintext
    result = CliRunner().invoke(main, ["validate", write(tmp_path, options, extra)])
    assert "plaintext" not in result.output
    assert "sort_key" not in result.output


def test_secret_prints_as_stars_and_references_parse():
    assert str(Secret("x")) == repr(Secret("x")) == "***"
    ref = SecretRef.parse("vault:etl/warehouse#password")
    assert (ref.provider, ref.path, ref.field) == ("vault", "etl/warehouse", "password")
    with pytest.raises(ValueError, match="provider:path"):
        SecretRef.parse("no-provider")
