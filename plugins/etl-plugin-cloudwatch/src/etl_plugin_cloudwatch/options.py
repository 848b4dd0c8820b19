"""Options of the ``cloudwatch`` reporter (an attrs class, structured strictly by the core)."""

from __future__ import annotations

import attrs

from etl_core import Secret


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
