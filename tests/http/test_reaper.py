"""The reaper: its background sweep runs with the app; a sweep expires each row once."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import dump

from clawguard.http import application, state
from clawguard.runtime import config

TOOLS = "/api/tools/approvals"


@pytest.fixture
def cfg(cfg):
    """Only the test sweeps: a background sweep could take the row a test advanced past."""
    return cfg.model_copy(update={"approvals": config.ApprovalsConfig(sweep_ms=3_600_000)})


def stored_status(db_path, approval_id):
    conn = sqlite3.connect(db_path)
    try:
        row = conn.execute("SELECT status FROM approvals WHERE id = ?", (approval_id,)).fetchone()
        return row[0]
    finally:
        conn.close()


async def test_the_background_sweep_writes_expiry_on_its_own(cfg, db_path):
    # cfg's hour-long sweep is replaced here: this test is about the background task.
    """Wall clock, a 50 ms TTL and a 20 ms sweep: no test code sweeps, the app's task does."""
    quick = cfg.model_copy(update={"approvals": config.ApprovalsConfig(ttl_ms=50, sweep_ms=20)})
    async with TestClient(TestServer(application.create_app(quick), host="127.0.0.1")) as client:
        resp = await client.post(TOOLS, json={"toolName": "rm", "agentId": "a1", "waitMs": 0})
        approval_id = (await resp.json())["approvalId"]
        assert stored_status(db_path, approval_id) == "pending"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while stored_status(db_path, approval_id) != "expired":
            assert loop.time() < deadline, "the reaper never wrote the expiry"
            await asyncio.sleep(0.01)
        resp = await client.get("/api/governance/audit", params={"eventType": "approval"})
        actions = [row["action"] for row in (await resp.json())["audit"]]
        assert actions == ["approval.expired", "approval.requested"]


async def test_a_sweep_with_nothing_due_changes_nothing(client, clock, db_path):
    resp = await client.post(TOOLS, json={"toolName": "rm", "agentId": "a1", "waitMs": 0})
    assert resp.status == 200
    before = dump(db_path)
    batches = client.app[state.METRICS].store_batch_size.collect()[0]
    batches_before = next(s.value for s in batches.samples if s.name.endswith("_count"))
    clock.advance(config.ApprovalsConfig().ttl_ms - 1)  # one millisecond short of expiry
    assert await client.app[state.REAPER].sweep() == 0
    assert dump(db_path) == before
    batches = client.app[state.METRICS].store_batch_size.collect()[0]
    assert next(s.value for s in batches.samples if s.name.endswith("_count")) == batches_before

    clock.advance(1)
    assert await client.app[state.REAPER].sweep() == 1
    assert await client.app[state.REAPER].sweep() == 0
