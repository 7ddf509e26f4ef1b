"""Photos in S3, through boto3's default credential chain (the instance profile on EC2)."""

from typing import Optional
from urllib.parse import quote

from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from coffee_ranker.domain.errors import StorageUnavailable
from coffee_ranker.domain.ports import ObjectStore
from coffee_ranker.metrics import dependency_call
from coffee_ranker.storage import aws

MiB = 1024 * 1024
_S3_ERRORS = (ClientError, BotoCoreError, Boto3Error)

#: Uploads stream from the spooled file on disk in 8 MiB parts, two at a time: memory stays bounded
#: whatever the photo's size.
_TRANSFER = TransferConfig(
    multipart_threshold=8 * MiB,
    multipart_chunksize=8 * MiB,
    max_concurrency=2,
    use_threads=True,
)
#: Photo keys hold a fresh UUID, so a key's content never changes: caches may keep it for good.
_CACHE_CONTROL = "public, max-age=31536000, immutable"


#: Each call of the object store is timed, and counted when it fails (metrics.py).
_measured = dependency_call("s3")


class S3ObjectStore(ObjectStore):
    def __init__(
        self,
        bucket: str,
        region: str,
        endpoint_url: Optional[str] = None,
        media_base_url: Optional[str] = None,
    ) -> None:
        self.bucket = bucket
        self.region = region
        self.endpoint_url = endpoint_url.rstrip("/") if endpoint_url else None
        self.media_base_url = media_base_url.rstrip("/") if media_base_url else None
        self._client = aws.session().client(
            "s3",
            region_name=region,
            endpoint_url=self.endpoint_url,
            config=Config(
                retries={"mode": "standard", "max_attempts": 4},
                connect_timeout=3,
                read_timeout=30,
                # A custom endpoint (the embedded AWS) serves buckets under its path, not as hosts.
                s3={"addressing_style": "path" if self.endpoint_url else "auto"},
            ),
        )

    @_measured
    def ping(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as error:
            raise StorageUnavailable(f"S3 bucket {self.bucket} does not answer: {error}") from error

    @_measured
    def put_file(self, key: str, path: str, content_type: str) -> None:
        try:
            self._client.upload_file(
                path,
                self.bucket,
                key,
                ExtraArgs={"ContentType": content_type, "CacheControl": _CACHE_CONTROL},
                Config=_TRANSFER,
            )
        except _S3_ERRORS as error:
            # upload_file wraps ClientError in S3UploadFailedError: every kind is the store failing.
            raise StorageUnavailable(f"S3 bucket {self.bucket} refused {key}: {error}") from error

    @_measured
    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except _S3_ERRORS as error:
            raise StorageUnavailable(f"S3 bucket {self.bucket} could not delete {key}: {error}") from error

    def public_url(self, key: str) -> str:
        path = quote(key, safe="/")
        if self.media_base_url:
            return f"{self.media_base_url}/{path}"
        if self.endpoint_url:
            return f"{self.endpoint_url}/{self.bucket}/{path}"
        if "." in self.bucket:
            # A dotted bucket name breaks the TLS certificate of the virtual-hosted URL.
            return f"https://s3.{self.region}.amazonaws.com/{self.bucket}/{path}"
        return f"https://{self.bucket}.s3.{self.region}.amazonaws.com/{path}"

    def close(self) -> None:
        self._client.close()
