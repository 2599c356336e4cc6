"""What the client raises: API errors carry the server's status, message and reason; failures
to reach the server have classes of their own."""

from http import HTTPStatus


class DataHarbourError(Exception):
    """Base of everything the client raises. For an API error, `status` is the HTTP status and
    `message` / `reason` are the server's JSON error body (`{"message", "reason"}`)."""

    status: int | None = None

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        prefix = f"{self.status} " if self.status else ""
        suffix = f" ({self.reason})" if self.reason else ""
        return f"{prefix}{self.message}{suffix}"


class InvalidRequest(DataHarbourError):
    """400: a bad field or value; the message names it."""

    status = 400


class Unauthorized(DataHarbourError):
    """401: no token, or a wrong one."""

    status = 401


class Forbidden(DataHarbourError):
    status = 403


class NotFound(DataHarbourError):
    status = 404


class RequestTimeout(DataHarbourError):
    """408: the server waited too long for the request's body (an upload that stalled)."""

    status = 408


class Conflict(DataHarbourError):
    """409: the resource's state does not allow it (kill a finished job, a taken name)."""

    status = 409


class Gone(DataHarbourError):
    """410: it existed but is no longer there (a finished job's driver UI)."""

    status = 410


class PayloadTooLarge(DataHarbourError):
    """413: a body larger than the server takes (an object over `max_object_bytes`)."""

    status = 413


class RangeNotSatisfiable(DataHarbourError):
    """416: a download's range starts beyond the object's end."""

    status = 416


class ServerError(DataHarbourError):
    """5xx."""

    status = 500


class BadGateway(ServerError):
    """502: a service behind the server (the object storage) refused or could not be reached;
    the message says which and why."""

    status = 502


class ServiceUnavailable(ServerError):
    """503; `retry_after`: the seconds the server suggested waiting, if it said."""

    status = 503

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None,
                 retry_after: float | None = None):
        super().__init__(message, status=status, reason=reason)
        self.retry_after = retry_after


class ConnectionFailed(DataHarbourError):
    """The server could not be reached, or the connection broke before an answer."""


class ServerNotFound(DataHarbourError):
    """No server address was given and none could be found."""


class StreamClosed(DataHarbourError):
    """The live stream ended for good: closed by the client, replaced by another connection
    with the same client id, or the server stayed unreachable."""


ERRORS_BY_STATUS: dict[int, type[DataHarbourError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    408: RequestTimeout,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    416: RangeNotSatisfiable,
    502: BadGateway,
    503: ServiceUnavailable,
}


def api_error(status: int, message: str | None, reason: str | None, retry_after: float | None = None
              ) -> DataHarbourError:
    """The exception for an error answer with this status and body."""
    if not message:
        try:
            message = HTTPStatus(status).phrase
        except ValueError:
            message = "error"
    cls = ERRORS_BY_STATUS.get(status) or (ServerError if status >= 500 else DataHarbourError)
    if cls is ServiceUnavailable:
        return cls(message, status=status, reason=reason, retry_after=retry_after)
    return cls(message, status=status, reason=reason)
