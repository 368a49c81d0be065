"""What the bad-input tables share: a case, a JSON body, and firing one at the app."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    status: int
    code: str
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()


def j(value: Any) -> bytes:
    return json.dumps(value).encode()


async def fire(client: TestClient[Any, Any], case: Case, ids: Mapping[str, str] | None = None
               ) -> tuple[int, dict[str, Any]]:
    """The status and JSON body `case` is answered with; `ids` replace placeholders in its
    path with the ids a seed made."""
    path = case.path
    for placeholder, real in (ids or {}).items():
        path = path.replace(placeholder, real)
    headers = dict(case.headers)
    if case.body is not None:
        headers["Content-Type"] = "application/json"
    async with client.request(case.method, path, data=case.body, headers=headers) as resp:
        assert resp.content_type == "application/json", case.id
        return resp.status, await resp.json()
