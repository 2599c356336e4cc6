"""Base handler: auth wiring, JSON in/out through pydantic, domain error -> HTTP status."""

import json
from http import HTTPStatus
from typing import TypeVar
from urllib.parse import quote

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from pydantic import BaseModel, ValidationError
from tornado import web

from ..errors import DataHarbourError, InvalidInput, PayloadTooLarge
from ..json_body import model_json
from .input_errors import find_unencodable_text, validation_message

Model = TypeVar("Model", bound=BaseModel)

# JSON escaping can make a program up to 6x larger on the wire (\uXXXX for every
# non-ASCII character); the exact limit is checked on the decoded program.
BODY_EXPANSION = 6
BODY_OVERHEAD_BYTES = 256 * 1024
# Query arguments that authenticate the request rather than describe it.
AUTH_QUERY_ARGUMENTS = frozenset({"token", "_xsrf"})


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def domain_error(kwargs: dict) -> DataHarbourError | None:
    """The domain error behind a `write_error`/`log_exception` call, if that is what it is."""
    exception = kwargs.get("exc_info", (None, None, None))[1]
    return exception if isinstance(exception, DataHarbourError) else None


def error_message(status_code: int, kwargs: dict) -> str:
    """What went wrong, in words, for the exception behind a `write_error` call."""
    exception = kwargs.get("exc_info", (None, None, None))[1]
    if isinstance(exception, DataHarbourError):
        return exception.message
    if isinstance(exception, web.HTTPError) and exception.log_message:
        return exception.log_message % exception.args if exception.args else exception.log_message
    return _phrase(status_code)


def _phrase(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return "Unknown status"


def logged_in_one_line(error: BaseException | None) -> bool:
    """A domain error whose status says what happened (a 4xx, or a 502/503 from a service
    behind us) is logged as one line, not as an uncaught exception: its traceback tells
    nothing. A 500 is a bug and keeps its traceback."""
    return isinstance(error, DataHarbourError) and error.status != 500


class DomainErrorMixin:
    """The one place domain errors become HTTP errors: services stay free of Tornado and
    handlers free of try/except. Tornado hands uncaught exceptions to `log_exception` and
    `write_error`; a domain error gets its own status there.

    Every 4xx, and every domain error but a 500 (object storage unreachable: 502), is logged
    once, as one line with method, path, status and message, when the request is logged;
    Tornado and Jupyter would otherwise log it two or three times, with a traceback."""

    _error_message: str | None = None
    _retry_after: int | None = None

    def set_default_headers(self) -> None:
        super().set_default_headers()
        # Tornado clears the headers before writing an error, then sets the defaults again.
        if self._retry_after is not None:
            self.set_header("Retry-After", str(self._retry_after))

    def log_exception(self, typ, value, tb) -> None:
        if logged_in_one_line(value):
            return
        if isinstance(value, web.HTTPError) and 400 <= value.status_code < 500:
            return
        super().log_exception(typ, value, tb)

    def send_error(self, status_code: int = 500, **kwargs) -> None:
        error = domain_error(kwargs)
        status = error.status if error else status_code
        self._retry_after = getattr(error, "retry_after", None)
        if 400 <= status < 500 or logged_in_one_line(error):
            self._error_message = error_message(status, kwargs)
        super().send_error(status, **kwargs)

    def _log(self) -> None:
        status = self.get_status()
        if not 400 <= status < 500 and self._error_message is None:
            return super()._log()
        message = self._error_message or self._reason
        self.log.warning("%d %s %s: %s", status, self.request.method, self.request.path, message)
        if getattr(self.settings.get("serverapp"), "record_http_request_metrics", False):
            from jupyter_server.prometheus.log_functions import prometheus_log_method

            prometheus_log_method(self)


class DataHarbourHandler(DomainErrorMixin, ExtensionHandlerMixin, APIHandler):
    """Every DataHarbour REST handler derives from this; subclasses set `auth_resource`."""

    def compute_etag(self):
        # API answers change with every poll; hashing a large body (a log page) on the
        # event loop buys nothing.
        return None

    @property
    def services(self) -> dict:
        return self.settings["dataharbour"]

    @property
    def jobs(self):
        return self.services["jobs"]

    def write_error(self, status_code: int, **kwargs) -> None:
        if status_code >= 500 and domain_error(kwargs) is None:
            return super().write_error(status_code, **kwargs)
        error = domain_error(kwargs)
        exception = kwargs.get("exc_info", (None, None, None))[1]
        reason = type(error).__name__ if error else getattr(exception, "reason", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": error_message(status_code, kwargs), "reason": reason}))

    def parse_body(self, model: type[Model], max_bytes: int) -> Model:
        if len(self.request.body) > max_bytes:
            raise PayloadTooLarge(f"request body is larger than {max_bytes} bytes")
        if not self.request.body.strip():
            raise InvalidInput(None, "request body is empty")
        try:
            data = json.loads(self.request.body, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as error:
            raise InvalidInput("body", f"not valid JSON ({error})") from None
        if not isinstance(data, dict):
            raise InvalidInput("body", "expected a JSON object")
        # Lone surrogates ("\ud800") decode fine but cannot be stored, logged or passed on.
        if problem := find_unencodable_text(data):
            raise InvalidInput(*problem)
        return self.validate(model, data)

    def parse_query(self, model: type[Model], list_fields: tuple[str, ...] = ()) -> Model:
        """Query arguments as `model`; fields in `list_fields` accept repeats and commas."""
        data: dict = {}
        for raw_key, raw_values in self.request.query_arguments.items():
            key = _query_name(raw_key)
            if key in AUTH_QUERY_ARGUMENTS or _is_cache_buster(key, raw_values):
                continue
            values = [_query_value(key, value) for value in raw_values]
            if key in list_fields:
                data[key] = [item for value in values for item in value.split(",") if item]
            else:
                data[key] = values[-1]
        return self.validate(model, data)

    @staticmethod
    def validate(model: type[Model], data: dict) -> Model:
        try:
            return model.model_validate(data)
        except ValidationError as error:
            raise InvalidInput(*validation_message(error, data)) from None

    def write_model(self, model: BaseModel, status: int = 200) -> None:
        self.write_json(model_json(model), status)

    def write_json(self, body: bytes, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(body)


def _is_cache_buster(key: str, values: list[bytes]) -> bool:
    """JupyterLab's ServerConnection appends `&<milliseconds>` to every GET (its default
    `cache: 'no-store'`): a bare number with no value describes nothing."""
    return key.isascii() and key.isdigit() and all(value == b"" for value in values)


def _query_name(raw_key: str) -> str:
    # Tornado decodes query names as latin-1 and values not at all: decode both as UTF-8.
    try:
        return raw_key.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise InvalidInput(quote(raw_key.encode("latin-1")), "query parameter name is not valid UTF-8") from None


def _query_value(key: str, value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(key, "not valid UTF-8 text") from None
