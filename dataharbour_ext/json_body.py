"""API models as JSON bytes, including the large ones, without stalling the event loop."""

import json
from functools import cache

from pydantic import BaseModel, TypeAdapter
from pydantic_core import PydanticSerializationError


def model_json(model: BaseModel, exclude: set[str] | None = None) -> bytes:
    try:
        return model.model_dump_json(exclude=exclude).encode()
    except PydanticSerializationError:
        # A record stored before today's input checks (or by hand) may hold text UTF-8
        # cannot encode (a lone surrogate): JSON can still carry it as an escape.
        return json.dumps(model.model_dump(mode="json", exclude=exclude), ensure_ascii=True).encode()


def model_json_item_by_item(model: BaseModel, field: str) -> bytes:
    """JSON of `model` whose list `field` is serialized one item at a time.

    pydantic holds the GIL for the whole of one dump: a 1000-item list in one call keeps
    every other thread (Jupyter's event loop among them) waiting for tens of milliseconds.
    Between items the interpreter can hand the GIL over. Items are serialized as the
    field's declared item type, as one dump would do."""
    adapter = _item_adapter(type(model), field)
    items = b",".join(_item_json(adapter, item) for item in getattr(model, field))
    # The other fields, then the list last: a marker searched for in the dump could also be
    # text inside another field (a notebook's metadata holding "cells": []).
    rest = model_json(model, exclude={field})  # '{"total":...}'
    separator = b"," if rest != b"{}" else b""
    return rest[:-1] + separator + json.dumps(field).encode() + b":[" + items + b"]}"


@cache
def _item_adapter(model_type: type[BaseModel], field: str) -> TypeAdapter:
    (item_type,) = model_type.model_fields[field].annotation.__args__
    return TypeAdapter(item_type)


def _item_json(adapter: TypeAdapter, item) -> bytes:
    try:
        return adapter.dump_json(item)
    except PydanticSerializationError:
        return json.dumps(adapter.dump_python(item, mode="json"), ensure_ascii=True).encode()
