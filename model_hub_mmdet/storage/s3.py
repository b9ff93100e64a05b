"""Amazon S3 and S3-compatible stores (MinIO, Ceph RGW, ...) as the ``s3`` storage backend.

Experiment YAML::

    data:
      file_client_args:
        backend: s3
        bucket_name: my-data            # or give data_root: s3://my-data/coco/ and omit it
        prefix: datasets                # optional key prefix for non-URI paths (the backend's key_prefix)
        endpoint_url: http://minio:9000 # optional: S3-compatible stores
        region_name: eu-west-1          # optional
        profile_name: training          # optional: a profile of ~/.aws/config
        cache_size: 50GB                # optional, see ObjectStoreBackend

Credentials come from boto3's standard chain (environment, ``AWS_PROFILE``/``profile_name``, SSO, instance or task
role); ``anonymous: true`` reads public buckets unsigned. ``boto3`` is imported when the first client is made.
"""

from __future__ import annotations

from typing import Any, BinaryIO

from model_hub_mmdet.errors import ConfigError, DataError
from model_hub_mmdet.storage.base import ObjectStoreBackend, reject_unknown_options
from model_hub_mmdet.storage.retry import RETRY

_MISSING_KEY = {"NoSuchKey", "NotFound", "404"}
_DENIED = {
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired", "AllAccessDisabled", "AccountProblem", "InvalidSecurity", "403",
}
_TRANSIENT = {
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests", "RequestTimeout",
    "InternalError", "ServiceUnavailable", "BandwidthLimitExceeded", "EC2ThrottledException", "RequestTimeoutException",
}


class S3Backend(ObjectStoreBackend):
    """mmcv storage backend for S3; see the module docstring for the options and
    :class:`~model_hub_mmdet.storage.base.ObjectStoreBackend` for paths, cache and retries."""

    scheme = "s3"
    schemes = ("s3",)

    def __init__(
        self,
        bucket_name: str | None = None,
        key_prefix: str = "",
        endpoint_url: str | None = None,
        region_name: str | None = None,
        profile_name: str | None = None,
        anonymous: bool = False,
        addressing_style: str | None = None,
        max_pool_connections: int = 16,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        **common: Any,
    ) -> None:
        reject_unknown_options(type(self), common)
        super().__init__(bucket_name=bucket_name, key_prefix=key_prefix, **common)
        self.endpoint_url = endpoint_url
        self.region_name = region_name
        self.profile_name = profile_name
        self.anonymous = bool(anonymous)
        # Custom endpoints (MinIO, Ceph) rarely have per-bucket DNS names: path style works everywhere.
        self.addressing_style = addressing_style or ("path" if endpoint_url else "auto")
        self.max_pool_connections = int(max_pool_connections)
        self.timeouts = (float(connect_timeout), float(read_timeout))

    def _endpoint(self) -> str:
        return self.endpoint_url or f"aws:{self.region_name or ''}"

    def _new_client(self) -> Any:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config
        from botocore.exceptions import ProfileNotFound

        try:
            session = boto3.session.Session(profile_name=self.profile_name, region_name=self.region_name)
        except ProfileNotFound as err:
            raise ConfigError(
                f"file_client_args.profile_name: AWS profile {self.profile_name!r} is not in ~/.aws/config or"
                " ~/.aws/credentials; fix the name or drop it to use the default credential chain"
            ) from err
        config = Config(
            retries={"total_max_attempts": 1},  # our RetryPolicy decides, with jitter, and names the object
            max_pool_connections=self.max_pool_connections,
            connect_timeout=self.timeouts[0],
            read_timeout=self.timeouts[1],
            s3={"addressing_style": self.addressing_style},
            signature_version=UNSIGNED if self.anonymous else None,
        )
        return session.client("s3", endpoint_url=self.endpoint_url, config=config)

    def _download(self, bucket: str, key: str) -> bytes:
        # StreamingBody.read() checks Content-Length, so a cut connection raises instead of returning a prefix.
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def _download_to(self, bucket: str, key: str, fileobj: BinaryIO) -> None:
        body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
        for chunk in body.iter_chunks(1 << 20):
            fileobj.write(chunk)

    def _upload(self, bucket: str, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def _version(self, bucket: str, key: str) -> str:
        return str(self.client.head_object(Bucket=bucket, Key=key).get("ETag", "")).strip('"')

    def _exists(self, bucket: str, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as err:
            if _code(err) not in _MISSING_KEY:
                raise
        self.client.head_bucket(Bucket=bucket)  # a missing bucket raises here and is classified as such
        return False

    def _classify(self, err: BaseException, bucket: str, key: str) -> BaseException | str | None:
        from botocore import exceptions as bx

        uri = self.uri(bucket, key)
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        if isinstance(err, bx.ClientError):
            code, status = _code(err), _status(err)
            if code == "NoSuchBucket" or (code == "404" and err.operation_name == "HeadBucket"):
                return DataError(
                    f"{uri}: bucket {bucket!r} does not exist{where} (NoSuchBucket); {self.missing_bucket_hint}"
                )
            if code in _MISSING_KEY:
                return DataError(f"{uri} does not exist ({code}); {self.missing_key_hint}")
            if code in _DENIED:
                return DataError(
                    f"{uri}: access denied ({code}); check the AWS credentials (AWS_ACCESS_KEY_ID/"
                    "AWS_SECRET_ACCESS_KEY, AWS_PROFILE or file_client_args.profile_name, instance role) and the"
                    " bucket policy"
                )
            if code in _TRANSIENT or status == 429 or (status or 0) >= 500:
                return RETRY
            return DataError(f"{uri}: S3 error {code} (HTTP {status}): {err}")
        if isinstance(err, (bx.NoCredentialsError, bx.PartialCredentialsError)):
            return DataError(
                f"{uri}: no usable AWS credentials ({type(err).__name__}); set AWS_ACCESS_KEY_ID and"
                " AWS_SECRET_ACCESS_KEY, AWS_PROFILE (or file_client_args.profile_name), use an instance role,"
                " or anonymous: true for a public bucket"
            )
        if isinstance(err, _transient_errors()):
            return RETRY
        return None


def _code(err: Any) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _status(err: Any) -> int | None:
    return err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _transient_errors() -> tuple[type[BaseException], ...]:
    """Connection-level failures: refused, reset, timed out, or a body cut short."""
    from botocore import exceptions as bx

    found: list[type[BaseException]] = [bx.HTTPClientError, bx.ConnectionError, bx.IncompleteReadError, ConnectionError,
                                        TimeoutError]
    for name in ("ResponseStreamingError", "ReadTimeoutError", "ConnectTimeoutError"):
        if hasattr(bx, name):
            found.append(getattr(bx, name))
    try:
        from urllib3.exceptions import HTTPError as Urllib3Error

        found.append(Urllib3Error)
    except ImportError:  # pragma: no cover - botocore depends on urllib3
        pass
    return tuple(found)
