"""Base handler: auth wiring, JSON in/out through pydantic, domain error -> HTTP status."""

import json
from typing import TypeVar

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from pydantic import BaseModel, ValidationError

from ..errors import DataHarbourError, InvalidInput, PayloadTooLarge

Model = TypeVar("Model", bound=BaseModel)

# JSON escaping can make a program up to 6x larger on the wire (\uXXXX for every
# non-ASCII character); the exact limit is checked on the decoded program.
BODY_EXPANSION = 6
BODY_OVERHEAD_BYTES = 256 * 1024
# Query arguments that authenticate the request rather than describe it.
AUTH_QUERY_ARGUMENTS = frozenset({"token", "_xsrf"})


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _validation_to_input_error(error: ValidationError) -> InvalidInput:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "body"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    return InvalidInput(field, message)


def domain_error(kwargs: dict) -> DataHarbourError | None:
    """The domain error behind a `write_error`/`log_exception` call, if that is what it is."""
    exception = kwargs.get("exc_info", (None, None, None))[1]
    return exception if isinstance(exception, DataHarbourError) else None


class DomainErrorMixin:
    """The one place domain errors become HTTP errors: services stay free of Tornado and
    handlers free of try/except. Tornado hands uncaught exceptions to `log_exception` and
    `write_error`; a domain error gets its own status and `{"message", "reason"}` there."""

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, DataHarbourError):
            self.log.warning("%d %s %s: %s", value.status, self.request.method, self.request.path, value.message)
            return
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs) -> None:
        error = domain_error(kwargs)
        if error is None:
            return super().write_error(status_code, **kwargs)
        self.set_status(error.status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": error.message, "reason": type(error).__name__}))


class DataHarbourHandler(DomainErrorMixin, ExtensionHandlerMixin, APIHandler):
    """Every DataHarbour REST handler derives from this; subclasses set `auth_resource`."""

    @property
    def services(self) -> dict:
        return self.settings["dataharbour"]

    @property
    def jobs(self):
        return self.services["jobs"]

    def parse_body(self, model: type[Model], max_bytes: int) -> Model:
        if len(self.request.body) > max_bytes:
            raise PayloadTooLarge(f"request body is larger than {max_bytes} bytes")
        try:
            data = json.loads(self.request.body or b"{}", parse_constant=_reject_constant)
        except (ValueError, RecursionError) as error:
            raise InvalidInput("body", f"not valid JSON ({error})") from None
        if not isinstance(data, dict):
            raise InvalidInput("body", "expected a JSON object")
        return self.validate(model, data)

    def parse_query(self, model: type[Model], list_fields: tuple[str, ...] = ()) -> Model:
        """Query arguments as `model`; fields in `list_fields` accept repeats and commas."""
        data: dict = {}
        for key, raw_values in self.request.query_arguments.items():
            if key in AUTH_QUERY_ARGUMENTS:
                continue
            values = [v.decode("utf-8", errors="replace") for v in raw_values]
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
            raise _validation_to_input_error(error) from None

    def write_model(self, model: BaseModel, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(model.model_dump_json())
