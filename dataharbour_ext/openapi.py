"""Builds the OpenAPI 3.1 document from the route table and the pydantic models."""

import re
from http import HTTPStatus

from pydantic.json_schema import models_json_schema

from . import __version__

REF = "#/components/schemas/{model}"


def _query_parameters(model) -> list[dict]:
    schema = model.model_json_schema(ref_template=REF)
    return [
        {"name": name, "in": "query", "required": False, "schema": prop, "description": prop.get("description", "")}
        for name, prop in schema.get("properties", {}).items()
    ]


def build_document(routes, error_model) -> dict:
    models = {error_model}
    for route in routes:
        for op in route.operations:
            models.update(m for m in (op.response, op.body) if m is not None)
    _, schemas = models_json_schema([(m, "serialization") for m in models], ref_template=REF)
    paths: dict = {}
    for route in routes:
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _path_names(route.path)
        ]
        item = paths.setdefault(route.path, {})
        for op in route.operations:
            ref = {"$ref": REF.format(model=op.response.__name__)} if op.response else {"type": "object"}
            responses = {str(op.status): {"description": HTTPStatus(op.status).phrase,
                                          "content": {op.content_type: {"schema": ref}}}}
            for code in (*op.errors, 403):
                responses[str(code)] = {
                    "description": HTTPStatus(code).phrase,
                    "content": {"application/json": {"schema": {"$ref": REF.format(model=error_model.__name__)}}},
                }
            query = _query_parameters(op.query) if op.query else []
            operation = {"summary": op.summary, "parameters": params + query, "responses": responses}
            if op.body:
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": REF.format(model=op.body.__name__)}}},
                }
            item[op.method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "DataHarbour for Jupyter", "version": __version__},
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"jupyterToken": {"type": "apiKey", "in": "header", "name": "Authorization"}},
        },
        "security": [{"jupyterToken": []}],
        "paths": paths,
    }


def _path_names(path: str) -> list[str]:
    return re.findall(r"\{(\w+)\}", path)
