"""One S3 filesystem per source or sink, built from that block's own options, and the
translation of S3 errors into etl's typed errors. Imported on the driver and the executors."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import attrs

from etl_core import EtlError, PermanentError, TransientError

if TYPE_CHECKING:
    import pyarrow.fs as pafs

    from etl_plugin_s3.options import Access


@attrs.frozen(repr=False)
class Connection:
    """Everything a task needs to open the bucket. The keys travel to the executors in the
    data source option ``secret`` (Spark redacts option keys matching ``secret`` from plans);
    ``repr`` shows none of them."""

    region: str | None
    endpoint_url: str | None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None

    def __repr__(self) -> str:
        return f"Connection(region={self.region!r}, endpoint_url={self.endpoint_url!r}, keys=***)"

    @classmethod
    def of(cls, access: Access, what: str) -> Connection:
        """Resolve the block's access on the driver: its keys, else its profile (boto3), else
        the AWS default chain inside the client (left to pyarrow)."""
        keys = [access.access_key_id, access.secret_access_key, access.session_token]
        key_id, secret, token = (k.reveal() if k is not None else None for k in keys)
        if (key_id is None) != (secret is None):
            raise PermanentError(
                f"{what}: give both `access_key_id` and `secret_access_key` (a `credentials:` "
                "entry with both fields), or neither"
            )
        if key_id is None and access.profile is not None:
            key_id, secret, token = _profile_keys(access.profile, what)
        return cls(access.region, access.endpoint_url, key_id, secret, token)

    def public_json(self) -> str:
        return json.dumps({"region": self.region, "endpoint_url": self.endpoint_url})

    def secret_json(self) -> str:
        keys = [self.access_key_id, self.secret_access_key, self.session_token]
        return json.dumps(keys)

    @classmethod
    def from_data_source(cls, options: dict[str, str]) -> Connection:
        public = json.loads(options["connection"])
        key_id, secret, token = json.loads(options["secret"])
        return cls(public["region"], public["endpoint_url"], key_id, secret, token)

    def filesystem(self) -> pafs.S3FileSystem:
        import pyarrow.fs as pafs

        extra: dict[str, Any] = {}
        if self.endpoint_url:
            scheme, _, rest = self.endpoint_url.partition("://")
            extra = {"scheme": scheme, "endpoint_override": rest.rstrip("/")}
        return pafs.S3FileSystem(
            access_key=self.access_key_id,
            secret_key=self.secret_access_key,
            session_token=self.session_token,
            region=self.region or "us-east-1",
            # small objects (manifests, dead letters) in one PUT; large ones still go
            # multipart (pyarrow.fs uploads parts of 10 MiB in the background)
            allow_delayed_open=True,
            connect_timeout=10,
            request_timeout=60,
            **extra,
        )

    def where(self) -> str:
        return self.endpoint_url or f"AWS ({self.region or 'default region'})"


def _profile_keys(profile: str, what: str) -> tuple[str, str, str | None]:
    try:
        import boto3
    except ImportError:
        raise PermanentError(
            f"{what}: `profile: {profile}` needs boto3; pip install 'etl-plugin-s3[profile]'"
        ) from None
    from botocore.exceptions import BotoCoreError

    try:  # a session of its own: the default session and the environment stay untouched
        credentials = boto3.Session(profile_name=profile).get_credentials()
    except BotoCoreError as exc:
        raise PermanentError(f"{what}: AWS profile {profile!r}: {exc}") from None
    if credentials is None:
        raise PermanentError(f"{what}: AWS profile {profile!r} holds no credentials")
    frozen = credentials.get_frozen_credentials()
    return frozen.access_key, frozen.secret_key, frozen.token


_PERMANENT = {
    "ACCESS_DENIED": "access denied; check that these credentials may use this bucket (its "
    "policy and the user's)",
    "AccessDenied": "access denied; check that these credentials may use this bucket (its "
    "policy and the user's)",
    "SignatureDoesNotMatch": "the secret access key does not match the access key id; check "
    "the `credentials:` entry",
    "InvalidAccessKeyId": "the access key id is unknown; check the `credentials:` entry",
    "INVALID_ACCESS_KEY_ID": "the access key id is unknown; check the `credentials:` entry",
    "SIGNATURE_DOES_NOT_MATCH": "the secret access key does not match the access key id; check "
    "the `credentials:` entry",
    "NO_SUCH_BUCKET": "the bucket does not exist; check `bucket` (and `region`/`endpoint_url`)",
    "NoSuchBucket": "the bucket does not exist; check `bucket` (and `region`/`endpoint_url`)",
    "NO_SUCH_KEY": "the object does not exist (deleted while the run read it?)",
}
#: pyarrow's names of S3 error codes → S3's own
_CODE_NAMES = {
    "ACCESS_DENIED": "AccessDenied",
    "SIGNATURE_DOES_NOT_MATCH": "SignatureDoesNotMatch",
    "INVALID_ACCESS_KEY_ID": "InvalidAccessKeyId",
    "NO_SUCH_BUCKET": "NoSuchBucket",
    "NO_SUCH_KEY": "NoSuchKey",
}
_TRANSIENT = re.compile(
    r"NETWORK_CONNECTION|SLOW_DOWN|SlowDown|THROTTL|Throttl|SERVICE_UNAVAILABLE|"
    r"INTERNAL_FAILURE|REQUEST_TIMEOUT|timed out|HTTP status 5\d\d",
)


def translate(exc: BaseException, what: str) -> EtlError:
    """An S3 error as a typed one naming the block: permanent (auth, missing bucket) or
    transient (network, throttling, 5xx). Carries no key: pyarrow's messages hold none."""
    if isinstance(exc, EtlError):
        return exc
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for code, reason in _PERMANENT.items():
        if code in str(exc):
            name = _CODE_NAMES.get(code, code)
            return PermanentError(f"{what}: {name}: {reason} ({text})")
    if _TRANSIENT.search(str(exc)):
        return TransientError(f"{what}: {text}")
    return PermanentError(f"{what}: {text}")


def s3_url(path: str) -> str:
    return f"s3://{path}"
