"""Reading requests and writing answers: JSON bodies as Decimal, pydantic validation."""

from __future__ import annotations

import asyncio
import collections
import json
from decimal import Decimal
from typing import Any, TypeVar

import pydantic
from aiohttp import web

from clawguard.core import documents, errors, records
from clawguard.http import state

M = TypeVar("M", bound=pydantic.BaseModel)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object with each key once: a repeated key is refused, never last-one-wins (the
    spend {"costUsdCents": 1, "costUsdCents": 1000} must not charge either amount)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


# One decoder for every body: json.loads(..., parse_float=...) would build one per call.
# The pairs hook costs ~0.7 us on a spend body (timeit: 2.7 -> 3.4 us a decode).
_JSON = json.JSONDecoder(
    parse_float=Decimal, parse_constant=_reject_constant, object_pairs_hook=_object
)


def _validation_details(exc: pydantic.ValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(part) for part in err["loc"]), "problem": err["msg"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise errors.InvalidInput("invalid request", _validation_details(exc)) from exc


async def parse_body(request: web.Request, model: type[M], optional: bool = False) -> M:
    """The JSON body as `model`; numbers are read as Decimal, never through a float."""
    data = await _read_json(request, optional)
    if not isinstance(data, dict):
        raise errors.InvalidInput("the body must be a JSON object")
    return validate(model, data)


async def parse_many(request: web.Request, model: type[M], most: int) -> list[M]:
    """A JSON object as `model`, or a list of 1..`most` of them, in order."""
    data = await _read_json(request, False)
    if isinstance(data, dict):
        return [validate(model, data)]
    if not isinstance(data, list) or not 1 <= len(data) <= most:
        raise errors.InvalidInput(f"the body must be a JSON object or a list of 1..{most}")
    items = []
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise errors.InvalidInput(f"item {index} of the body is not a JSON object")
        try:
            items.append(model.model_validate(item))
        except pydantic.ValidationError as exc:
            details = [{**d, "field": f"{index}.{d['field']}"} for d in _validation_details(exc)]
            raise errors.InvalidInput("invalid request", details) from exc
    return items


async def _read(request: web.Request) -> bytes:
    """The body, up to the app's client_max_size. Not request.read(), which keeps the bytes
    on the request for its whole life: a parked approval wait's is the wait's (~0.9 KB of
    each of 10,000 parked waits, bench/README.md approvals.py)."""
    content, most = request.content, request.client_max_size
    chunks: list[bytes] = []
    size = 0
    while chunk := await content.readany():
        size += len(chunk)
        if most and size > most:
            raise web.HTTPRequestEntityTooLarge(max_size=most, actual_size=size)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def drop_read_buffer(request: web.Request) -> None:
    """Free the empty buffer of a body read to its end, for a request that will be kept
    (a parked approval wait): aiohttp keeps the body's reader, and its deque's block, as
    long as the request (~1 KB of each parked wait: bench/README.md, "Young collections,
    the bench's own client, and a parked body's buffer").

    aiohttp has no public way to do this; it writes the reader's private `_buffer`, only
    when it is the empty deque it expects, and puts an empty tuple in its place, which
    reads as an empty buffer, and which any write would fail on loudly (nothing writes to
    a reader at its end). tests/http/test_serve.py checks this against the installed
    aiohttp."""
    content = request.content
    buffer = getattr(content, "_buffer", None)
    if content.at_eof() and type(buffer) is collections.deque and not buffer:
        content._buffer = ()  # type: ignore[assignment]


async def _read_json(request: web.Request, optional: bool) -> Any:
    if request.content.is_eof():  # the whole body came with the headers: no wait, no timer
        raw = await _read(request)
    else:
        try:
            async with asyncio.timeout(request.app[state.CONFIG].server.client_timeout_ms / 1000):
                raw = await _read(request)
        except TimeoutError as exc:
            raise errors.RequestTimeout("the request body did not arrive in time") from exc
    if not raw.strip() and optional:
        return {}
    try:
        data = _JSON.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except _DuplicateKey as exc:
        raise errors.InvalidInput(
            f"the body repeats the key {exc.key!r}", {"key": exc.key}
        ) from exc
    except (ValueError, ArithmeticError, RecursionError) as exc:  # 1e999999999, [[[[...
        raise errors.InvalidInput("the body is not valid JSON", str(exc)) from exc
    return data


def respond(model: records.Model, status: int = 200) -> web.Response:
    return web.Response(body=model.to_json_bytes(), status=status, content_type="application/json")



def respond_document(value: Any, status: int = 200) -> web.Response:
    """A JSON answer whose numbers are written exactly (a rule's Decimals), never as floats."""
    return web.Response(body=documents.dumps(value).encode(), status=status,
                        content_type="application/json")
