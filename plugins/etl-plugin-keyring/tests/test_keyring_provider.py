"""The keyring provider against a real keyring backend: keyrings.alt's plaintext file backend in
a temporary data folder (a headless machine has no Secret Service)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from etl_plugin_keyring import plugin as keyring_plugin
from etl_plugin_keyring.components import KeyringProvider
from etl_plugin_keyring.options import KeyringOptions

from etl_core import Secret, SecretError
from etl_core.plugins import get_plugin_host

PLANTED = "kr-Pl4nted-8c41e0"


def test_entry_gives_user_and_password(file_keyring):
    file_keyring.set_password("etl-warehouse", "etl", PLANTED)
    fields = KeyringProvider().resolve(KeyringOptions(service="etl-warehouse", username="etl"))
    assert {k: v.reveal() for k, v in fields.items()} == {"user": "etl", "password": PLANTED}
    assert all(isinstance(v, Secret) for v in fields.values())


def test_fields_rename_what_the_entry_holds(file_keyring):
    file_keyring.set_password("etl-s3", "AKIAEXAMPLE", PLANTED)
    options = KeyringOptions(
        service="etl-s3",
        username="AKIAEXAMPLE",
        fields={"access_key_id": "username", "secret_access_key": "password"},
    )
    fields = KeyringProvider().resolve(options)
    assert fields["access_key_id"].reveal() == "AKIAEXAMPLE"
    assert fields["secret_access_key"].reveal() == PLANTED


def test_inline_reference_gives_the_password_and_the_service_may_hold_slashes(file_keyring):
    file_keyring.set_password("team/etl-warehouse", "etl", PLANTED)
    options = KeyringProvider.options_for_reference("team/etl-warehouse/etl")
    assert (options.service, options.username) == ("team/etl-warehouse", "etl")
    assert {k: v.reveal() for k, v in KeyringProvider().resolve(options).items()} == {
        "password": PLANTED
    }


def test_a_missing_entry_says_how_to_store_it(file_keyring):
    file_keyring.set_password("etl-warehouse", "someone-else", PLANTED)
    with pytest.raises(SecretError) as caught:
        KeyringProvider().resolve(KeyringOptions(service="etl-warehouse", username="etl"))
    message = str(caught.value)
    assert "keyring:etl-warehouse/etl" in message
    assert "keyring set etl-warehouse etl" in message
    assert PLANTED not in message


def test_a_reference_without_username_is_refused():
    with pytest.raises(SecretError, match="keyring:SERVICE/USERNAME"):
        KeyringProvider.options_for_reference("etl-warehouse")


def test_fields_may_only_name_username_or_password():
    from etl_core import ConfigError, config

    host = get_plugin_host(autoload=False, extra=[("keyring", keyring_plugin)])
    data = {
        "name": "k",
        "credentials": {
            "wh": {"provider": "keyring", "service": "s", "username": "u", "fields": {"x": "pw"}}
        },
        "sources": {"a": {"type": "files", "format": "csv", "path": "a.csv"}},
        "sinks": {"o": {"type": "files", "input": "a", "path": "o"}},
    }
    with pytest.raises(ConfigError) as caught:
        config.check(data=data, host=host)
    assert "credentials.wh: `fields` maps credential fields to username or password" in str(
        caught.value
    )


@pytest.mark.spark
def test_a_pipeline_fills_the_options_of_the_source_naming_the_entry(
    file_keyring, etl_run, etl_probe
):
    file_keyring.set_password("etl-warehouse", "etl", PLANTED)
    file_keyring.set_password("etl-api", "deploy", "second-" + PLANTED)
    metrics = etl_run(
        {
            "name": "keyring_run",
            "credentials": {
                "wh": {"provider": "keyring", "service": "etl-warehouse", "username": "etl"}
            },
            "sources": {
                "a": {"type": etl_probe.name, "credentials": "wh"},
                "b": {"type": etl_probe.name, "password": {"secret": "keyring:etl-api/deploy"}},
            },
            "sinks": {
                "oa": {"type": "files", "input": "a", "path": "oa", "format": "parquet"},
                "ob": {"type": "files", "input": "b", "path": "ob", "format": "parquet"},
            },
        },
        host=etl_probe.host(keyring_plugin),
    )
    assert metrics.status == "succeeded"
    by_password = {o.password.reveal(): o for o in etl_probe.seen}
    assert by_password[PLANTED].user.reveal() == "etl"
    assert by_password["second-" + PLANTED].user is None


@pytest.mark.slow
def test_the_installed_entry_point_registers_keyring_without_importing_it(tmp_path):
    code = (
        "import sys\n"
        "from etl_core.plugins import get_plugin_host\n"
        "host = get_plugin_host(strict=True, only=['keyring'])\n"
        "assert 'keyring' in host.components('credential_provider')\n"
        "assert 'keyring' not in sys.modules, 'keyring imported while loading the plugin'\n"
    )
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
    listing = subprocess.run(
        [str(Path(sys.executable).with_name("etl")), "plugins"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if listing.returncode != 0 or "etl-plugin-keyring" not in listing.stdout:
        pytest.fail(f"`etl plugins` does not list etl-plugin-keyring:\n{listing.stdout}")
