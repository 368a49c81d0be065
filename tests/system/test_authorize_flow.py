"""Authorize end to end on a real daemon with keys on: the executor's `guarded` step for each
verdict (ALLOW runs and records its spend, BLOCK and an undecided PENDING raise
ActionBlocked, an approval decided by a leader in another process lets the waiting step
run), a step's estimate held and settled by its cost, the idempotent re-ask across a
daemon restart, and the operator's CLI reading the receipt and the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from daemon import Daemon, role_keys

from clawguard import client


@pytest.fixture
def keyed(tmp_path: Path):
    db = tmp_path / "authorize.db"
    keys = role_keys(db)
    with Daemon(db, auth_mode="keys") as daemon:
        yield daemon, keys


def setup(ops: client.Client) -> None:
    ops.register_tool("crm.export", ["pii"])
    ops.create_tool_policy("crm.export", True, restrictions={"max_response_size_kb": 256})
    ops.register_tool("mail.send", ["external_comm"])
    ops.create_tool_policy("mail.send", True)
    ops.create_guardrail({"name": "crm", "rules": [
        {"tool": "crm.export", "decision": "ALLOW", "max_value": 1000},
        {"tool": "mail.send", "decision": "ALERT", "sticky": False}]})
    ops.set_approval_settings({"require_approval_for_external_comm": True})


def leader_process(url: str, key: str, decision: str) -> subprocess.Popen[str]:
    """Another process, as a leader's would be: waits for the pending request, decides it."""
    script = (
        "import sys, time\n"
        "from clawguard import client\n"
        "c = client.Client(sys.argv[1], sys.argv[2])\n"
        "for _ in range(200):\n"
        "    pending = c.pending_approvals()\n"
        "    if pending:\n"
        "        c.resolve_approval(pending[0].id, sys.argv[3])\n"
        "        break\n"
        "    time.sleep(0.05)\n"
        "else:\n"
        "    sys.exit('no pending approval came')\n"
    )
    return subprocess.Popen([sys.executable, "-c", script, url, key, decision], text=True)


def test_each_verdict_through_guarded_and_the_operator_cli(keyed) -> None:
    daemon, keys = keyed
    ops = client.Client(daemon.url, keys["operator"])
    agent = client.Client(daemon.url, keys["executor"])
    try:
        _each_verdict(daemon, keys, ops, agent)
    finally:
        ops.close()
        agent.close()


def _each_verdict(daemon: Daemon, keys: dict[str, str], ops: client.Client,
                  agent: client.Client) -> None:
    setup(ops)

    # ALLOW: the step runs with its obligations and its cost is recorded.
    with agent.guarded("crm.export", agent_id="a1", team_id="t1", value=10) as step:
        assert step.verdict is not None and step.verdict.allowed
        assert step.verdict.obligations == {"max_response_size_kb": 256}
        step.cost(Decimal("0.4"))
    assert step.outcome is not None and step.outcome.spend.cost_usd_micros == 4000
    allowed_receipt = step.verdict.receipt_id

    # BLOCK: over max_value; the block never runs.
    ran = []
    with pytest.raises(client.ActionBlocked) as blocked, agent.guarded(
            "crm.export", agent_id="a1", value=5000):
        ran.append(True)
    assert ran == [] and blocked.value.verdict.decision == "BLOCK"

    # PENDING, decided by a leader in another process while the step waits.
    leader = leader_process(daemon.url, keys["leader"], "allow_once")
    with agent.guarded("mail.send", agent_id="a1", args={"to": "x"}, wait_ms=20_000) as step:
        assert step.verdict is not None and step.verdict.allowed
        assert step.verdict.approval is not None
        assert step.verdict.approval["status"] == "approved"
    assert leader.wait(timeout=30) == 0

    # PENDING and nobody decides within the wait: ActionBlocked with PENDING.
    with pytest.raises(client.ActionBlocked) as undecided, agent.guarded(
            "mail.send", agent_id="a1", wait_ms=300):
        ran.append(True)
    assert ran == [] and undecided.value.verdict.decision == "PENDING"

    env = {**os.environ, "CLAWGUARD_URL": daemon.url, "CLAWGUARD_API_KEY": keys["operator"]}
    shown = subprocess.run([sys.executable, "-m", "clawguard", "receipts", "show",
                            allowed_receipt], env=env, capture_output=True, text=True,
                           check=True)
    receipt = json.loads(shown.stdout)
    assert receipt["decision"] == "ALLOW" and receipt["request"]["tool"] == "crm.export"
    assert receipt["access"]["decidedBy"] == "tool_policy"
    report = subprocess.run([sys.executable, "-m", "clawguard", "report", "--json"], env=env,
                            capture_output=True, text=True, check=True)
    figures = json.loads(report.stdout)
    assert (figures["total_executions"], figures["gated_executions"]) == (4, 2)
    assert (figures["approved"], figures["rejected"]) == (1, 0)


def test_a_pending_verdict_outlives_a_restart_and_is_re_asked_by_its_key(keyed) -> None:
    daemon, keys = keyed
    with client.Client(daemon.url, keys["operator"]) as ops:
        setup(ops)
    with client.Client(daemon.url, keys["executor"]) as agent:
        first = agent.authorize("mail.send", agent_id="a2", wait_ms=0,
                                idempotency_key="send-42")
    assert first.decision == "PENDING" and first.approval is not None
    daemon.stop()
    daemon.start()
    decided: list[str] = []

    def decide() -> None:
        time.sleep(0.3)
        with client.Client(daemon.url, keys["leader"]) as lead:
            lead.resolve_approval(first.approval["approvalId"], "deny")  # type: ignore[index]
        decided.append("deny")

    thread = threading.Thread(target=decide)
    thread.start()
    with client.Client(daemon.url, keys["executor"]) as agent:
        again = agent.authorize("mail.send", agent_id="a2", wait_ms=10_000,
                                idempotency_key="send-42")
    thread.join()
    assert decided == ["deny"]
    assert again.receipt_id == first.receipt_id and again.decision == "BLOCK"
    with client.Client(daemon.url, keys["operator"]) as ops:
        assert ops.enforcement_check("agent", "a2")["allowed"] is True


def test_guarded_holds_its_estimate_and_the_cost_commits_it(keyed) -> None:
    daemon, keys = keyed
    with client.Client(daemon.url, keys["operator"]) as ops:
        setup(ops)
        ops.set_budget("agent", "a3", 100, mode="cap")
    ran: list[bool] = []
    with client.Client(daemon.url, keys["executor"]) as agent:
        # The cost commits the hold: the actual cost is spent, the rest of the estimate freed.
        with agent.guarded("crm.export", agent_id="a3", value=1,
                           estimate_usd_cents=60) as step:
            assert step.verdict is not None and step.verdict.hold_id is not None
            assert agent.get_hold(step.verdict.hold_id).status == "held"
            step.cost(25)
        assert step.outcome is not None and step.outcome.spend.cost_usd_micros == 250_000
        assert agent.get_hold(step.verdict.hold_id).status == "committed"

        # A step that fails without naming a cost releases its hold.
        with pytest.raises(RuntimeError), agent.guarded(
                "crm.export", agent_id="a3", value=1, estimate_usd_cents=60) as failing:
            raise RuntimeError("the tool broke")
        assert failing.verdict is not None and failing.verdict.hold_id is not None
        assert agent.get_hold(failing.verdict.hold_id).status == "released"

        # 25 spent of 100: an estimate of 80 cannot be held, so the step never runs.
        with pytest.raises(client.ActionBlocked) as blocked, agent.guarded(
                "crm.export", agent_id="a3", value=1, estimate_usd_cents=80):
            ran.append(True)
        assert ran == [] and blocked.value.verdict.decision == "BLOCK"
        assert blocked.value.verdict.reasons[-1] == "budget_exhausted:agent"
        assert blocked.value.verdict.hold_id is None
    with client.Client(daemon.url, keys["operator"]) as ops:
        [budget] = [b for b in ops.list_budgets() if b.scope_id == "a3"]
        assert budget.spent_usd_micros == 250_000
