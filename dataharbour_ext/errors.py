"""Domain errors the services raise; the handler layer maps each to its HTTP status."""


class DataHarbourError(Exception):
    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidInput(DataHarbourError):
    """The request is malformed; `field` names the offending field (None: the whole request)."""

    status = 400

    def __init__(self, field: str | None, message: str):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class Forbidden(DataHarbourError):
    """The action is never allowed here, whoever asks (a Spark UI kill link through the proxy)."""

    status = 403


class NotFound(DataHarbourError):
    status = 404


class Conflict(DataHarbourError):
    """The resource is in a state that does not allow the action (kill a finished job)."""

    status = 409


class Gone(DataHarbourError):
    """The thing existed but is no longer available (a finished job's driver UI)."""

    status = 410


class PayloadTooLarge(DataHarbourError):
    status = 413


class ServiceUnavailable(DataHarbourError):
    """The service cannot answer yet (it is still starting); `retry_after`: seconds after
    which asking again makes sense (the Retry-After header)."""

    status = 503

    def __init__(self, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class BadGateway(DataHarbourError):
    """A service behind us (object storage) refused or could not be reached: the reason, never
    a 500 (and never its credentials)."""

    status = 502


class RequestTimeout(DataHarbourError):
    """The client stopped sending its request (an upload's body) for longer than we wait."""

    status = 408
