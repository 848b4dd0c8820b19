"""The ``cloudwatch`` reporter: the run's metrics as CloudWatch metric data when a run ends.

Metric names are the same as the Prometheus reporter's (``etl_rows_total``…); labels become
dimensions. Credentials are per reporter: a ``boto3.Session`` of its own, built from the
reporter's options (typically filled from a ``credentials:`` entry); nothing process-global
(no default session, no environment variables) is set.
"""

from __future__ import annotations

from typing import Any

import attrs

from etl_core import MetricsReporter, RunMetrics, Secret, metric_families

#: CloudWatch accepts at most this many datums per request (older API limit, still safe)
BATCH = 20


@attrs.frozen
class CloudWatchOptions:
    #: the CloudWatch namespace of every metric
    namespace: str = "etl"
    #: AWS region; unset: boto3's usual lookup (AWS_REGION, the profile)
    region: str | None = None
    #: another endpoint (a VPC endpoint, a local test server)
    endpoint_url: str | None = None
    #: keys of this reporter, from a ``credentials:`` entry; unset: boto3's default chain
    access_key_id: Secret | None = None
    secret_access_key: Secret | None = None
    session_token: Secret | None = None
    #: named AWS profile, when no keys are given
    profile: str | None = None


def _unit(name: str) -> str:
    if name.endswith("_seconds"):
        return "Seconds"
    if name.startswith("etl_bytes"):
        return "Bytes"
    if name.endswith("_per_second"):
        return "Count/Second"
    if name.endswith(("_total", "_rows", "_lag", "_datasets")):
        return "Count"
    return "None"


def _reveal(secret: Secret | None) -> str | None:
    return secret.reveal() if secret is not None else None


class CloudWatchReporter(MetricsReporter):
    """Send the run's metrics to Amazon CloudWatch (``put_metric_data``)."""

    name = "cloudwatch"
    Options = CloudWatchOptions

    def report(self, metrics: RunMetrics, options: CloudWatchOptions) -> None:
        client = self.client(options)
        timestamp = metrics.finished_at or metrics.started_at
        data: list[dict[str, Any]] = [
            {
                "MetricName": family.name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in sample.labels.items()],
                "Timestamp": timestamp,
                "Value": sample.value,
                "Unit": _unit(family.name),
            }
            for family in metric_families(metrics)
            for sample in family.samples
        ]
        for start in range(0, len(data), BATCH):
            client.put_metric_data(
                Namespace=options.namespace, MetricData=data[start : start + BATCH]
            )

    @staticmethod
    def client(options: CloudWatchOptions) -> Any:
        """A CloudWatch client on a session of its own, with this reporter's credentials."""
        import boto3

        if (options.access_key_id is None) != (options.secret_access_key is None):
            from etl_core import ConfigError

            raise ConfigError.at(
                "metrics.cloudwatch",
                "access_key_id and secret_access_key go together",
                "give both (e.g. from one credentials entry) or neither",
            )
        session = boto3.session.Session(
            aws_access_key_id=_reveal(options.access_key_id),
            aws_secret_access_key=_reveal(options.secret_access_key),
            aws_session_token=_reveal(options.session_token),
            region_name=options.region,
            profile_name=None if options.access_key_id is not None else options.profile,
        )
        return session.client("cloudwatch", endpoint_url=options.endpoint_url)
