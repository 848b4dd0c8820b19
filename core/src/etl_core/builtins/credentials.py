"""The built-in credential providers: ``env`` (environment variables) and ``file`` (a private
file holding one value or a YAML/JSON mapping of fields)."""

from __future__ import annotations

import json
import os
import shlex
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from etl_core.api import CredentialProvider, Secret, SecretError
from etl_core.options import one_of


@attrs.frozen
class EnvOptions:
    #: credential field → environment variable, e.g. ``{password: PG_PASSWORD}``
    fields: dict[str, str]


class EnvProvider(CredentialProvider):
    """Read each field of a credentials entry from an environment variable."""

    name = "env"
    Options = EnvOptions

    def resolve(self, options: EnvOptions) -> Mapping[str, Secret]:
        missing = [var for var in options.fields.values() if var not in os.environ]
        if missing:
            raise SecretError(
                f"environment variable(s) {', '.join(missing)} not set; export them before the run"
            )
        return {field: Secret(os.environ[var]) for field, var in options.fields.items()}

    @classmethod
    def options_for_reference(cls, path: str) -> EnvOptions:
        return EnvOptions(fields={"value": path})


#: file suffixes read as a mapping of fields under ``format: auto``
_MAPPING_SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}


@attrs.frozen
class FileOptions:
    #: the file; ``~`` is expanded, a relative path is relative to the working directory
    path: str
    #: credential field → key in the file; unset: every key of the file, under its own name
    fields: dict[str, str] | None = None
    #: ``auto``: ``.yaml``/``.yml``/``.json`` files hold a mapping of fields, any other file
    #: holds one value (field ``value``, trailing newline removed)
    format: str = attrs.field(default="auto", validator=one_of("auto", "yaml", "json", "text"))


class FileProvider(CredentialProvider):
    """Read a credentials entry from a file only its owner can read (mode 600 or 400).

    Kubernetes and Docker secrets mounted as one file per value, and YAML/JSON files of
    fields (``user``, ``password``, ...), both work. Messages name the file and the field,
    never a value.
    """

    name = "file"
    Options = FileOptions

    def resolve(self, options: FileOptions) -> Mapping[str, Secret]:
        path = Path(options.path).expanduser().absolute()
        text = _read_private(path)
        fmt = options.format
        if fmt == "auto":
            fmt = _MAPPING_SUFFIXES.get(path.suffix.lower(), "text")
        if fmt == "text":
            value = text.rstrip("\r\n")
            if not value:
                raise SecretError(f"secret file {path} is empty")
            found = {"value": value}
        else:
            found = _parse_fields(text, fmt, path)
        if options.fields is None:
            return {key: Secret(value) for key, value in found.items()}
        missing = [key for key in options.fields.values() if key not in found]
        if missing:
            raise SecretError(
                f"secret file {path} has no field(s) {', '.join(map(repr, missing))} "
                f"(it has: {', '.join(sorted(found)) or 'none'})"
            )
        return {field: Secret(found[key]) for field, key in options.fields.items()}

    @classmethod
    def options_for_reference(cls, path: str) -> FileOptions:
        return FileOptions(path=path)


def _read_private(path: Path) -> str:
    """The file's text, refused when group or others may access it (checked on the opened
    file, so a swap between the check and the read cannot slip through)."""
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise SecretError(f"secret file {path} is not a regular file")
            if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise SecretError(
                    f"secret file {path} is accessible by group or others "
                    f"(mode {stat.S_IMODE(mode):04o}); make it private: "
                    f"chmod 600 {shlex.quote(str(path))}"
                )
            data = handle.read()
    except FileNotFoundError:
        raise SecretError(f"secret file {path} does not exist") from None
    except IsADirectoryError:
        raise SecretError(f"secret file {path} is a directory, not a file") from None
    except PermissionError:
        raise SecretError(
            f"secret file {path} cannot be read by this user; run etl as its owner"
        ) from None
    except OSError as exc:
        raise SecretError(f"secret file {path} cannot be read: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"secret file {path} is not UTF-8 text") from None


def _parse_fields(text: str, fmt: str, path: Path) -> dict[str, str]:
    """A mapping of string fields. Parse errors give only a line number: the parser's own
    message quotes the file's content."""
    if fmt == "json":
        try:
            data: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SecretError(f"secret file {path} is not valid JSON (line {exc.lineno})") from None
    else:
        import yaml

        try:
            # BaseLoader keeps every scalar a string: a password `0123` or `no` stays as written.
            data = yaml.load(text, Loader=yaml.BaseLoader)  # noqa: S506 - builds no objects
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise SecretError(f"secret file {path} is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise SecretError(
            f"secret file {path} must hold a mapping of fields, e.g. `password: ...`; "
            "a file holding one value needs no .yaml/.json suffix (or `format: text`)"
        )
    for key, value in data.items():
        if not isinstance(value, str):
            raise SecretError(f"secret file {path}: field {str(key)!r} must be a string (quote it)")
    return {str(key): value for key, value in data.items()}
