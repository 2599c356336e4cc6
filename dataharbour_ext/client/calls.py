"""One API call described as data: method, path, query, body, what the answer is, and whether
it may be retried. The sync and the async transport both execute these, so every route is
written once (groups.py)."""

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from .errors import DataHarbourError, api_error
from .transfer import UploadBody

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
# Answer kinds besides a model class: the raw bytes (downloads) or the parsed JSON.
BYTES = "bytes"
JSON = "json"


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # under {base_url}api/v1/
    params: Sequence[tuple[str, str]] = ()  # query parameters; a key may repeat
    body: Any = None  # JSON-ready data
    response: type[BaseModel] | str | None = None  # a model, BYTES, JSON, or None (no content)
    timeout: float | None = None  # seconds for this call, when it may take longer than the client's default
    idempotent: bool | None = None  # None: from the method (GET, PUT, DELETE)
    headers: Sequence[tuple[str, str]] = ()  # request headers of this call (Range)
    upload: UploadBody | None = None  # a raw body (an object's bytes, maybe streamed from a file), not `body`
    save_to: str | os.PathLike | None = None  # a successful answer's body is streamed into this file
    from_headers: Callable[[Mapping[str, str]], Any] | None = None  # the answer is read from its headers (HEAD)

    @property
    def retryable(self) -> bool:
        return self.method in IDEMPOTENT_METHODS if self.idempotent is None else self.idempotent


def query_params(model: BaseModel | None) -> list[tuple[str, str]]:
    """A query model as the server's handlers read it: only what was set, lists as repeated
    keys, booleans as true/false."""
    if model is None:
        return []
    params = []
    for key, value in model.model_dump(mode="json", exclude_unset=True, exclude_none=True).items():
        for item in value if isinstance(value, list) else [value]:
            params.append((key, _query_text(item)))
    return params


def body_data(model: BaseModel) -> Any:
    """A request model as JSON data: only the fields given (the server fills its own defaults,
    and an explicit null means "remove" where a model says so)."""
    return model.model_dump(mode="json", exclude_unset=True)


def as_model(model_class: type[BaseModel], request: BaseModel | Mapping | None, fields: Mapping[str, Any]):
    """A request given as a model, as a dict, or as keyword arguments (not two of them)."""
    if request is not None and fields:
        raise TypeError(f"give a {model_class.__name__} or keyword arguments, not both")
    if isinstance(request, model_class):
        return request
    return model_class.model_validate(request if request is not None else dict(fields))


def decode(call: Call, status: int, content: bytes, headers: Mapping[str, str]):
    """The answer to `call` as its kind says, or the API error it is."""
    if status >= 400:
        raise error_from(status, content, headers)
    if call.from_headers is not None:
        return call.from_headers(headers)
    if call.response is None or (status == 204 or not content):
        return content if call.response == BYTES else None
    if call.response == BYTES:
        return content
    if call.response == JSON:
        return json.loads(content)
    return call.response.model_validate_json(content)


def error_from(status: int, content: bytes, headers: Mapping[str, str]) -> DataHarbourError:
    message = reason = None
    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        message, reason = body.get("message"), body.get("reason")
    elif content:
        message = content.decode("utf-8", "replace").strip()[:2000]  # a proxy's plain-text error
    return api_error(status, message, reason, retry_after_seconds(headers))


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After") if headers else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: no server of ours sends one


def _query_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
