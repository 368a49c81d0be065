"""GET /api/tools/approvals a page at a time: bounded answers from a long pending queue."""

from __future__ import annotations

from typing import Any

from clawguard.client import AsyncClient
from clawguard.core import approvals, principals, records
from clawguard.http import state, wire

TOOLS = "/api/tools/approvals"


async def open_pending(client: Any, clock: Any, count: int, agents: int = 3) -> list[str]:
    """`count` pending rows, three to a millisecond; their ids newest first."""
    db = client.app[state.STORE]
    for n in range(count):
        new = records.NewApproval(id=f"apr_{n:016x}", tool_name="t.deploy",
                                  agent_id=f"a{n % agents}", args_summary=None, reason=None,
                                  task_id=None, tenant_id=None, requested_by_key=None,
                                  args_fingerprint=approvals.args_fingerprint(None))
        await db.open_approval(new, 3_600_000)
        if n % 3 == 2:
            clock.advance(1)
    return [f"apr_{n:016x}" for n in reversed(range(count))]


async def pages(client: Any, **params: Any) -> list[dict[str, Any]]:
    answers, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        resp = await client.get(TOOLS, params=query)
        assert resp.status == 200, await resp.text()
        answers.append(await resp.json())
        cursor = answers[-1]["nextCursor"]
        if cursor is None:
            return answers


async def test_pages_of_100_by_default_newest_first_to_a_null_cursor(client, clock):
    newest_first = await open_pending(client, clock, 250)
    answers = await pages(client)
    assert [len(a["approvals"]) for a in answers] == [100, 100, 50]
    assert [row["id"] for a in answers for row in a["approvals"]] == newest_first
    assert all(a["ok"] for a in answers)


async def test_a_limit_pages_by_that_many_and_more_than_1000_is_1000(client, clock):
    newest_first = await open_pending(client, clock, 1_005, agents=1)
    assert [len(a["approvals"]) for a in await pages(client, limit="7")][:2] == [7, 7]
    answers = await pages(client, limit="5000")
    assert [len(a["approvals"]) for a in answers] == [1_000, 5]
    assert [row["id"] for a in answers for row in a["approvals"]] == newest_first
    exact = await pages(client, limit="201")  # the last page is full: no empty page after it
    assert [len(a["approvals"]) for a in exact] == [201] * 5


async def test_a_page_leaves_out_what_was_decided_since_and_never_repeats(client, clock):
    newest_first = await open_pending(client, clock, 6)
    first = await (await client.get(TOOLS, params={"limit": "2"})).json()
    resolved = await client.post(f"{TOOLS}/{newest_first[3]}/resolve", json={"decision": "deny"})
    assert resolved.status == 200
    rest = await pages(client, limit="2", cursor=first["nextCursor"])
    seen = [row["id"] for row in first["approvals"]] + [
        row["id"] for a in rest for row in a["approvals"]]
    assert seen == [i for i in newest_first if i != newest_first[3]]


async def test_a_bad_limit_or_cursor_is_400_in_the_one_error_shape(client, clock):
    await open_pending(client, clock, 3)
    for params in ({"limit": "0"}, {"limit": "-1"}, {"limit": "ten"}, {"limit": "1.5"},
                   {"cursor": "not a cursor"}, {"cursor": "bm9wZQ"}, {"cursor": "x" * 401}):
        resp = await client.get(TOOLS, params=params)
        assert resp.status == 400, params
        body = await resp.json()
        assert set(body) == {"error", "message", "details"} and body["error"] == "invalid_input"


def test_a_cursor_names_its_boundary_and_nothing_else():
    key = records.PendingKey(1_800_000_000_123, "apr_00ab")
    cursor = wire.pending_cursor(key)
    assert wire.pending_key(cursor) == key
    assert "apr_" not in cursor and "=" not in cursor  # opaque, and a clean query value


async def test_a_leaders_pages_are_full_pages_of_its_own_agents(client, clock):
    newest_first = await open_pending(client, clock, 30, agents=5)
    lead = principals.Principal("key_lead", "lead", "leader", leads=frozenset({"a1", "a3"}))
    theirs = [i for i in newest_first if int(i[4:], 16) % 5 in (1, 3)]
    approvals, seen, after = client.app[state.APPROVALS], [], None
    while True:
        page, after = await approvals.pending(lead, 4, after)
        seen.append([row.id for row in page])
        if after is None:
            break
    assert [len(page) for page in seen] == [4, 4, 4]
    assert [i for page in seen for i in page] == theirs
    nobody = principals.Principal("key_none", "none", "leader", leads=frozenset())
    assert await approvals.pending(nobody, 4) == ([], None)


async def test_the_client_reads_a_page_and_its_pager_reads_them_all(client, clock):
    newest_first = await open_pending(client, clock, 25)
    async with AsyncClient(str(client.make_url(""))) as api:
        page = await api.pending_page(limit=10)
        assert [a.id for a in page.approvals] == newest_first[:10]
        after = await api.pending_page(limit=10, cursor=page.next_cursor)
        assert [a.id for a in after.approvals] == newest_first[10:20]
        assert [a.id for a in await api.pending_approvals(page_size=10)] == newest_first
        assert (await api.pending_page()).next_cursor is None
