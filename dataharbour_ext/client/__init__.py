"""A typed Python client of the DataHarbour API, blocking and async, with the live stream.

    from dataharbour_ext.client import DataHarbourClient

    with DataHarbourClient() as client:         # finds the server (see find_server)
        job = client.jobs.submit(name="count", code="print(1)")
        for message in client.jobs.follow(job.id):
            ...
        job = client.jobs.wait(job.id)

Answers are the server's own pydantic models (dataharbour_ext.models); API errors raise
DataHarbourError subclasses carrying the server's status, message and reason.
"""

from .async_client import AsyncDataHarbourClient
from .discovery import ServerAddress, find_server
from .errors import (
    BadGateway,
    Conflict,
    ConnectionFailed,
    DataHarbourError,
    Forbidden,
    Gone,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RangeNotSatisfiable,
    RequestTimeout,
    ServerError,
    ServerNotFound,
    ServiceUnavailable,
    StreamClosed,
    Unauthorized,
)
from .groups import ObjectHead
from .stream import AsyncStream, StreamMessage
from .sync_client import DataHarbourClient, SyncStream
from .transport import RetryPolicy

__all__ = [
    "AsyncDataHarbourClient",
    "AsyncStream",
    "BadGateway",
    "Conflict",
    "ConnectionFailed",
    "DataHarbourClient",
    "DataHarbourError",
    "Forbidden",
    "Gone",
    "InvalidRequest",
    "NotFound",
    "ObjectHead",
    "PayloadTooLarge",
    "RangeNotSatisfiable",
    "RequestTimeout",
    "RetryPolicy",
    "ServerAddress",
    "ServerError",
    "ServerNotFound",
    "ServiceUnavailable",
    "StreamClosed",
    "StreamMessage",
    "SyncStream",
    "Unauthorized",
    "find_server",
]
