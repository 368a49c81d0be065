"""The writer's batches are invisible: a batch of writes ends as the same writes one by one.

The writer runs every write waiting in one transaction, spends through budget
rows read once and written back once (sqlite/budgets.py). These tests put
spends, failing spends and budget changes into ONE batch (the batch size is
checked) and compare every answer and the stored rows with the same writes
committed one at a time on another file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from conftest import FakeClock

from clawguard.core import budgets, commands, errors, principals, records
from clawguard.runtime import config
from clawguard.store import sqlite

Op = Callable[[sqlite.SQLiteStore], Awaitable[Any]]
OPERATOR = principals.Principal("key_ops", "ops", "operator")


def spend(agent: str | None, cents: str, key: str | None = None, team: str | None = "t1") -> Op:
    body = {"agentId": agent, "teamId": team, "costUsdCents": Decimal(cents),
            "idempotencyKey": key}
    request = commands.SpendRequest.model_validate({k: v for k, v in body.items() if v is not None})
    ledger_key = budgets.ledger_key("key_exec", key)
    return lambda db: db.record_spend(request, budgets.fingerprint(request), ledger_key)


def set_budget(scope: records.Scope, scope_id: str, cents: int, mode: records.Mode) -> Op:
    request = commands.BudgetSet.model_validate(
        {"scope": scope, "scopeId": scope_id, "limitUsdCents": cents, "mode": mode})
    return lambda db: db.set_budget(request, OPERATOR)


def resume(scope: records.Scope, scope_id: str, grace: int | None) -> Op:
    return lambda db: db.resume_budget(scope, scope_id, grace, OPERATOR)


def delete(scope: records.Scope, scope_id: str) -> Op:
    return lambda db: db.delete_budget(scope, scope_id, OPERATOR)


def answer(outcome: Any) -> Any:
    """An outcome without what differs between two files by design: random budget ids."""
    if isinstance(outcome, errors.ClawguardError):
        return (type(outcome).__name__, outcome.message)
    if isinstance(outcome, records.Model):
        return without_budget_ids(outcome.model_dump())
    return outcome


def without_budget_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_budget_ids(v) for k, v in value.items()
                if not (k == "id" and isinstance(v, str))}
    if isinstance(value, list):
        return [without_budget_ids(v) for v in value]
    return value


def stored(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {
            "budgets": list(conn.execute(
                "SELECT scope, scope_id, limit_cents, spent_micros, status, mode, updated_at"
                " FROM budgets ORDER BY scope, scope_id")),
            "spends": list(conn.execute(
                "SELECT id, idempotency_key, agent_id, team_id, cost_micros, scopes FROM spends"
                " ORDER BY id")),
            "charges": list(conn.execute(
                "SELECT b.scope, b.scope_id, c.spend_id, c.micros FROM spend_charges c"
                " JOIN budgets b ON b.id = c.budget_id ORDER BY c.spend_id, b.scope")),
            "audit": list(conn.execute("SELECT event_type, action FROM audit ORDER BY seq")),
        }
    finally:
        conn.close()


async def run(path: Path, ops: list[Op], together: bool) -> tuple[list[Any], list[int]]:
    db = sqlite.SQLiteStore(config.StorageConfig(path=str(path)), FakeClock())
    batches: list[int] = []
    db.batch_observer = lambda size, _seconds: batches.append(size)
    await db.open()
    try:
        if together:  # each enqueues in this loop turn; the writer takes them all at once
            outcomes = await asyncio.gather(*(op(db) for op in ops), return_exceptions=True)
        else:
            outcomes = []
            for op in ops:
                try:
                    outcomes.append(await op(db))
                except errors.ClawguardError as exc:
                    outcomes.append(exc)
    finally:
        await db.close()
    return [answer(o) for o in outcomes], batches


async def assert_batch_is_invisible(tmp_path: Path, setup: list[Op], ops: list[Op]) -> None:
    for name in ("together", "one_by_one"):
        await run(tmp_path / f"{name}.db", setup, together=False)
    together, batches = await run(tmp_path / "together.db", ops, together=True)
    one_by_one, _ = await run(tmp_path / "one_by_one.db", ops, together=False)
    assert batches == [len(ops)]  # the test is only worth anything if it was one batch
    assert together == one_by_one
    assert stored(tmp_path / "together.db") == stored(tmp_path / "one_by_one.db")
    for path in (tmp_path / "together.db", tmp_path / "one_by_one.db"):
        assert all(spent == ledger for _, spent, ledger in sqlite.ledger_check(str(path)))


async def test_spends_sharing_rows_crossings_and_failures_in_one_batch(tmp_path):
    setup = [set_budget("agent", "a1", 100, "cap"), set_budget("team", "t1", 150, "warn")]
    ops = [
        spend("a1", "50", "k1"),
        spend("a2", "40", "k2"),  # another chain with the same team row
        spend("a1", "10", "k1"),  # k1 with another body: 409, charges nothing
        spend("a1", "35"),  # agent crosses 80%, team crosses 80%
        spend("a1", "50", "k1"),  # a replay: duplicate, charges nothing
        spend("a1", "10"),  # agent crosses 100% and pauses; team crosses 100%, soft-capped
        spend("a2", "1"),  # the team row as the spends above left it
        spend(None, "2", team="t2"),  # no budget in its chain: ledger only
    ]
    await assert_batch_is_invisible(tmp_path, setup, ops)


async def test_budget_changes_between_spends_in_one_batch(tmp_path):
    setup = [set_budget("agent", "a1", 100, "cap"), set_budget("team", "t1", 1_000, "warn")]
    ops = [
        spend("a1", "60"),
        set_budget("agent", "a1", 50, "cap"),  # under its spend: paused
        spend("a1", "1"),  # still charged, told to stop
        resume("agent", "a1", 30),  # grace above the spend
        spend("a1", "5"),
        set_budget("team", "t1", 70, "cap"),
        spend("a1", "3"),  # the team cap fires
        delete("team", "t1"),
        spend("a1", "2"),  # only the agent row now
        set_budget("team", "t1", 10, "warn"),  # a new row starts at zero
        spend("a1", "4"),
        resume("agent", "a1", None),
        spend("a1", "1"),
    ]
    await assert_batch_is_invisible(tmp_path, setup, ops)
