"""Prometheus metrics: one registry per app, so two apps in one process never collide.

Label sets are bounded. Routes are labelled by their template, never the raw
path; budget utilisation is exported per row only for the `budget_series`
most-utilised rows (plus counts by scope and status for all of them), and
those gauges are refreshed when /metrics is scraped, not on the spend path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import prometheus_client as prom

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
WAIT_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
SCOPES = ("agent", "mission", "team", "tenant")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CONTENT_TYPE = prom.CONTENT_TYPE_LATEST


OTHER_MODELS = "other"


class Metrics:
    def __init__(self, budget_series: int = 100, model_series: int = 50) -> None:
        self.budget_series = budget_series
        self.model_series = model_series
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.requests = prom.Counter(
            "clawguard_http_requests", "HTTP requests answered", ["method", "route", "status"],
            registry=r)
        self.latency = prom.Histogram(
            "clawguard_http_request_duration_seconds", "Time to answer an HTTP request",
            ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.spend = prom.Counter(
            "clawguard_spend_usd_micros", "Spend recorded, in micro-dollars, by scope type",
            ["scope"], registry=r)
        self.model_spend = prom.Counter(
            "clawguard_model_spend_usd_micros",
            f"Spend recorded, in micro-dollars, by model (the first {model_series} models"
            f" seen; the rest as {OTHER_MODELS!r})", ["model"], registry=r)
        self.spends = prom.Counter(
            "clawguard_spends", "Spend requests recorded", ["outcome"], registry=r)
        self.utilisation = prom.Gauge(
            "clawguard_budget_utilisation_ratio",
            "Spent over limit, for the most-utilised budget rows", ["scope", "scope_id", "mode"],
            registry=r)
        self.budgets = prom.Gauge(
            "clawguard_budgets", "Budget rows by scope type and status", ["scope", "status"],
            registry=r)
        self.paused = prom.Gauge(
            "clawguard_paused_scopes", "Scopes paused by a cap budget", ["scope"], registry=r)
        self.pending_approvals = prom.Gauge(
            "clawguard_pending_approvals", "Approval requests waiting for a decision",
            registry=r)
        self.approval_wait = prom.Histogram(
            "clawguard_approval_wait_seconds", "From an approval request to its answer",
            ["resolution"], buckets=WAIT_BUCKETS, registry=r)
        self.store_batch = prom.Histogram(
            "clawguard_store_transaction_seconds", "One write transaction, commit included",
            buckets=LATENCY_BUCKETS, registry=r)
        self.store_batch_size = prom.Histogram(
            "clawguard_store_batch_size", "Writes committed together in one transaction",
            buckets=BATCH_BUCKETS, registry=r)
        self.reaper_sweeps = prom.Counter(
            "clawguard_reaper_sweeps", "Background sweeps run", registry=r)
        self.expired = prom.Counter(
            "clawguard_expired", "Rows expired by the reaper", ["kind"], registry=r)
        self.holds_outstanding = prom.Gauge(
            "clawguard_holds_outstanding", "Holds counting against their budgets (held, not"
            " past expiry)", registry=r)
        self.held_micros = prom.Gauge(
            "clawguard_held_usd_micros", "Micro-dollars the outstanding holds reserve",
            registry=r)
        self.holds = prom.Counter(
            "clawguard_holds", "Hold requests by outcome (placed, committed, released,"
            " budget_exhausted, budget_paused)", ["outcome"], registry=r)
        self.runs_running = prom.Gauge(
            "clawguard_runs_running", "Runs holding a concurrency slot (lease not lapsed)",
            registry=r)
        self.runs_started = prom.Counter(
            "clawguard_runs_started", "Runs started", registry=r)
        self.quota_refusals = prom.Counter(
            "clawguard_quota_refusals", "Run starts refused by a tenant quota", ["key"],
            registry=r)
        self.delegation_refusals = prom.Counter(
            "clawguard_delegation_refusals", "Run starts refused by a delegation cap", ["cap"],
            registry=r)
        self.breaker_trips = prom.Counter(
            "clawguard_breaker_trips", "Runs stopped by a circuit breaker", ["reason"],
            registry=r)
        self.verdicts = prom.Counter(
            "clawguard_verdicts", "Authorize verdicts by decision (replays not counted)",
            ["decision"], registry=r)
        self.verdict_children = {
            decision: self.verdicts.labels(decision) for decision in ("ALLOW", "BLOCK", "PENDING")
        }
        self.webhook_deliveries = prom.Counter(
            "clawguard_webhook_deliveries",
            "Webhook delivery tries by outcome: sent (answered 2xx), retried (failed, tried"
            " again later), failed (given up)", ["webhook", "outcome"], registry=r)
        self.webhook_queue = prom.Gauge(
            "clawguard_webhook_queue_depth", "Events not yet delivered to a webhook (given-up"
            " ones left out)", ["webhook"], registry=r)
        self.webhook_oldest = prom.Gauge(
            "clawguard_webhook_oldest_undelivered_seconds",
            "Age of the oldest event not yet delivered to a webhook (0: none)", ["webhook"],
            registry=r)

        # Labelled children by label values: labels() takes a lock and builds a tuple,
        # which the spend path would pay several times a request.
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._spend_children = {scope: self.spend.labels(scope) for scope in SCOPES}
        self._model_children: dict[str, Any] = {}
        self._outcome_children = {
            outcome: self.spends.labels(outcome) for outcome in ("recorded", "stopped", "duplicate")
        }

    def count_request(self, method: str, route: str, status: int, seconds: float | None) -> None:
        """`seconds` None: counted, not timed (a route that waits for people)."""
        if method not in METHODS:
            method = "other"  # a client may send any token as a method
        children = self._request_children.get((method, route, status))
        if children is None:
            children = (self.requests.labels(method, route, str(status)),
                        self.latency.labels(route))
            self._request_children[method, route, status] = children
        children[0].inc()
        if seconds is not None:
            children[1].observe(seconds)

    def count_spend(
        self, outcome: str, scopes: Iterable[str], micros: int, model: str | None = None
    ) -> None:
        self._outcome_children[outcome].inc()
        if outcome != "duplicate":
            for scope in scopes:
                self._spend_children[scope].inc(micros)
            if model is not None:
                self._model_child(model).inc(micros)

    def _model_child(self, model: str) -> Any:
        """The model's counter; past `model_series` models, the shared "other" one, so a
        caller inventing model names cannot grow the label set without bound."""
        child = self._model_children.get(model)
        if child is None:
            if len(self._model_children) >= self.model_series:
                child = self._model_children.get(OTHER_MODELS)
                if child is None:
                    child = self._model_children[OTHER_MODELS] = self.model_spend.labels(
                        OTHER_MODELS)
                return child
            child = self._model_children[model] = self.model_spend.labels(model)
        return child

    def observe_batch(self, size: int, seconds: float) -> None:
        self.store_batch_size.observe(size)
        self.store_batch.observe(seconds)

    def set_budgets(self, rows: Iterable[tuple[str, str, str, str, int, int]]) -> None:
        """Refresh the budget gauges from (scope, scope_id, status, mode, spent, limit) rows."""
        self.utilisation.clear()
        self.budgets.clear()
        self.paused.clear()
        counts: dict[tuple[str, str], int] = {}
        top: list[tuple[float, str, str, str]] = []
        for scope, scope_id, status, mode, spent_micros, limit_cents in rows:
            counts[scope, status] = counts.get((scope, status), 0) + 1
            top.append((spent_micros / (limit_cents * 10_000), scope, scope_id, mode))
        for (scope, status), count in counts.items():
            self.budgets.labels(scope, status).set(count)
        for scope in SCOPES:
            self.paused.labels(scope).set(counts.get((scope, "paused"), 0))
        top.sort(reverse=True)
        for ratio, scope, scope_id, mode in top[: self.budget_series]:
            self.utilisation.labels(scope, scope_id, mode).set(ratio)

    def set_webhook_backlog(self, webhook: str, depth: int, oldest_age_s: float) -> None:
        self.webhook_queue.labels(webhook).set(depth)
        self.webhook_oldest.labels(webhook).set(oldest_age_s)

    def render(self) -> bytes:
        return prom.generate_latest(self.registry)
