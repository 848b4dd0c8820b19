"""Refuse a connector name or a kind the template cannot render (before any file is written)."""

import re
import sys

KINDS = ("extractor", "loader", "credential_provider", "metrics_reporter")
name = "{{ cookiecutter.name }}"
kinds = [k.strip() for k in "{{ cookiecutter.kinds }}".split(",") if k.strip()]

problems = []
if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
    problems.append(f"name {name!r}: use lowercase letters, digits, '-' or '_', a letter first")
unknown = [k for k in kinds if k not in KINDS]
if unknown or not kinds:
    problems.append(f"kinds {unknown or kinds!r}: choose one or more of {', '.join(KINDS)}")
if problems:
    sys.exit("cannot render the connector: " + "; ".join(problems))
