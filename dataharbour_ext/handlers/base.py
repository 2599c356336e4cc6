"""Base handler: auth wiring, JSON in/out through pydantic, domain error -> HTTP status."""

import json
from typing import TypeVar

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from pydantic import BaseModel, ValidationError
from tornado import web

from ..errors import DataHarbourError, InvalidInput, PayloadTooLarge

Model = TypeVar("Model", bound=BaseModel)

# Room for the JSON around a maximal program (name, args, conf, env, escaping).
BODY_OVERHEAD_BYTES = 256 * 1024


def _validation_to_input_error(error: ValidationError) -> InvalidInput:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "body"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    return InvalidInput(field, message)


class DomainErrorMixin:
    """The one place domain errors become HTTP errors: services stay free of Tornado and
    handlers free of try/except."""

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, DataHarbourError):
            try:
                raise web.HTTPError(e.status, e.message.replace("%", "%%"), reason=type(e).__name__) from e
            except web.HTTPError as http_error:
                return super()._handle_request_exception(http_error)
        return super()._handle_request_exception(e)


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
            data = json.loads(self.request.body or b"{}")
        except ValueError as error:
            raise InvalidInput("body", f"not valid JSON ({error})") from None
        if not isinstance(data, dict):
            raise InvalidInput("body", "expected a JSON object")
        return self.validate(model, data)

    def parse_query(self, model: type[Model], list_fields: tuple[str, ...] = ()) -> Model:
        """Query arguments as `model`; fields in `list_fields` accept repeats and commas."""
        data: dict = {}
        for key, raw_values in self.request.query_arguments.items():
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
