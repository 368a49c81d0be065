"""The Python client against a real daemon with keys on: typed answers, retries that never
charge twice, typed errors, the step helper, approvals that wait and re-attach.

Most tests run twice, on Client and on AsyncClient (driven from its own loop here).
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
import time
import uuid
from decimal import Decimal

import pytest
from daemon import Daemon, role_keys
from proxy import Proxy, body_of

from clawguard import client
from clawguard.client import api, records
from clawguard.http import routes


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """One daemon for the module, with a key of each role made before it starts."""
    db = tmp_path_factory.mktemp("client") / "client.db"
    keys = role_keys(db)
    with Daemon(db, auth_mode="keys") as daemon:
        yield daemon, keys


@pytest.fixture
def daemon(keyed):
    return keyed[0]


@pytest.fixture
def keys(keyed):
    return keyed[1]


class Blocking:
    """An AsyncClient driven from plain code on a loop of its own: one scenario, both clients."""

    def __init__(self, url, **settings):
        self.loop = asyncio.new_event_loop()
        self.inner = client.AsyncClient(url, **settings)

    def __getattr__(self, name):
        method = getattr(self.inner, name)
        return lambda *args, **kwargs: self.loop.run_until_complete(method(*args, **kwargs))

    def close(self):
        self.loop.run_until_complete(self.inner.close())
        self.loop.close()


@pytest.fixture(params=["Client", "AsyncClient"])
def make(request, keys):
    """make(url, role="admin", **settings) -> a client of the parametrised kind; `.sleeps`
    lists the waits between retries it asked for (none is really waited)."""
    made = []

    def make_one(url, role="admin", **settings):
        sleeps: list[float] = []
        if request.param == "Client":
            made.append(client.Client(url, keys.get(role, role), sleep=sleeps.append, **settings))
        else:

            async def sleep(seconds):
                sleeps.append(seconds)

            made.append(Blocking(url, api_key=keys.get(role, role), sleep=sleep, **settings))
        made[-1].sleeps = sleeps
        return made[-1]

    yield make_one
    for one in made:
        one.close()


@pytest.fixture
def admin(daemon, keys):
    with client.Client(daemon.url, keys["admin"]) as admin_client:
        yield admin_client


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def charges(db, agent_id: str) -> list[tuple[str, int]]:
    """(idempotency key, micros) of every ledger row of an agent."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT substr(idempotency_key, instr(idempotency_key, ':') + 1), cost_micros"
            " FROM spends WHERE agent_id = ?", (agent_id,)
        ).fetchall()
    finally:
        conn.close()


def closed_port_url() -> str:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def resolve_when_pending(url: str, key: str, agent_id: str, decision: str) -> threading.Thread:
    """A leader in another thread: decide the agent's request once it shows in the queue."""

    def leader() -> None:
        with client.Client(url, key) as boss:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                mine = [a for a in boss.pending_approvals() if a.agent_id == agent_id]
                if mine:
                    time.sleep(0.1)  # let the requester park on it first
                    boss.resolve_approval(mine[0].id, decision, resolved_by="boss")
                    return
                time.sleep(0.02)

    thread = threading.Thread(target=leader)
    thread.start()
    return thread


# --- every route, typed -----------------------------------------------------------------

# Which client method speaks each route; a route added to web.ROUTES fails here until the
# client has its method.
METHODS = {
    ("GET", "/healthz"): "healthz",
    ("GET", "/readyz"): "readyz",
    ("GET", "/metrics"): "metrics",
    ("GET", "/openapi.json"): "openapi",
    ("GET", "/api/governance/budgets"): "list_budgets",
    ("POST", "/api/governance/budgets"): "set_budget",
    ("DELETE", "/api/governance/budgets/{scope}/{scopeId}"): "delete_budget",
    ("POST", "/api/governance/budgets/{scope}/{scopeId}/resume"): "resume_budget",
    ("POST", "/api/governance/spend"): "spend",
    ("GET", "/api/governance/preflight"): "preflight",
    ("GET", "/api/governance/audit"): "audit",
    ("GET", "/api/governance/audit/head"): "audit_head",
    ("POST", "/api/governance/delegation-approval"): "request_delegation_approval",
    ("POST", "/api/tools/approvals"): "request_tool_approval",
    ("GET", "/api/tools/approvals"): "pending_page",
    ("GET", "/api/tools/approvals/grants"): "grants",
    ("DELETE", "/api/tools/approvals/grants/{id}"): "revoke_grant",
    ("GET", "/api/tools/approvals/{id}"): "get_approval",
    ("POST", "/api/tools/approvals/{id}/resolve"): "resolve_approval",
    ("POST", "/api/tools/approvals/{id}/waive"): "waive_approval",
    ("GET", "/api/approvals"): "approval_history",
    ("POST", "/api/approvals"): "record_history",
    ("GET", "/api/governance/spend/summary"): "spend_summary",
    ("GET", "/api/me"): "me",
    ("GET", "/api/keys"): "list_keys",
    ("POST", "/api/keys"): "create_key",
    ("DELETE", "/api/keys/{id}"): "revoke_key",
    ("GET", "/api/guardrails"): "list_guardrails",
    ("POST", "/api/guardrails"): "create_guardrail",
    ("POST", "/api/guardrails/evaluate"): "evaluate_guardrails",
    ("GET", "/api/guardrails/{id}"): "get_guardrail",
    ("PATCH", "/api/guardrails/{id}"): "update_guardrail",
    ("DELETE", "/api/guardrails/{id}"): "delete_guardrail",
    ("GET", "/api/guardrails/{id}/versions"): "guardrail_versions",
    ("POST", "/api/guardrails/{id}/versions/{n}/rollback"): "rollback_guardrail",
    ("GET", "/api/tools"): "list_tools",
    ("POST", "/api/tools"): "register_tool",
    ("POST", "/api/tools/{name}/deprecate"): "deprecate_tool",
    ("POST", "/api/tools/{name}/archive"): "archive_tool",
    ("GET", "/api/tool-policies"): "list_tool_policies",
    ("POST", "/api/tool-policies"): "create_tool_policy",
    ("DELETE", "/api/tool-policies/{id}"): "delete_tool_policy",
    ("GET", "/api/role-policy-overrides"): "list_role_overrides",
    ("POST", "/api/role-policy-overrides"): "create_role_override",
    ("DELETE", "/api/role-policy-overrides/{id}"): "delete_role_override",
    ("POST", "/api/governance/holds"): "create_hold",
    ("GET", "/api/governance/holds/{id}"): "get_hold",
    ("POST", "/api/governance/holds/{id}/commit"): "commit_hold",
    ("POST", "/api/governance/holds/{id}/release"): "release_hold",
    ("POST", "/api/governance/runs"): "start_run",
    ("GET", "/api/governance/runs"): "list_runs",
    ("GET", "/api/governance/runs/{id}"): "get_run",
    ("POST", "/api/governance/runs/{id}/end"): "end_run",
    ("POST", "/api/governance/runs/{id}/events"): "run_events",
    ("GET", "/api/tenants/{tenantId}/quota"): "quota",
    ("PATCH", "/api/tenants/{tenantId}/quota"): "set_quota",
    ("POST", "/api/governance/authorize"): "authorize",
    ("GET", "/api/governance/receipts/{id}"): "receipt",
    ("GET", "/api/governance/settings"): "approval_settings",
    ("PATCH", "/api/governance/settings"): "set_approval_settings",
    ("GET", "/api/governance/enforcement/check"): "enforcement_check",
    ("GET", "/api/governance/report"): "governance_report",
    ("GET", "/api/governance/approval-stats"): "approval_stats",
    # An endless stream, not a call: read it with any server-sent-events reader
    # (README "The event stream"); the clients have no method for it.
    ("GET", "/api/events"): None,
}


def test_the_client_has_a_method_for_every_route_and_both_clients_the_same():
    assert {(route.method, route.path) for route in routes.ROUTES} == set(METHODS)
    public = {name for name in dir(client.Client) if not name.startswith("_")}
    assert public == {name for name in dir(client.AsyncClient) if not name.startswith("_")}
    assert set(METHODS.values()) - {None} <= public
    for name in public - {"url"}:
        assert asyncio.iscoroutinefunction(getattr(client.AsyncClient, name)) or name in (
            "step", "guarded")


def test_every_route_answers_its_model(make, daemon):
    c, lead = make(daemon.url), make(daemon.url, role="leader")
    team, agent = unique("t/with slash"), unique("a")
    assert c.healthz() is True and c.readyz() is True
    assert "clawguard_http_requests" in c.metrics()
    assert c.openapi()["openapi"].startswith("3.1")
    who = lead.me()
    assert isinstance(who, records.Me) and (who.name, who.role) == ("leader-key", "leader")

    budget = c.set_budget("team", team, 100, mode="cap")
    assert isinstance(budget, records.Budget) and budget.scope_id == team
    assert budget.mode == "cap" and budget.limit_usd_cents == 100
    assert team in {b.scope_id for b in c.list_budgets(scope="team", status="active")}

    spent = c.spend(
        Decimal("0.4"),
        agent_id=agent,
        team_id=team,
        task_id="t9",
        model="m",
        input_tokens=10,
        output_tokens=2,
    )
    assert isinstance(spent, records.SpendOutcome)
    assert spent.spend.cost_usd_micros == 4000 and spent.spend.duplicate is False
    assert [(s.scope, s.spent_usd_micros) for s in spent.scopes] == [("team", 4000)]
    checked = c.preflight(agent_id=agent, team_id=team)
    assert isinstance(checked, records.Preflight) and checked.allowed is True

    hold = c.create_hold(Decimal("0.5"), agent_id=agent, team_id=team, ttl_ms=60_000)
    assert isinstance(hold, records.Hold) and hold.status == "held"
    assert hold.scopes[0].held_usd_micros == 5000
    assert c.get_hold(hold.id).amount_usd_micros == 5000
    committed = c.commit_hold(hold.id, Decimal("0.6"), model="m")
    assert isinstance(committed, records.SpendOutcome)
    assert committed.scopes[0].spent_usd_micros == 10_000
    assert c.commit_hold(hold.id, Decimal("0.6"), model="m").spend.duplicate is True
    other = c.create_hold(1, agent_id=agent)
    assert c.release_hold(other.id).status == "released"

    resumed = c.resume_budget("team", team)
    assert isinstance(resumed, records.Resumed) and resumed.will_repause is False
    rows = c.audit(event_type="budget", limit=5)
    assert all(isinstance(r, records.AuditEntry) for r in rows)
    assert [r.action for r in rows[:2]] == ["budget.resumed", "budget.set"]
    head = c.audit_head()
    assert isinstance(head, records.AuditHead) and head.seq >= rows[0].id
    assert c.delete_budget("team", team) is None
    assert team not in {b.scope_id for b in c.list_budgets()}

    with pytest.raises(client.ApprovalDenied) as waited:
        c.request_tool_approval(
            "rm",
            agent,
            args={"path": "/tmp", "apiKey": "s3cret"},
            reason="clean",
            task_id="t9",
            wait_ms=0,
        )
    assert waited.value.resolution == "timeout"
    [pending] = [a for a in c.pending_approvals() if a.agent_id == agent]
    assert isinstance(pending, records.Approval) and pending.id == waited.value.approval_id
    assert "s3cret" not in (pending.args_summary or "")
    assert c.get_approval(pending.id).status == "pending"
    decided = lead.resolve_approval(pending.id, "allow_always", resolved_by="alice")
    assert decided.status == "allow_always"
    assert decided.resolved_by == "leader-key"  # with keys, the key's name, whatever is claimed
    sticky = c.request_tool_approval("rm", agent)
    assert sticky == records.Handshake(resolution="allow_always")
    [grant] = c.grants(agent_id=agent)
    assert isinstance(grant, records.Grant) and grant.approval_id == pending.id
    revoked = c.revoke_grant(grant.id, revoked_by="bob")
    assert revoked.revoked_by == "admin-key" and c.grants(agent_id=agent) == []
    assert grant.grant_scope == "tool"
    # grant_scope="args": only the same arguments are let through afterwards.
    with pytest.raises(client.ApprovalDenied) as scoped:
        c.request_tool_approval("rm", agent, args={"path": "/tmp"}, wait_ms=0)
    lead.resolve_approval(scoped.value.approval_id, "allow_always", grant_scope="args")
    [args_grant] = c.grants(agent_id=agent)
    assert args_grant.grant_scope == "args" and args_grant.args_fingerprint
    assert c.request_tool_approval("rm", agent, args={"path": "/tmp"}).resolution == (
        "allow_always")
    with pytest.raises(client.ApprovalDenied):
        c.request_tool_approval("rm", agent, args={"path": "/"}, wait_ms=0)
    c.revoke_grant(args_grant.id)
    history = c.approval_history(agent_id=agent, limit=5)
    assert [h.action for h in history] == ["allow-always", "allow-always"]
    record = c.record_history(agent, "deny", "rm", details={"why": "late"})
    assert isinstance(record, records.HistoryRecord) and record.action == "deny"

    with pytest.raises(client.ApprovalDenied) as delegated:
        c.request_delegation_approval("lead-" + agent, target_agent_name="bob", wait_ms=0)
    assert delegated.value.resolution == "timeout"
    assert c.get_approval(delegated.value.approval_id).tool_name == "delegate:code"

    tenant = unique("org")
    run = c.start_run(agent, tenant_id=tenant, idempotency_key=unique("k"))
    assert isinstance(run, records.Run) and run.status == "running"
    assert c.get_run(run.id) == run and run.id in {r.id for r in c.list_runs(agent_id=agent)}
    reported = c.run_events(run.id, [{"kind": "policy-denied", "signature": "rm"}] * 2)
    assert isinstance(reported, records.RunEvents) and reported.tripped is not None
    assert reported.tripped.reason == "repeat-policy-denied"
    with pytest.raises(client.Conflict):
        c.end_run(run.id)
    assert c.end_run(c.start_run(agent, tenant_id=tenant).id).status == "ended"
    quota = c.set_quota(tenant, {"concurrent_runs": 1})
    assert isinstance(quota, records.Quota) and quota.effective["concurrent_runs"] == 1
    assert c.quota(tenant) == quota
    c.start_run(agent, tenant_id=tenant)
    with pytest.raises(client.QuotaExceeded) as refused:
        c.start_run(agent, tenant_id=tenant)
    assert refused.value.details["key"] == "concurrent_runs"
    assert c.sleeps == lead.sleeps == []


def test_url_and_key_come_from_the_environment(daemon, keys, monkeypatch):
    monkeypatch.setenv("CLAWGUARD_URL", daemon.url + "/")
    monkeypatch.setenv("CLAWGUARD_API_KEY", keys["operator"])
    with client.Client() as c:
        assert c.url == daemon.url
        assert isinstance(c.list_budgets(), list)
    with pytest.raises(ValueError, match="http"):
        client.Client("ftp://example.com")


# --- retries ----------------------------------------------------------------------------


def test_a_spend_retried_after_a_dropped_answer_is_charged_once(make, daemon, admin):
    agent = unique("a")
    admin.set_budget("agent", agent, 100, mode="cap")
    with Proxy(daemon.url) as proxy:
        c = make(proxy.url, role="executor")
        proxy.drops = 1  # the daemon charges the first try; its answer is lost
        outcome = c.spend(Decimal("0.4"), agent_id=agent)
        assert outcome.spend.duplicate is True
        assert [(s.spent_usd_micros, s.crossed) for s in outcome.scopes] == [(4000, "none")]
        sent = proxy.bodies()
    assert len(sent) == 2 and sent[0] == sent[1]  # the same idempotency key both times
    assert b'"costUsdCents":0.4' in body_of(proxy.requests[0])
    assert charges(daemon.db_path, agent) == [(sent[0]["idempotencyKey"], 4000)]
    [budget] = [b for b in admin.list_budgets() if b.scope_id == agent]
    assert budget.spent_usd_micros == 4000
    assert len(c.sleeps) == 1


def test_a_503_is_retried_with_bounded_growing_waits_then_raised(make, daemon):
    agent = unique("a")
    with Proxy(daemon.url) as proxy:
        c = make(proxy.url, role="executor")
        proxy.unavailable = 100
        with pytest.raises(client.Unavailable) as refused:
            c.spend(1, agent_id=agent)
        assert refused.value.status == 503 and refused.value.code == "store_unavailable"
        assert len(proxy.requests) == 3  # Retry().attempts
        assert 0.1 <= c.sleeps[0] <= 0.2 and 0.2 <= c.sleeps[1] <= 0.4
        proxy.unavailable = 2
        assert c.spend(1, agent_id=agent).spend.duplicate is False
        assert len(proxy.requests) == 6

        patient = make(
            proxy.url, role="executor", retry=client.Retry(attempts=6, base_s=1, cap_s=3)
        )
        proxy.unavailable = 5
        assert patient.spend(1, agent_id=agent).spend.duplicate is False
    ceilings = [1, 2, 3, 3, 3]
    assert all(c / 2 <= s <= c for s, c in zip(patient.sleeps, ceilings, strict=True))
    assert [micros for _, micros in charges(daemon.db_path, agent)] == [10_000, 10_000]


def test_a_daemon_that_cannot_be_reached_is_tried_three_times(make):
    c = make(closed_port_url())
    with pytest.raises(client.Unreachable) as failed:
        c.delete_budget("agent", "a1")  # never sent, so retried although not replayable
    assert isinstance(failed.value, client.Unavailable) and failed.value.status is None
    assert "DELETE /api/governance/budgets/agent/a1" in str(failed.value)
    assert len(c.sleeps) == 2


def test_an_answer_of_4xx_is_never_retried(make, daemon):
    with Proxy(daemon.url) as proxy:
        c = make(proxy.url)
        with pytest.raises(client.InvalidRequest):
            c.set_budget("agent", "a1", 0)
        with pytest.raises(client.NotFound):
            c.delete_budget("agent", unique("nobody"))
        with pytest.raises(client.Unauthorized):
            make(proxy.url, role="cgk_wrong").list_budgets()
        assert len(proxy.requests) == 3
    assert c.sleeps == []


def test_a_call_unsafe_to_replay_is_not_sent_again_after_a_dropped_answer(make, daemon, admin):
    agent = unique("a")
    with pytest.raises(client.ApprovalDenied) as opened:
        admin.request_tool_approval("rm", agent, wait_ms=0)
    approval_id = opened.value.approval_id
    with Proxy(daemon.url) as proxy:
        c = make(proxy.url, role="leader")
        proxy.drops = 1
        with pytest.raises(client.Unreachable):
            c.resolve_approval(approval_id, "allow_once")
        assert len(proxy.requests) == 1
    assert c.sleeps == []
    assert admin.get_approval(approval_id).status == "allow_once"  # it had landed


def test_concurrent_threads_share_one_blocking_client(daemon, keys):
    agent = unique("a")
    with client.Client(daemon.url, keys["executor"]) as c:

        def spend(n: int) -> None:
            for _ in range(20):
                assert c.spend(Decimal("0.5"), agent_id=agent).spend.duplicate is False

        threads = [threading.Thread(target=spend, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sum(micros for _, micros in charges(daemon.db_path, agent)) == 80 * 5000


# --- errors and money ---------------------------------------------------------------------


def test_every_refusal_raises_its_own_type(make, daemon, admin):
    with pytest.raises(client.Unauthorized) as no_key:
        make(daemon.url, role="").list_budgets()
    assert no_key.value.status == 401 and no_key.value.code == "unauthorized"
    assert no_key.value.request_id and no_key.value.request_id.startswith("cgc-")
    with pytest.raises(client.Forbidden) as forbidden:
        make(daemon.url, role="executor").list_budgets()
    assert forbidden.value.status == 403 and "executor" in forbidden.value.message
    c = make(daemon.url)
    with pytest.raises(client.NotFound):
        c.get_approval("apr_0000000000000000")
    with pytest.raises(client.InvalidRequest) as invalid:
        c.set_budget("agent", "a1", 0)
    assert invalid.value.details == [
        {"field": "limitUsdCents", "problem": "Input should be greater than 0"}
    ]
    with pytest.raises(client.InvalidRequest):
        c.delete_budget("galaxy", "a1")  # type: ignore[arg-type]

    agent = unique("a")
    with pytest.raises(client.ApprovalDenied) as opened:
        c.request_tool_approval("rm", agent, wait_ms=0)
    with pytest.raises(client.Forbidden, match="the key that asked"):
        c.resolve_approval(opened.value.approval_id, "allow_once")
    lead = make(daemon.url, role="leader")
    lead.resolve_approval(opened.value.approval_id, "deny")
    with pytest.raises(client.Conflict) as twice:
        lead.resolve_approval(opened.value.approval_id, "allow_once")
    assert twice.value.status == 409

    c.spend(1, agent_id=agent, idempotency_key="k-" + agent)
    with pytest.raises(client.IdempotencyConflict) as other_body:
        c.spend(2, agent_id=agent, idempotency_key="k-" + agent)
    assert isinstance(other_body.value, client.Conflict)
    assert c.spend(1, agent_id=agent, idempotency_key="k-" + agent).spend.duplicate is True


def test_statuses_the_daemon_does_not_send_yet_map_too():
    body = {"error": "quota_override_too_high", "message": "at most 100x", "details": {"x": 1}}
    unprocessable = client.errors.from_response(422, body, "rid")
    assert isinstance(unprocessable, client.Unprocessable)
    assert (unprocessable.code, unprocessable.details, unprocessable.request_id) == (
        "quota_override_too_high",
        {"x": 1},
        "rid",
    )
    assert str(unprocessable) == "422 quota_override_too_high: at most 100x"
    broken = client.errors.from_response(502, "<html>bad gateway</html>")
    assert isinstance(broken, client.ServerError) and "bad gateway" in broken.message
    assert type(client.errors.from_response(418, {})) is client.ClawguardError
    assert isinstance(client.errors.from_response(413, {}), client.InvalidRequest)


def test_amounts_are_written_from_their_decimal_digits(make, daemon):
    agent = unique("a")
    with Proxy(daemon.url) as proxy:
        c = make(proxy.url, role="executor")
        # Through a float this is 5e-05 cents, half a micro, which rounds up to 1.
        assert (
            c.spend(Decimal("0.00004999999999999999999"), agent_id=agent).spend.cost_usd_micros == 0
        )
        assert c.spend(Decimal("0.00025"), agent_id=agent).spend.cost_usd_micros == 3
        assert c.spend(Decimal("1E+2"), agent_id=agent).spend.cost_usd_micros == 1_000_000
        assert c.spend(7, agent_id=agent).spend.cost_usd_micros == 70_000
        sent = [body_of(r) for r in proxy.requests]
        assert b'"costUsdCents":0.00004999999999999999999' in sent[0]
        for wrong, error in (
            (0.5, TypeError),
            (True, TypeError),
            (Decimal("NaN"), ValueError),
            (Decimal("Infinity"), ValueError),
        ):
            with pytest.raises(error):
                c.spend(wrong, agent_id=agent)
        with pytest.raises(TypeError):
            c.set_budget("agent", agent, 10.0)  # type: ignore[arg-type]
        assert len(proxy.requests) == 4  # nothing was sent for the refused amounts
        with pytest.raises(client.InvalidRequest):
            c.spend(-1, agent_id=agent)


# --- the step helper ----------------------------------------------------------------------


def test_a_step_is_refused_before_it_runs_when_its_scope_is_paused(daemon, keys, admin):
    agent = unique("a")
    admin.set_budget("agent", agent, 10, mode="cap")
    admin.spend(10, agent_id=agent)
    ran = False
    with (
        client.Client(daemon.url, keys["executor"]) as c,
        pytest.raises(client.BudgetPaused) as paused,
        c.step(agent_id=agent) as step,
    ):
        ran = True
        step.cost(1)
    assert not ran
    assert paused.value.reason == "budget_paused:agent" and paused.value.outcome is None
    assert [s.scope_id for s in paused.value.paused] == [agent]
    assert len(charges(daemon.db_path, agent)) == 1


def test_a_step_records_its_cost_then_raises_when_the_spend_stops(daemon, keys, admin):
    agent, team = unique("a"), unique("t")
    admin.set_budget("team", team, 10, mode="cap")
    with client.Client(daemon.url, keys["executor"]) as c:
        with c.step(agent_id=agent, team_id=team, task_id="task-1") as first:
            first.cost(Decimal("4.5"), model="m", input_tokens=3, output_tokens=4)
        assert first.outcome is not None and first.outcome.stop is False
        with (
            pytest.raises(client.BudgetPaused) as stopped,
            c.step(agent_id=agent, team_id=team) as second,
        ):
            second.cost(6)
        assert stopped.value.reason == "budget_paused:team"
        assert stopped.value.outcome == second.outcome and second.outcome.stop is True
        assert c.preflight(team_id=team).allowed is False
        with c.step(agent_id=agent) as free:  # no cost named: nothing recorded
            pass
        assert free.outcome is None
    assert [micros for _, micros in charges(daemon.db_path, agent)] == [45_000, 60_000]


def test_a_failed_step_still_records_what_it_spent(daemon, keys):
    agent = unique("a")
    with client.Client(daemon.url, keys["executor"]) as c:
        with pytest.raises(RuntimeError, match="parse"), c.step(agent_id=agent) as step:
            step.cost(2)
            raise RuntimeError("could not parse the model's answer")
        assert step.outcome is not None and step.outcome.spend.cost_usd_micros == 20_000
    with (
        client.Client(closed_port_url(), sleep=lambda s: None) as gone,
        pytest.raises(client.Unreachable),
        gone.step(agent_id=agent),
    ):
        pass
    assert len(charges(daemon.db_path, agent)) == 1


def test_a_preflight_that_cannot_reach_the_store_is_unavailable_not_paused():
    refused = records.Preflight(allowed=False, reason="store_unavailable", scopes=[])
    with pytest.raises(client.Unavailable) as failed:
        api.check_preflight(refused)
    assert not isinstance(failed.value, client.BudgetPaused)


async def test_the_async_step_helper(daemon, keys, admin):
    agent = unique("a")
    admin.set_budget("agent", agent, 5, mode="cap")
    async with client.AsyncClient(daemon.url, keys["executor"]) as c:
        with pytest.raises(ValueError, match="boom"):
            async with c.step(agent_id=agent) as failing:
                failing.cost(1)
                raise ValueError("boom")
        assert failing.outcome is not None
        with pytest.raises(client.BudgetPaused) as stopped:
            async with c.step(agent_id=agent) as step:
                await asyncio.sleep(0)
                step.cost(4)
        assert stopped.value.outcome is not None and stopped.value.outcome.stop is True
        ran = False
        with pytest.raises(client.BudgetPaused) as refused:
            async with c.step(agent_id=agent):
                ran = True
        assert not ran and refused.value.outcome is None
    assert [micros for _, micros in charges(daemon.db_path, agent)] == [10_000, 40_000]


# --- approvals ----------------------------------------------------------------------------


def test_a_request_waits_for_the_leaders_decision(make, daemon, keys):
    c = make(daemon.url, role="executor")
    allowed, denied = unique("a"), unique("a")
    leader = resolve_when_pending(daemon.url, keys["leader"], allowed, "allow_once")
    handshake = c.request_tool_approval("deploy", allowed, wait_ms=10_000)
    leader.join()
    assert handshake.resolution == "allow_once" and handshake.approval_id

    leader = resolve_when_pending(daemon.url, keys["leader"], denied, "deny")
    with pytest.raises(client.ApprovalDenied) as refused:
        c.request_tool_approval("deploy", denied, wait_ms=10_000)
    leader.join()
    assert refused.value.resolution == "deny" and refused.value.approval_id


def test_a_long_poll_whose_answer_is_dropped_re_attaches(make, daemon, keys, admin):
    agent = unique("a")
    with pytest.raises(client.ApprovalDenied) as opened:
        admin.request_tool_approval("deploy", agent, wait_ms=0)
    approval_id = opened.value.approval_id
    with Proxy(daemon.url) as proxy:
        c = make(proxy.url, role="executor")
        proxy.drops = 1  # the parked GET's answer, carrying the decision, is lost
        leader = resolve_when_pending(daemon.url, keys["leader"], agent, "allow_once")
        decided = c.wait_for_approval(approval_id, wait_ms=10_000)
        leader.join()
        assert decided.status == "allow_once"
        gets = [r.split(b" ")[:2] for r in proxy.requests]
    assert len(gets) == 2 and all(method == b"GET" for method, _ in gets)
    assert all(
        path.startswith(f"/api/tools/approvals/{approval_id}?waitMs=".encode()) for _, path in gets
    )


def test_an_expired_or_undecided_approval_is_a_denial():
    row = {
        "id": "apr_1",
        "toolName": "rm",
        "agentId": "a1",
        "argsSummary": None,
        "reason": None,
        "taskId": None,
        "tenantId": None,
        "createdAt": 1,
        "expiresAt": 2,
        "resolvedAt": None,
        "resolvedBy": None,
    }
    for status, resolution in (("expired", "expired"), ("pending", "timeout"), ("deny", "deny")):
        with pytest.raises(client.ApprovalDenied) as denied:
            api.settled(records.Approval.model_validate({**row, "status": status}))
        assert (denied.value.resolution, denied.value.approval_id) == (resolution, "apr_1")
    allowed = records.Approval.model_validate({**row, "status": "allow_once"})
    assert api.settled(allowed) is allowed
    with pytest.raises(client.ApprovalDenied):  # the daemon's fail-closed answer
        api.allowed(records.Handshake(resolution="deny"))


def test_the_gate_documents_round_trip(make, daemon):
    c = make(daemon.url)
    tool = unique("http.get")
    c.register_tool(tool, ["external_comm"])
    policy = c.create_tool_policy(tool, True, restrictions={"max_response_size_kb": 8})
    assert policy in c.list_tool_policies()
    override = c.create_role_override("dev", tool, False)
    assert override in c.list_role_overrides()
    c.delete_role_override(override["id"])
    c.delete_tool_policy(policy["id"])
    made = c.create_guardrail({"name": unique("p").lower(), "rules": [{"decision": "ALLOW"}]},
                              idempotency_key=unique("k"))
    changed = c.update_guardrail(made["id"], {"rules": [{"tool": tool, "decision": "ALERT"}]})
    assert changed["version"] == 2
    assert c.rollback_guardrail(made["id"], 1, message="back")["new_version"] == 3
    assert [v["version"] for v in c.guardrail_versions(made["id"])] == [3, 2, 1]
    assert c.delete_guardrail(made["id"])["deleted"] is True
