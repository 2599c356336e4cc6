"""Object storage as the API shows it: buckets, folder-style listings, uploads, presigned URLs."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .jobs import UtcDatetime

MAX_LIST_LIMIT = 1000  # S3's own page size limit (max-keys)
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4's limit for presigned URLs
DEFAULT_PRESIGN_SECONDS = 3600


class BucketInfo(BaseModel):
    name: str
    created: UtcDatetime | None = Field(None, description="When the bucket was created, as the server reports it.")


class BucketList(BaseModel):
    buckets: list[BucketInfo]
    default_bucket: str | None = Field(
        None, description="MINIO_BUCKET_NAME: the bucket used when a request names none."
    )


class ObjectQuery(BaseModel):
    """Query string of `GET /storage/objects`."""

    model_config = ConfigDict(extra="forbid")

    bucket: str | None = Field(None, description="The bucket; default MINIO_BUCKET_NAME.")
    prefix: str = Field("", max_length=1024, description="Only keys that start with this (a folder: `data/2024/`).")
    delimiter: str = Field(
        "/", max_length=16,
        description="Keys are grouped into folders at this string (empty: every key under the prefix, no folders).",
    )
    limit: int = Field(MAX_LIST_LIMIT, ge=1, le=MAX_LIST_LIMIT, description="Folders and objects per page at most.")
    cursor: str | None = Field(
        None, max_length=4096, description="`next_cursor` of the previous page (S3's continuation token)."
    )


class ObjectInfo(BaseModel):
    key: str
    size: int = Field(description="Bytes.")
    etag: str | None = Field(None, description="The object's ETag, without quotes.")
    last_modified: UtcDatetime | None = None


class ObjectList(BaseModel):
    bucket: str
    prefix: str
    delimiter: str
    folders: list[str] = Field(
        description="Common prefixes: each folder's whole prefix, ending with the delimiter (`data/2024/`)."
    )
    objects: list[ObjectInfo]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next page; null on the last page."
    )


class StoredObject(BaseModel):
    """An object just written by `PUT /storage/objects/{bucket}/{key}`."""

    bucket: str
    key: str
    size: int = Field(description="Bytes written.")
    etag: str | None = Field(None, description="The new object's ETag, without quotes.")
    version_id: str | None = Field(None, description="Its version, on a bucket with versioning.")


class PresignRequest(BaseModel):
    """Body of `POST /storage/presign`."""

    model_config = ConfigDict(extra="forbid")

    bucket: str | None = Field(None, description="The bucket; default MINIO_BUCKET_NAME.")
    key: str = Field(description="The object's key.")
    method: Literal["GET", "PUT"] = Field("GET", description="GET: a download URL; PUT: an upload URL.")
    expires_seconds: int = Field(
        DEFAULT_PRESIGN_SECONDS, ge=1, le=MAX_PRESIGN_SECONDS,
        description="How long the URL works, in seconds (at most 7 days).",
    )


class PresignedUrl(BaseModel):
    url: str = Field(
        description="The URL, signed for the object storage's address as this server reaches it "
        "(MINIO_ENDPOINT): it works for whoever can reach that address, without a Jupyter token."
    )
    method: Literal["GET", "PUT"]
    bucket: str
    key: str
    expires_at: UtcDatetime
