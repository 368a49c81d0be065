"""A decision announced by another daemon wakes the callers parked here with the row it carried."""

from __future__ import annotations

import asyncio

from clawguard.http import state

TOOLS = "/api/tools/approvals"


async def test_a_carried_decision_wakes_parked_callers_without_reading_the_row(client):
    approvals = client.app[state.APPROVALS]
    asking = asyncio.create_task(client.post(TOOLS, json={"toolName": "t.x", "agentId": "a1"}))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while approvals.parked != 1:
        assert loop.time() < deadline, "the caller never parked"
        await asyncio.sleep(0.002)
    [row] = await client.app[state.STORE].list_pending_approvals(client.app[state.CLOCK](), 10)
    # Decided elsewhere: the row here is still pending, so only the carried one can answer.
    decided = row.model_copy(update={"status": "deny", "resolved_at": row.created_at})
    approvals.heard(row.id, decided)
    resp = await asyncio.wait_for(asking, 1)
    assert await resp.json() == {"resolution": "deny", "approvalId": row.id}
    assert approvals.parked == 0 and approvals.watched == 0
