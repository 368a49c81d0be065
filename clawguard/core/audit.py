"""The audit chain: events, how each row links to the one before it, and verification (no I/O).

hash = SHA-256(0x01 || prev_hash || canonical JSON of the row), with the
genesis prev_hash of 64 zeros. The 0x01 prefix keeps row hashes apart from
any other hash the project may make (RFC 6962's domain separation).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from clawguard.core import redact

GENESIS = "0" * 64
_ROW_PREFIX = b"\x01"

EventType = Literal[
    "install", "approval", "tool_call", "budget", "cap_hit", "verification", "circuit_break"
]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]


def decode_details(stored: Any) -> dict[str, Any] | None:
    """A row's details as stored (JSON text), or None when they are not a JSON object."""
    if isinstance(stored, bytes):
        try:
            stored = stored.decode()
        except UnicodeDecodeError:
            return None
    if not isinstance(stored, str):
        return None
    try:
        details = json.loads(stored)
    except (ValueError, RecursionError):
        return None
    return details if isinstance(details, dict) else None


@dataclass(frozen=True, slots=True)
class Event:
    """What a decider says to append to the audit log, in the transaction of its change."""

    event_type: EventType
    action: str
    agent_id: str | None
    details: dict[str, Any]


# json.dumps(value, sort_keys=True, ...) with these settings, without building an encoder
# each call (~4 us of the ~9 a decision's details take; a decision canonicalises three times).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(value: Any) -> str:
    return _CANONICAL.encode(value)


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


@dataclass(frozen=True)
class Row:
    seq: int
    event_type: str
    action: str
    agent_id: str | None
    details_json: str
    created_at: int
    prev_hash: str
    hash: str


def next_row(head: tuple[int, str] | None, event: Event, now: int) -> Row:
    """The row that appends `event` after `head` ((seq, hash) of the last row, None when
    empty); secrets in its details masked first. The engine must hold the head while it
    inserts, so that no two rows claim the same place."""
    seq, prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS)
    details_json = canonical(redact.redact(event.details))
    digest = row_hash(prev_hash, seq, event.event_type, event.action, event.agent_id,
                      details_json, now)
    return Row(seq, event.event_type, event.action, event.agent_id, details_json, now,
               prev_hash, digest)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    checked: int
    problem: str | None = None
    seq: int | None = None  # the first row found wrong
    head: tuple[int, str] | None = None  # (seq, hash) of the last row checked


def verify(rows: Iterable[Row], expect_head: tuple[int, str] | None = None) -> Verdict:
    """Walk the chain in seq order; name the first row that was edited, removed or inserted.

    Without an anchor, cutting rows off the end leaves a valid shorter chain;
    `expect_head` (a head saved earlier) proves the chain still reaches it.
    """
    prev_seq, prev_hash, checked = 0, GENESIS, 0
    head_seen = expect_head is None
    for row in rows:
        if row.seq != prev_seq + 1:
            return Verdict(False, checked, f"rows {prev_seq + 1}..{row.seq - 1} were removed",
                           row.seq)
        if row.prev_hash != prev_hash:
            return Verdict(False, checked, "does not link to the row before it (inserted, or the"
                           " row before it was replaced)", row.seq)
        digest = row_hash(prev_hash, row.seq, row.event_type, row.action, row.agent_id,
                          row.details_json, row.created_at)
        if digest != row.hash:
            return Verdict(False, checked, "content does not match its hash (edited or forged)",
                           row.seq)
        if expect_head is not None and row.seq == expect_head[0]:
            if row.hash != expect_head[1]:
                return Verdict(False, checked, "differs from the saved head", row.seq)
            head_seen = True
        prev_seq, prev_hash, checked = row.seq, row.hash, checked + 1
    head = (prev_seq, prev_hash) if checked else None
    if not head_seen:
        assert expect_head is not None
        return Verdict(False, checked, f"the chain ends at {prev_seq}, before the saved head"
                       f" {expect_head[0]}: rows were cut from the end", prev_seq + 1, head)
    return Verdict(True, checked, head=head)
