"""A CloudWatch client of the reporter's own: a ``boto3.Session`` built from the reporter's
options; nothing process-global (no default session, no environment variables) is set."""

from __future__ import annotations

from typing import Any

from etl_core import Secret
from etl_plugin_cloudwatch.options import CloudWatchOptions


def cloudwatch_client(options: CloudWatchOptions) -> Any:
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


def _reveal(secret: Secret | None) -> str | None:
    return secret.reveal() if secret is not None else None
