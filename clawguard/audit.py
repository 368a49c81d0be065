"""The audit chain: canonical content of a row and its hash (no I/O).

hash = SHA-256(0x01 || prev_hash || canonical JSON of the row), with the
genesis prev_hash of 64 zeros. The 0x01 prefix keeps row hashes apart from
any other hash the project may make (RFC 6962's domain separation).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS = "0" * 64
_ROW_PREFIX = b"\x01"


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def row_hash(
    prev_hash: str,
    seq: int,
    event_type: str,
    action: str,
    agent_id: str | None,
    details_json: str,
    created_at: int,
) -> str:
    content = canonical([seq, event_type, action, agent_id, details_json, created_at])
    return hashlib.sha256(_ROW_PREFIX + prev_hash.encode() + content.encode()).hexdigest()
