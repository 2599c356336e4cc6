"""Builds the OpenAPI 3.1 document from the route table and the pydantic models."""

import re
from http import HTTPStatus

from pydantic.json_schema import models_json_schema

from . import __version__

REF = "#/components/schemas/{model}"
TEXT_ERROR_SCHEMA = {"type": "string", "description": "`<status> <reason>: <message>`, one line."}


def _forbidden_description(action: str) -> str:
    return (
        f"Forbidden: the request has no valid Jupyter token, or the server's authorizer does not "
        f"allow action `{action}` on this resource"
    )


def build_document(routes, error_model) -> dict:
    bodies = {error_model} | {
        model for route in routes for op in route.operations for model in (op.response, op.body) if model
    }
    queries = {op.query for route in routes for op in route.operations if op.query}
    # Responses in serialization mode, request bodies and query strings in validation mode;
    # the query models' own `$defs` (enums such as JobSort) land in the components too.
    inputs = {op.body for route in routes for op in route.operations if op.body} | queries
    wanted = [(m, "validation" if m in inputs else "serialization") for m in bodies | queries]
    _, defs = models_json_schema(wanted, ref_template=REF)
    schemas = defs.get("$defs", {})
    query_schemas = {model: schemas.pop(model.__name__) for model in queries}

    paths: dict = {}
    for route in routes:
        if not route.operations:
            continue
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _path_names(route.path)
        ]
        item = paths.setdefault(route.path, {})
        for op in route.operations:
            query = _query_parameters(query_schemas[op.query]) if op.query else []
            operation = {"summary": op.summary, "parameters": params + query, "responses": _responses(op, error_model)}
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
            "schemas": schemas,
            "securitySchemes": {"jupyterToken": {"type": "apiKey", "in": "header", "name": "Authorization"}},
        },
        "security": [{"jupyterToken": []}],
        "paths": paths,
    }


def _responses(op, error_model) -> dict:
    if op.response:
        ref = {"$ref": REF.format(model=op.response.__name__)}
    else:
        ref = {"type": "string" if op.content_type.startswith("text/") else "object"}
    success = {"description": HTTPStatus(op.status).phrase}
    if op.status != 204:  # No Content has no body
        success["content"] = {op.content_type: {"schema": ref}}
    responses = {str(op.status): success}
    for code, when in op.other_statuses:
        other = {"description": f"{HTTPStatus(code).phrase}: {when}"}
        if code != 204:
            other["content"] = success["content"]
        responses[str(code)] = other
    if op.error_content_type == "application/json":
        error_schema = {"$ref": REF.format(model=error_model.__name__)}
    else:
        error_schema = TEXT_ERROR_SCHEMA
    notes = dict(op.error_notes)
    for code in sorted({*op.errors, 403}):
        description = _forbidden_description(op.action) if code == 403 else HTTPStatus(code).phrase
        if code in notes:
            description += f"; or {notes[code]}" if code == 403 else f": {notes[code]}"
        content = {op.error_content_type: {"schema": error_schema}}
        responses[str(code)] = {"description": description, "content": content}
    return responses


def _query_parameters(schema: dict) -> list[dict]:
    return [
        {
            "name": name,
            "in": "query",
            "required": name in schema.get("required", ()),
            "schema": prop,
            "description": prop.get("description", ""),
        }
        for name, prop in schema.get("properties", {}).items()
    ]


def _path_names(path: str) -> list[str]:
    return re.findall(r"\{(\w+)\}", path)
