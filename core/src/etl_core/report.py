"""A run's metrics rendered for people: plain text (the CLI, ``repr``) and HTML (notebooks).

Imports neither click nor Spark, so the CLI and the notebook API can both use it.
"""

from __future__ import annotations

from html import escape

from etl_core.api import RunMetrics

#: what the report says of a dataset whose rows were not counted (each count costs a pass-
#: through node in Spark's plan: sources and sinks' inputs are counted unless
#: ``engine.count_every_dataset``)
NOT_COUNTED = "not counted"


def _rows(metrics: RunMetrics) -> list[tuple[str, str, str]]:
    """Rows per dataset and stage; without a count, why: not counted, or the run ended first.
    A load says where the rows went."""
    done = metrics.status in ("succeeded", "stopped")
    missing = NOT_COUNTED if done else "unknown"
    return [
        (
            s.dataset,
            s.stage,
            (missing if s.rows_out is None else str(s.rows_out))
            + (
                f" ({s.inserted} inserted, {s.updated} updated)"
                if s.inserted is not None and s.updated is not None
                else ""
            )
            + (f"  → {s.target}" if s.target else ""),
        )
        for s in metrics.stages
    ]


def render_report(metrics: RunMetrics) -> str:
    """The run's status, duration and rows per dataset and stage, as the CLI prints them."""
    duration = f" in {metrics.duration_s:.1f}s" if metrics.duration_s is not None else ""
    lines = [f"run {metrics.run_id} of {metrics.pipeline}: {metrics.status}{duration}"]
    rows = _rows(metrics)
    if rows:
        width = max(len("dataset"), *(len(r[0]) for r in rows))
        lines.append(f"  {'dataset':<{width}}  {'stage':<9}  rows")
        lines += [f"  {d:<{width}}  {s:<9}  {n}" for d, s, n in rows]
    if metrics.published:
        lines.append(f"  published: {', '.join(metrics.published)}")
    if metrics.quality:
        lines.append("  quality:")
        for result in metrics.quality:
            mark = "ok" if result.passed else f"FAILED ({result.severity})"
            failed = "" if result.failed_rows is None else f", {result.failed_rows} rows"
            lines.append(f"    {result.rule}: {mark}{failed}")
    return "\n".join(lines)


def render_html(metrics: RunMetrics) -> str:
    """The same report as an HTML fragment; every value is escaped."""
    duration = "-" if metrics.duration_s is None else f"{metrics.duration_s:.1f} s"
    published = ", ".join(metrics.published) or "none"
    facts = [
        ("pipeline", metrics.pipeline),
        ("status", metrics.status),
        ("run id", metrics.run_id),
        ("duration", duration),
        ("published", published),
    ]
    if metrics.dead_letters:
        facts.append(("dead letters", str(metrics.dead_letters)))
    if metrics.error:
        facts.append(("error", metrics.error))
    parts = ['<div class="etl-run-report">', "<table>"]
    parts += [
        f"<tr><th style='text-align:left'>{escape(k)}</th><td style='text-align:left'>"
        f"{escape(v)}</td></tr>"
        for k, v in facts
    ]
    parts.append("</table>")
    rows = _rows(metrics)
    if rows:
        parts.append("<table>")
        parts.append(
            "<thead><tr><th style='text-align:left'>dataset</th>"
            "<th style='text-align:left'>stage</th><th style='text-align:right'>rows</th>"
            "</tr></thead><tbody>"
        )
        parts += [
            f"<tr><td style='text-align:left'>{escape(d)}</td><td style='text-align:left'>"
            f"{escape(s)}</td><td style='text-align:right'>{escape(n)}</td></tr>"
            for d, s, n in rows
        ]
        parts.append("</tbody></table>")
    parts.append("</div>")
    return "\n".join(parts)
