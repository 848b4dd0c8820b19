"""The data-quality gate of a run (``validate:`` blocks): the declared schema is compared while
the run builds its datasets, the rules' flags and aggregates are observed in the pass that
stages them, and step 2 of the commit protocol judges them."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import attrs

from etl_core.api import RuleResult, StageMetrics, Validation, ValidationFailed
from etl_core.config.model import BoundPipeline, BoundRule, BoundValidation
from etl_core.datasources import row_json
from etl_core.errors import ConfigError, ConfigIssue, short_error
from etl_core.run.live import observed

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Observation

    from etl_core.run.live import LiveRun

log = logging.getLogger("etl.run")


@attrs.define(eq=False)
class QualityGate:
    """The ``validate:`` blocks of one run: what :meth:`validate` added to the datasets, judged
    by :meth:`judge` from the numbers staging observed. It receives the live run; the run's
    state never refers to the gate."""

    run: LiveRun = attrs.field(repr=False)
    quality: list[tuple[BoundValidation, list[tuple[BoundRule, Validation]], Observation]] = (
        attrs.field(factory=list)
    )

    def validate(self, df: DataFrame, validation: BoundValidation) -> DataFrame:
        """Check the declared schema now (no job), and add the rules' flags and aggregates to
        the dataset, observed in the pass that stages it. Quarantine splits the rows."""
        from pyspark.errors import AnalysisException
        from pyspark.sql import Observation
        from pyspark.sql import functions as F

        df, rules = self._check_schema(df, validation)
        ctx = self.run.context(
            self.run.bound.sources.get(validation.dataset)
            or self.run.bound.transforms[validation.dataset]
        )
        checks, flags, aggregates = [], {}, [F.count(F.lit(1)).alias("rows_in")]
        for i, rule in enumerate(rules):
            try:
                check = rule.component().validate(ctx, df, rule.options)
                for column in [check.flag, *check.aggregates.values()]:
                    if column is not None:
                        df.select(column)  # analysis only: a missing column names its rule
                if check.flag is not None:
                    flags[f"_etl_rule_{i}"] = F.coalesce(check.flag, F.lit(False))
                    aggregates.append(
                        F.coalesce(F.sum(F.col(f"_etl_rule_{i}").cast("long")), F.lit(0)).alias(
                            f"r{i}.failed_rows"
                        )
                    )
                aggregates += [agg.alias(f"r{i}.{key}") for key, agg in check.aggregates.items()]
                checks.append((rule, check))
            except AnalysisException as exc:
                raise ConfigError(
                    ConfigIssue(
                        rule.path,
                        short_error(exc).splitlines()[0],
                        "check the column names of this dataset",
                    )
                ) from None
        observation = Observation(f"etl_{self.run.run_key}_q{len(self.quality)}")
        flagged = df.withColumns(flags).observe(observation, *aggregates)
        self.quality.append((validation, checks, observation))
        metrics = StageMetrics(dataset=validation.dataset, stage="validate", component="quality")
        self.run.metrics.stages.append(metrics)
        errors = [
            f"_etl_rule_{i}"
            for i, (rule, _) in enumerate(checks)
            if rule.severity == "error" and f"_etl_rule_{i}" in flags
        ]
        if validation.on_failure != "quarantine" or not errors:
            return flagged.drop(*flags)
        return self._quarantine(flagged, df.columns, validation.dataset, checks, errors)

    def _quarantine(
        self,
        flagged: DataFrame,
        columns: list[str],
        dataset: str,
        checks: list[tuple[BoundRule, Validation]],
        errors: list[str],
    ) -> DataFrame:
        """Rows that break an error-severity rule go to the dead letters with every rule they
        broke; the rest go on, counted."""
        from pyspark.sql import functions as F

        flagged = flagged.persist()  # computed once for the rows that pass and the quarantine
        self.run.persisted.append(flagged)
        broken = F.lit(False)
        for flag in errors:
            broken = broken | F.col(flag)
        present = set(flagged.columns)
        reasons = F.filter(
            F.array(
                *[
                    F.when(
                        F.col(f"_etl_rule_{i}"),
                        F.struct(
                            F.lit(rule.name).alias("rule"),
                            F.lit(check.message).alias("message"),
                            F.lit(rule.severity).alias("severity"),
                        ),
                    )
                    for i, (rule, check) in enumerate(checks)
                    if f"_etl_rule_{i}" in present
                ]
            ),
            lambda reason: reason.isNotNull(),
        )
        quarantined = flagged.filter(broken).select(
            reasons.alias("errors"), row_json(*columns).alias("row")
        )
        self.run.route_dead_letters("validate", dataset, "quality", quarantined)
        flags = [c for c in flagged.columns if c.startswith("_etl_rule_")]
        passed = flagged.filter(~broken).drop(*flags)
        return self.run.observe(passed, dataset, "validated", "quality")

    def _check_schema(
        self, df: DataFrame, validation: BoundValidation
    ) -> tuple[DataFrame, list[BoundRule]]:
        """Compare the declared schema with the dataset's: every problem at once."""
        from pyspark.sql import functions as F
        from pyspark.sql.types import _parse_datatype_string

        rules = list(validation.rules)
        if not validation.schema:
            return df, rules
        found = {f.name.lower(): f for f in df.schema.fields}
        declared = {c.name.lower() for c in validation.schema}
        problems, casts = [], {}
        for column in validation.schema:
            field = found.get(column.name.lower())
            expected = _parse_datatype_string(column.type)
            if field is None:
                problems.append(f"{column.name}: missing (expected {expected.simpleString()})")
                continue
            if field.dataType != expected:
                wanted, got = expected.simpleString(), field.dataType.simpleString()
                if validation.mode == "coerce" and safe_cast(field.dataType, expected):
                    casts[field.name] = F.col(field.name).cast(expected)
                else:
                    how = " (not a safe cast)" if validation.mode == "coerce" else ""
                    problems.append(f"{column.name}: expected {wanted}, found {got}{how}")
            if not column.nullable:  # declared NOT NULL: checked row by row
                from etl_core.builtins.quality import NotNull

                rules.append(
                    BoundRule(
                        f"validate.{validation.dataset}.schema",
                        f"schema:not_null({column.name})",
                        "error",
                        NotNull,
                        NotNull.Options(columns=[column.name]),
                    )
                )
        if validation.mode == "strict":
            problems += [
                f"{f.name}: unexpected column ({f.dataType.simpleString()})"
                for key, f in found.items()
                if key not in declared
            ]
        if problems:
            text = (
                f"validate.{validation.dataset}.schema: the dataset does not match its "
                f"declared schema ({validation.mode}):\n" + "\n".join(f"  - {p}" for p in problems)
            )
            if validation.on_failure != "continue":
                raise ValidationFailed(text)
            log.warning("etl: %s", text)
            self.run.metrics.quality.append(RuleResult("schema", "error", False, None, text))
        return (df.withColumns(casts) if casts else df), rules

    def judge(self) -> list[str]:
        """Step 2 of the commit protocol, for quality: judge every rule from the numbers staging
        observed. Returns the failures that fail the run (the caller raises them)."""
        failures = []
        for validation, checks, observation in self.quality:
            seen = observed(observation) or {}
            metrics = next(
                m
                for m in self.run.metrics.stages
                if (m.dataset, m.stage) == (validation.dataset, "validate")
            )
            metrics.rows_in = seen.get("rows_in")
            for i, (rule, check) in enumerate(checks):
                prefix = f"r{i}."
                values = {k[len(prefix) :]: v for k, v in seen.items() if k.startswith(prefix)}
                passed, message = check.judge(values)
                result = RuleResult(
                    rule.name, rule.severity, passed, values.get("failed_rows"), message
                )
                self.run.metrics.quality.append(result)
                quarantined = validation.on_failure == "quarantine" and check.flag is not None
                if (
                    not passed
                    and rule.severity == "error"
                    and validation.on_failure != "continue"
                    and not quarantined
                ):
                    failures.append(f"validate.{validation.dataset}: {rule.name}: {message}")
                elif not passed:
                    log.warning(
                        "etl: validate.%s: %s (%s): %s",
                        validation.dataset,
                        rule.name,
                        rule.severity,
                        message,
                    )
            passed_rows = next(
                (
                    m.rows_out
                    for m in self.run.metrics.stages
                    if (m.dataset, m.stage) == (validation.dataset, "validated")
                ),
                None,
            )
            if passed_rows is not None and metrics.rows_in is not None:
                metrics.rows_out = passed_rows
                metrics.rows_rejected = metrics.dead_lettered = metrics.rows_in - passed_rows
            else:
                metrics.rows_out = metrics.rows_in
        self.run.metrics.stages = [m for m in self.run.metrics.stages if m.stage != "validated"]
        return failures


_INTEGRAL_DIGITS = {"byte": 3, "short": 5, "integer": 10, "long": 19}


def safe_cast(found: Any, expected: Any) -> bool:
    """Whether ``found`` converts to ``expected`` without losing values (coerce mode)."""
    from pyspark.sql import types as T

    if isinstance(expected, T.StringType):
        return True
    order = ["byte", "short", "integer", "long"]
    if found.typeName() in order and expected.typeName() in order:
        return order.index(found.typeName()) <= order.index(expected.typeName())
    if isinstance(expected, T.DoubleType):
        return found.typeName() in ("byte", "short", "integer", "float")
    if isinstance(expected, T.DecimalType):
        whole = expected.precision - expected.scale
        if isinstance(found, T.DecimalType):
            return expected.scale >= found.scale and whole >= found.precision - found.scale
        return whole >= _INTEGRAL_DIGITS.get(found.typeName(), 10**6)
    return isinstance(found, T.DateType) and isinstance(expected, T.TimestampType)


def unknown_columns(bound: BoundPipeline, frames: dict[str, DataFrame]) -> list[ConfigIssue]:
    """Quality rules that name a column their dataset does not have, as Spark's schema of the
    dataset shows (``etl validate`` knows columns only where a schema is declared)."""
    import difflib

    issues = []
    for name, validation in bound.validations.items():
        df = frames.get(name)
        if df is None:
            continue
        have = {c.lower(): c for c in df.columns}  # Spark's names are case-insensitive
        for rule in validation.rules:
            for column in rule.component().columns(rule.options):
                if column.split(".")[0].strip("`").lower() in have:
                    continue
                close = difflib.get_close_matches(column, list(have.values()), n=1)
                issues.append(
                    ConfigIssue(
                        rule.path,
                        f"column {column!r} is not a column of {name!r}",
                        f"did you mean {close[0]!r}?"
                        if close
                        else f"its columns: {', '.join(df.columns)}",
                    )
                )
    return issues
