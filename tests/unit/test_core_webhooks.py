"""Webhook rules: the retry schedule, the signature, which rows a webhook gets, Slack's shape."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from clawguard.core import audit, events, webhooks

T0 = 1_700_000_000_000
BACKOFF = webhooks.Backoff(min_ms=1_000, max_ms=300_000, give_up_ms=86_400_000)


@pytest.mark.parametrize(("failures", "draw", "delay"), [
    (1, 0.0, 1_000),           # the first retry: exactly the floor
    (1, 0.999, 1_000),         # ...whatever the draw: the ceiling is the floor
    (2, 0.0, 1_000),           # full jitter: anywhere from the floor...
    (2, 0.5, 1_500),           # ...to 2 s
    (3, 0.999, 3_997),         # up to 4 s
    (5, 0.5, 8_500),           # half way between 1 s and 16 s
    (9, 0.999, 255_745),       # 256 s, just under the cap
    (10, 0.999, 299_701),      # capped at 5 min
    (60, 0.999, 299_701),      # and stays capped, however many failures
    (60, 0.0, 1_000),          # the floor holds under the cap too
])
def test_retry_schedule(failures: int, draw: float, delay: int) -> None:
    now = T0 + 5_000
    assert webhooks.retry_at(BACKOFF, failures, T0, now, lambda: draw) == now + delay


def test_retries_stop_at_the_deadline_never_after() -> None:
    deadline = T0 + BACKOFF.give_up_ms
    # A retry that would land after the deadline is made at the deadline itself...
    assert webhooks.retry_at(BACKOFF, 30, T0, deadline - 10, lambda: 0.999) == deadline
    # ...and a failure at (or after) the deadline gives up.
    assert webhooks.retry_at(BACKOFF, 31, T0, deadline, lambda: 0.0) is None
    assert webhooks.retry_at(BACKOFF, 31, T0, deadline + 1, lambda: 0.0) is None


def test_a_day_of_failures_is_a_bounded_number_of_tries() -> None:
    now, failures = T0, 0
    while (at := webhooks.retry_at(BACKOFF, failures + 1, T0, now, lambda: 0.999)) is not None:
        assert at > now
        now, failures = at, failures + 1
    assert now == T0 + BACKOFF.give_up_ms
    assert 280 < failures < 300  # ~5 min apart once capped


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"id":"1"}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert webhooks.signature("s3cret", body) == "sha256=" + expected
    assert webhooks.signature("other", body) != "sha256=" + expected


def test_webhook_id_hides_the_url() -> None:
    url = "https://hooks.slack.com/services/T000/B000/XXXX"
    assert webhooks.webhook_id(url) == hashlib.sha256(url.encode()).hexdigest()[:16]
    assert "XXXX" not in webhooks.webhook_id(url)


def test_wanted_keeps_the_subscribed_events_only() -> None:
    rows = [(1, "approval.requested"), (2, "budget.set"), (3, "budget.crossed_soft"),
            (4, "breaker.iteration-cap"), (5, "approval.resolved")]
    assert webhooks.wanted(rows, {"approval.requested", "approval.decided"}) == [1, 5]
    assert webhooks.wanted(rows, set(events.EVENT_NAMES)) == [1, 3, 4, 5]


def _event(action: str, details: dict[str, object], agent: str | None = "agent-1"
           ) -> events.PublicEvent:
    row = audit.next_row((6, "a" * 64), audit.Event("approval", action, agent, details), T0)
    event = events.from_row(row)
    assert event is not None
    return event


@pytest.mark.parametrize(("action", "details", "words"), [
    ("approval.requested", {"toolName": "shell", "argsSummary": "rm -rf /tmp/x"},
     ["Approval requested", "*agent-1*", "*shell*", "rm -rf /tmp/x"]),
    ("approval.resolved", {"approvalId": "ap_1", "toolName": "shell", "decision": "deny"},
     ["ap_1", "deny"]),
    ("approval.expired", {"approvalId": "ap_1", "toolName": "shell"}, ["expired"]),
    ("budget.crossed_soft", {"scope": "team", "scopeId": "t1", "crossed": "soft",
                             "spentUsdMicros": 8_000_000, "limitUsdCents": 1_000},
     ["crossed 80%", "team *t1*", "$8.00 of $10.00"]),
    ("budget.crossed_hard", {"scope": "team", "scopeId": "t1", "crossed": "hard",
                             "spentUsdMicros": 10_000_000, "limitUsdCents": 1_000},
     ["crossed 100%"]),
    ("budget.paused", {"scope": "agent", "scopeId": "a1", "spentUsdMicros": 10_050_000,
                       "limitUsdCents": 1_000}, ["paused", "$10.05 of $10.00"]),
    ("breaker.no-progress", {"runId": "run_1", "reason": "no-progress"},
     ["run_1", "tripped", "no-progress"]),
])
def test_slack_text_says_what_happened(action: str, details: dict[str, object],
                                       words: list[str]) -> None:
    body = json.loads(webhooks.slack_body(_event(action, details), "http://h:1/console"))
    for word in words:
        assert word in body["text"]
    assert "<http://h:1/console|" in body["text"]
    assert body["blocks"][0]["type"] == "section"
    assert "<http://h:1/console|" in body["blocks"][1]["elements"][0]["text"]


def test_slack_text_escapes_what_agents_send() -> None:
    event = _event("approval.requested", {"toolName": "<!channel> & <http://evil|x>"})
    text = json.loads(webhooks.slack_body(event, "http://h/console"))["text"]
    assert "<!channel>" not in text and "<http://evil" not in text
    assert "&lt;!channel&gt; &amp; &lt;http://evil|x&gt;" in text
