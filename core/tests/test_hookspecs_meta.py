"""Meta-tests keeping the hook surface honest: every hook is documented, tested and in the guide."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from etl_core import hookspecs

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "plugin-author-guide.md"
HOOKS = sorted(
    name
    for name, value in vars(hookspecs).items()
    if name.startswith("etl_") and inspect.isfunction(value)
)


def test_hooks_are_found() -> None:
    assert "etl_register_extractors" in HOOKS
    assert "etl_run_finished" in HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_a_hookspec(hook: str) -> None:
    assert hasattr(getattr(hookspecs, hook), "etl_spec"), f"{hook} lacks the @hookspec marker"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_docstring_documenting_each_parameter(hook: str) -> None:
    function = getattr(hookspecs, hook)
    docstring = inspect.getdoc(function)

    assert docstring, f"{hook} has no docstring"
    for parameter in inspect.signature(function).parameters:
        assert f":param {parameter}:" in docstring, f"{hook} does not document {parameter!r}"


def files_of_tests() -> list[Path]:
    this_file = Path(__file__).resolve()
    candidates = [
        *(ROOT / "core" / "tests").rglob("*.py"),
        *(ROOT / "tests").rglob("*.py"),
    ]
    return [
        path
        for path in candidates
        if (path.name.startswith("test_") or path.name == "conftest.py")
        and path.resolve() != this_file
    ]


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_tests(hook: str) -> None:
    mention = re.compile(rf"\b{hook}\b")

    assert any(mention.search(path.read_text()) for path in files_of_tests()), (
        f"no test under core/tests or tests/ mentions {hook}"
    )


def expected_heading(hook: str) -> str:
    """``etl_register_extractors(register)``: the hook and its parameter names, no annotations."""
    parameters = inspect.signature(getattr(hookspecs, hook)).parameters
    return f"{hook}({', '.join(parameters)})"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_in_the_plugin_author_guide(hook: str) -> None:
    assert GUIDE.exists(), f"{GUIDE.relative_to(ROOT)} is missing"
    headings = [line for line in GUIDE.read_text().splitlines() if line.startswith("### ")]
    signature = expected_heading(hook)

    assert any(signature in heading for heading in headings), (
        f"{GUIDE.relative_to(ROOT)} needs a heading `### {signature}`"
    )
