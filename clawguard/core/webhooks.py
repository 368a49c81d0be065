"""Webhook rules (no I/O): a webhook's id, its signature, the retry schedule, Slack's shape.

README "Notifications" documents all of it for the people who receive them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

from clawguard.core import audit, events

SIGNATURE_HEADER = "X-Clawguard-Signature"
EVENT_ID_HEADER = "X-Clawguard-Event-Id"


def webhook_id(url: str) -> str:
    """The name a webhook's delivery state is kept under: a digest of its url, so a Slack url
    (itself a secret) is never written to the database, the logs or the metrics."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def signature(secret: str, body: bytes) -> str:
    """The X-Clawguard-Signature value: sha256=<hex HMAC-SHA256(secret, raw body)>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def wanted(rows: Iterable[tuple[int, str]], names: Collection[str]) -> list[int]:
    """The seqs of the (seq, audit action) rows whose public event a webhook subscribes to."""
    return [seq for seq, action in rows if events.name_of(action) in names]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: the n-th retry waits a uniform draw between
    `min_ms` and min(max_ms, min_ms * 2**(n-1)); tries stop `give_up_ms` after the event."""

    min_ms: int = 1_000
    max_ms: int = 300_000
    give_up_ms: int = 86_400_000


def retry_at(backoff: Backoff, failures: int, created_at: int, now: int,
             rand: Callable[[], float]) -> int | None:
    """When to try again after `failures` failed tries of an event made at `created_at`, at
    `now`; None when its time is up (it is then given up and counted as failed). The last
    retry is made at the deadline itself, never after it. `rand` draws from [0, 1)."""
    deadline = created_at + backoff.give_up_ms
    if now >= deadline:
        return None
    ceiling = min(backoff.max_ms, backoff.min_ms * 2 ** min(max(failures - 1, 0), 40))
    delay = backoff.min_ms + int(rand() * (ceiling - backoff.min_ms))
    return min(now + delay, deadline)


# --- Slack's incoming-webhook shape -----------------------------------------------------


def _escape(value: object) -> str:
    """Slack's mrkdwn: &, < and > are its only control characters."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _dollars(micros: object) -> str:
    if not isinstance(micros, int):
        return "?"
    cents = micros // 10_000
    return f"${cents // 100}.{cents % 100:02d}"


def _limit(cents: object) -> str:
    return _dollars(cents * 10_000) if isinstance(cents, int) else "?"


def summary(event: events.PublicEvent) -> str:
    """One line of mrkdwn saying what happened, every value escaped."""
    data = event.data
    agent = f"*{_escape(data.get('agentId') or '-')}*"
    if event.type == "approval.requested":
        return (f"Approval requested: {agent} wants to run *{_escape(data.get('toolName'))}*"
                f" ({_escape(data.get('argsSummary') or 'no arguments')})")
    if event.type == "approval.decided":
        outcome = "expired" if data.get("action") == "approval.expired" else data.get(
            "decision", "decided")
        return (f"Approval {_escape(data.get('approvalId'))} for {agent}"
                f" (*{_escape(data.get('toolName'))}*): {_escape(outcome)}")
    if event.type in ("budget.crossed", "budget.paused"):
        scope = f"{_escape(data.get('scope'))} *{_escape(data.get('scopeId'))}*"
        level = f"{_dollars(data.get('spentUsdMicros'))} of {_limit(data.get('limitUsdCents'))}"
        if event.type == "budget.paused":
            return f"Budget paused: {scope} reached its cap ({level})"
        threshold = {"soft": "80%", "hard": "100%"}.get(str(data.get("crossed")), "?")
        return f"Budget crossed {threshold} of its limit: {scope} at {level}"
    return (f"Run {_escape(data.get('runId'))} of {agent} tripped a breaker:"
            f" {_escape(data.get('reason'))}")


def slack_body(event: events.PublicEvent, console_url: str) -> bytes:
    """{"text", "blocks"} for a Slack incoming webhook, linking to the console."""
    line = summary(event)
    link = f"<{console_url}|Open the clawguard console>"
    body: dict[str, Any] = {
        "text": f"{line} {link}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": line}},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": f"{event.type} #{event.id} · {link}"}]},
        ],
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


# --- what the store hands back ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """An event due to one webhook, claimed for one try; `row` is its audit row."""

    webhook: str
    attempts: int  # failed tries so far
    created_at: int  # the event's time (the audit row's)
    row: audit.Row

    @property
    def seq(self) -> int:
        return self.row.seq


@dataclass(frozen=True, slots=True)
class Backlog:
    """One webhook's undelivered events (given-up ones left out)."""

    depth: int
    oldest_at: int | None  # the oldest one's event time
    next_due: int | None  # the earliest next try
    failed: int  # given up, kept for inspection
