"""The OpenAPI 3.1 document, built from the pydantic models each route declares and parses with.

web.ROUTES pairs every route with an `Endpoint`: the models its handler is
handed (path, query, body) and the model it answers. The same declaration
drives the parsing in web.py and this document, so the two cannot drift.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import pydantic
from pydantic import json_schema

from clawguard import __version__
from clawguard.core import commands, records
from clawguard.http import wire

REF = "#/components/schemas/{model}"
JsonMode = Literal["validation", "serialization"]

ERRORS: dict[int, str] = {
    400: "Bad input: malformed JSON, a wrong type or value, an unknown field or parameter",
    401: "No API key, or an unknown or revoked one",
    403: "The key's role may not call this route, or may not decide this request",
    404: "No such item",
    408: "The request body did not arrive in time",
    409: "Conflicts with the stored state",
    413: "The body is over 1 MiB",
    422: "Well-formed but refused by the rules",
    429: "A quota is used up: retry after `details.retryAfterMs` (also in Retry-After)",
    503: "The store is unavailable; nothing was done",
}


@dataclass(frozen=True)
class Endpoint:
    """What one route takes and answers. The handler is called with the parsed `path`,
    `query` and `body` models as keyword arguments of those names."""

    summary: str
    response: type[records.Model] | None = None  # None: `media_type` text, or no body on 204
    status: int = 200
    body: type[commands.Request] | None = None
    optional_body: bool = False  # an empty body reads as {}
    many: bool = False  # the body may also be a non-empty list of `body` objects
    query: type[records.Model] | None = None
    path: type[commands.Request] | None = None
    errors: tuple[int, ...] = ()  # beyond those every route of its kind can give
    media_type: str = "application/json"
    store: bool = True  # reads or writes the store, so may answer 503
    tag: str = "governance"
    # Bad input answers seed 002's `invalid_parameter` (the guardrail routes), not invalid_input.
    seed_codes: bool = False

    def statuses(self, public: bool) -> list[int]:
        """Every error status this route can answer."""
        found = set(self.errors)
        if self.body or self.query or self.path:
            found.add(400)
        if self.body:
            found |= {408, 413}
        if not public:
            found |= {401, 403}
        if self.store:
            found.add(503)
        return sorted(found)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    endpoint: Endpoint
    public: bool


def document(operations: Iterable[Operation]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for these operations."""
    operations = list(operations)
    wanted: list[tuple[type[pydantic.BaseModel], JsonMode]] = [(wire.Error, "serialization")]
    for op in operations:
        ep = op.endpoint
        wanted += [(model, "validation") for model in (ep.body, ep.query, ep.path) if model]
        if ep.response is not None:
            wanted.append((ep.response, "serialization"))
    refs, top = json_schema.models_json_schema(
        list(dict.fromkeys(wanted)), by_alias=True, ref_template=REF
    )
    components: dict[str, Any] = top.get("$defs", {})

    def schema(model: type[pydantic.BaseModel], mode: JsonMode) -> dict[str, Any]:
        return refs[(model, mode)]

    def inline(model: type[pydantic.BaseModel]) -> dict[str, Any]:
        """A parameter model's own schema, for its fields one by one."""
        found: dict[str, Any] = components[schema(model, "validation")["$ref"].rsplit("/", 1)[1]]
        return found

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        ep = op.endpoint
        operation: dict[str, Any] = {
            "operationId": _operation_id(op.method, op.path),
            "summary": ep.summary,
            "tags": [ep.tag],
            "responses": _responses(ep, op.public, schema),
        }
        parameters = [
            *(_parameters(inline(ep.path), "path") if ep.path else []),
            *(_parameters(inline(ep.query), "query") if ep.query else []),
        ]
        if parameters:
            operation["parameters"] = parameters
        if ep.body:
            operation["requestBody"] = {
                "required": not ep.optional_body,
                "content": {"application/json": {"schema": _body_schema(ep, schema)}},
            }
        if op.public:
            operation["security"] = []
        paths.setdefault(op.path, {})[op.method.lower()] = operation

    # Parameter models are spelled out field by field above; their own schemas stay out.
    used = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps([paths, components])))
    for op in operations:
        for model in (op.endpoint.path, op.endpoint.query):
            if model is not None and model.__name__ not in used:
                components.pop(model.__name__, None)

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "clawguard",
            "version": __version__,
            "description": "Governance daemon for fleets of AI agents: budget kill-switch, "
                           "approvals, audit. Every error is one JSON shape, `Error`.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "responses": {
                str(status): {
                    "description": text,
                    "content": {"application/json": {"schema": schema(wire.Error,
                                                                      "serialization")}},
                }
                for status, text in ERRORS.items()
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
    }


def _body_schema(ep: Endpoint, schema: Any) -> dict[str, Any]:
    one: dict[str, Any] = schema(ep.body, "validation")
    if not ep.many:
        return one
    return {"oneOf": [one, {"type": "array", "items": one, "minItems": 1,
                            "maxItems": commands.RUN_EVENTS_MAX}]}


def _responses(ep: Endpoint, public: bool, schema: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": ep.summary}
    if ep.response is not None:
        answer["content"] = {ep.media_type: {"schema": schema(ep.response, "serialization")}}
    elif ep.status != 204:
        text = {"type": "string"} if ep.media_type.startswith("text/") else {"type": "object"}
        answer["content"] = {ep.media_type: {"schema": text}}
    responses: dict[str, Any] = {str(ep.status): answer}
    for status in ep.statuses(public):
        responses[str(status)] = {"$ref": f"#/components/responses/{status}"}
    return responses


def _parameters(model_schema: dict[str, Any], where: str) -> list[dict[str, Any]]:
    required = set(model_schema.get("required", ()))
    return [
        {"name": name, "in": where, "required": where == "path" or name in required,
         "schema": _nullable_dropped(field)}
        for name, field in model_schema["properties"].items()
    ]


def _nullable_dropped(field: dict[str, Any]) -> dict[str, Any]:
    """`X | None` is pydantic's way of saying optional; a query string has no null."""
    field = {k: v for k, v in field.items() if k not in ("default", "title")}
    options = field.get("anyOf")
    if options is not None:
        kept = [option for option in options if option != {"type": "null"}]
        if len(kept) == 1:
            del field["anyOf"]
            field = {**kept[0], **field}
    return field


def _operation_id(method: str, path: str) -> str:
    words = re.findall(r"[A-Za-z]+", path.replace("{", "by ").replace("}", ""))
    return method.lower() + "".join(word[:1].upper() + word[1:] for word in words)
