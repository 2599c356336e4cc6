"""Object storage at MINIO_ENDPOINT, through the minio SDK: reachable, the credentials
accepted, MINIO_BUCKET_NAME present (without a bucket name: the bucket list readable)."""

import os

import certifi
import urllib3
from minio import Minio
from minio.error import S3Error

from .check import Finding, HealthCheck, Unhealthy, describe_error
from .settings import MinioSettings


class ObjectStorageCheck(HealthCheck):
    kind = "object_storage"

    def __init__(self, settings: MinioSettings | None, name: str = "minio"):
        super().__init__(name, secrets=settings.secrets() if settings else ())
        self.settings = settings

    def disabled_reason(self) -> str | None:
        return None if self.settings else "not configured: MINIO_ENDPOINT is not set"

    def target(self) -> dict:
        return {"endpoint": self.settings.endpoint, "secure": self.settings.secure, "bucket": self.settings.bucket}

    async def probe(self, timeout: float) -> Finding:
        return await self.in_thread(self._probe, timeout)

    def _probe(self, timeout: float) -> Finding:
        settings = self.settings
        http = _http_client(timeout)
        client = Minio(
            settings.endpoint, access_key=settings.access_key, secret_key=settings.secret_key,
            secure=settings.secure, http_client=http,
        )
        try:
            if settings.bucket is None:
                return Finding(details={"buckets": len(client.list_buckets())})
            if not client.bucket_exists(settings.bucket):
                raise Unhealthy(f"bucket {settings.bucket} does not exist")
        except S3Error as error:
            raise Unhealthy(f"S3 refused the request: {error.code}: {error.message}") from None
        except urllib3.exceptions.NewConnectionError as error:  # a ConnectTimeoutError too, for history's sake
            raise Unhealthy(f"cannot reach {settings.endpoint}: {describe_error(error)}") from None
        except urllib3.exceptions.TimeoutError:
            raise TimeoutError from None
        except urllib3.exceptions.HTTPError as error:
            raise Unhealthy(f"cannot reach {settings.endpoint}: {describe_error(error)}") from None
        finally:
            http.clear()
        return Finding()


def _http_client(timeout: float) -> urllib3.PoolManager:
    """The SDK's own client waits minutes and retries five times; a health check gets one
    try within its timeout."""
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=timeout, read=timeout),
        retries=False,
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )
