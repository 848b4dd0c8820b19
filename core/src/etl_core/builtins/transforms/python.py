"""The ``python`` transform: a user's function, named as ``module:function``, builds the
DataFrame."""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from etl_core.api import Context, Transformer
from etl_core.errors import ConfigError, EtlError, PermanentError, short_error

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


@attrs.frozen
class PythonOptions:
    function: str
    options: dict[str, Any] = attrs.field(factory=dict)


def _function_reference(text: str) -> tuple[str, str] | None:
    """``"package.module:function"`` (or ``module:Class.method``) → its two halves."""
    module, sep, attribute = text.partition(":")
    parts = [*module.split("."), *attribute.split(".")]
    if not sep or not all(part.isidentifier() for part in parts):
        return None
    return module, attribute


class PythonTransform(Transformer):
    """Call ``function(inputs, options)`` from a Python module: ``inputs`` maps each input's
    name to its DataFrame, ``options`` is the block's ``options`` mapping. The function must
    return a DataFrame, built lazily (no Spark action, no collect)."""

    name = "python"
    #: row by row (a join or union with a static source too): each micro-batch on its own
    capabilities = frozenset({"batch", "streaming"})
    Options = PythonOptions
    inputs: ClassVar[tuple[int, int | None]] = (1, None)

    def check(self, inputs: Sequence[str], options: PythonOptions) -> list[str]:
        if _function_reference(options.function) is None:
            return [
                f"`function`: {options.function!r} is not a 'module:function' reference; "
                "write e.g. `function: my_package.transforms:enrich`"
            ]
        return []

    def transform(
        self, ctx: Context, inputs: Mapping[str, DataFrame], options: PythonOptions
    ) -> DataFrame:
        from pyspark.errors import AnalysisException
        from pyspark.sql import DataFrame

        path = f"transforms.{ctx.dataset}"
        function = _load_function(f"{path}.function", options.function)
        try:
            result = function(MappingProxyType(dict(inputs)), copy.deepcopy(options.options))
        except (EtlError, AnalysisException):
            raise  # the runner reports analysis errors as config errors of this transform
        except Exception as exc:
            raise PermanentError(
                f"{path}: {options.function} raised {type(exc).__name__}: {short_error(exc)}"
            ) from exc
        if not isinstance(result, DataFrame):
            raise PermanentError(
                f"{path}: {options.function} returned {type(result).__name__}, not a DataFrame"
            )
        return result


def _load_function(path: str, reference: str) -> Callable[..., Any]:
    """Import the function named by a ``module:function`` reference (checked by ``check``)."""
    parsed = _function_reference(reference)
    if parsed is None:
        raise ConfigError.at(path, f"{reference!r} is not a 'module:function' reference")
    module_name, attribute = parsed
    fix = (
        "check the reference; the module must be importable where etl runs (an installed "
        "package, or a folder on PYTHONPATH)"
    )
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and f"{module_name}.".startswith(f"{exc.name}."):
            raise ConfigError.at(
                path, f"cannot import {reference!r}: no module named {exc.name!r}", fix
            ) from None
        raise PermanentError(f"{path}: importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:  # any error of the user's own module, reported with its path
        raise PermanentError(
            f"{path}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError.at(
                path, f"cannot import {reference!r}: {module_name!r} has no {attribute!r}", fix
            )
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError.at(path, f"{reference!r} is not a function", fix)
    return target  # type: ignore[no-any-return]
