"""Budgets and the spend ledger, inside a write transaction (see writer.py)."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterable
from typing import Any

from clawguard.core import commands, errors, money, records
from clawguard.store.sqlite import audit_log

# The budget rows of one scope chain (agent, mission, team, tenant ids as ?1..?4).
CHAIN_WHERE = (
    " WHERE (scope = 'agent' AND scope_id = ?1) OR (scope = 'mission' AND scope_id = ?2)"
    " OR (scope = 'team' AND scope_id = ?3) OR (scope = 'tenant' AND scope_id = ?4)"
)
CHAIN_ORDER = {scope: index for index, scope in enumerate(records.SCOPES)}
BUDGET_COLUMNS = (
    "id, scope, scope_id, limit_cents, spent_micros, held_micros, status, mode,"
    " created_at, updated_at"
)


def budget_from_row(row: Iterable[Any]) -> records.Budget:
    bid, scope, scope_id, limit, spent, held, status, mode, created, updated = row
    return records.Budget(
        id=bid, scope=scope, scope_id=scope_id, limit_usd_cents=limit,
        spent_usd_cents=money.micros_to_cents(spent), spent_usd_micros=spent,
        held_usd_cents=money.micros_to_cents(held), status=status, mode=mode,
        created_at=created, updated_at=updated,
    )


def scope_state(budget: records.Budget, crossed: money.Crossed) -> records.ScopeState:
    return records.ScopeState(
        scope=budget.scope, scope_id=budget.scope_id, status=budget.status, mode=budget.mode,
        spent_usd_cents=budget.spent_usd_cents, spent_usd_micros=budget.spent_usd_micros,
        limit_usd_cents=budget.limit_usd_cents, crossed=crossed,
    )


def _find_budget(conn: sqlite3.Connection, scope: str, scope_id: str) -> records.Budget | None:
    row = conn.execute(
        f"SELECT {BUDGET_COLUMNS} FROM budgets WHERE scope = ? AND scope_id = ?",
        (scope, scope_id),
    ).fetchone()
    return None if row is None else budget_from_row(row)


def _require_budget(conn: sqlite3.Connection, scope: str, scope_id: str) -> records.Budget:
    budget = _find_budget(conn, scope, scope_id)
    if budget is None:
        raise errors.NotFound(f"no budget for {scope} {scope_id}")
    return budget


def _agent_of(scope: str, scope_id: str, agent_id: str | None = None) -> str | None:
    return scope_id if scope == "agent" else agent_id


def _budget_details(
    scope: str, scope_id: str, budget_id: str, limit: int, spent: int
) -> dict[str, Any]:
    return {"scope": scope, "scopeId": scope_id, "budgetId": budget_id,
            "limitUsdCents": limit, "spentUsdMicros": spent}


def _paused_event(details: dict[str, Any]) -> audit_log.AuditEvent:
    """The cap_hit row written the moment a budget becomes paused, whatever paused it."""
    return "cap_hit", "budget.paused", _agent_of(details["scope"], details["scopeId"]), details


def _save_budget(
    conn: sqlite3.Connection, now: int, before: records.Budget, limit: int, mode: money.Mode,
    status: money.Status,
) -> records.Budget:
    """Write a budget row's new limit, mode and status, auditing the moment it becomes paused."""
    spent = before.spent_usd_micros
    conn.execute(
        "UPDATE budgets SET limit_cents = ?, status = ?, mode = ?, updated_at = ? WHERE id = ?",
        (limit, status, mode, now, before.id),
    )
    if status == "paused" and before.status != "paused":
        audit_log.append(conn, now, *_paused_event(
            _budget_details(before.scope, before.scope_id, before.id, limit, spent)
        ))
    return before.model_copy(update={
        "limit_usd_cents": limit, "status": status, "mode": mode, "updated_at": now,
    })


def set_budget(conn: sqlite3.Connection, now: int, request: commands.BudgetSet) -> records.Budget:
    existing = _find_budget(conn, request.scope, request.scope_id)
    if existing is None:
        mode: money.Mode = request.mode or "warn"
        budget = records.Budget(
            id="bud_" + secrets.token_hex(8), scope=request.scope, scope_id=request.scope_id,
            limit_usd_cents=request.limit_usd_cents, spent_usd_cents=0, spent_usd_micros=0,
            held_usd_cents=0, status="active", mode=mode, created_at=now, updated_at=now,
        )
        conn.execute(
            f"INSERT INTO budgets ({BUDGET_COLUMNS}) VALUES (?, ?, ?, ?, 0, 0, ?, ?, ?, ?)",
            (budget.id, budget.scope, budget.scope_id, budget.limit_usd_cents, budget.status,
             budget.mode, now, now),
        )
        previous: dict[str, Any] = {}
    else:
        mode = request.mode or existing.mode  # omitting mode keeps it (Clawboo's trap fixed)
        status = money.status_for(existing.spent_usd_micros, request.limit_usd_cents, mode)
        budget = _save_budget(conn, now, existing, request.limit_usd_cents, mode, status)
        previous = {"previousLimitUsdCents": existing.limit_usd_cents,
                    "previousMode": existing.mode, "previousStatus": existing.status}
    audit_log.append(
        conn, now, "budget", "budget.set", _agent_of(budget.scope, budget.scope_id),
        {"scope": budget.scope, "scopeId": budget.scope_id, "budgetId": budget.id,
         "limitUsdCents": budget.limit_usd_cents, "mode": budget.mode, "status": budget.status,
         **previous},
    )
    return budget


def delete_budget(conn: sqlite3.Connection, now: int, scope: str, scope_id: str) -> None:
    budget = _require_budget(conn, scope, scope_id)
    conn.execute("DELETE FROM budgets WHERE id = ?", (budget.id,))
    audit_log.append(
        conn, now, "budget", "budget.deleted", _agent_of(scope, scope_id),
        {"scope": scope, "scopeId": scope_id, "budgetId": budget.id,
         "limitUsdCents": budget.limit_usd_cents, "spentUsdMicros": budget.spent_usd_micros},
    )


def resume_budget(
    conn: sqlite3.Connection, now: int, scope: str, scope_id: str, grace_cents: int | None
) -> records.Resumed:
    before = _require_budget(conn, scope, scope_id)
    limit, status, will_repause = money.resume(
        before.spent_usd_micros, before.limit_usd_cents, before.mode, grace_cents
    )
    budget = _save_budget(conn, now, before, limit, before.mode, status)
    audit_log.append(
        conn, now, "budget", "budget.resumed", _agent_of(scope, scope_id),
        {"scope": scope, "scopeId": scope_id, "budgetId": before.id, "graceUsdCents": grace_cents,
         "previousLimitUsdCents": before.limit_usd_cents, "limitUsdCents": limit,
         "previousStatus": before.status, "status": status, "willRepause": will_repause},
    )
    return records.Resumed(budget=budget, will_repause=will_repause)


class SpendJob:
    """A spend waiting for the writer: charged through the batch's ChargedBudgets."""

    __slots__ = ("fingerprint", "request")

    def __init__(self, request: commands.SpendRequest, fingerprint: str) -> None:
        self.request, self.fingerprint = request, fingerprint


class _BudgetRow:
    __slots__ = ("id", "limit", "mode", "scope", "scope_id", "spent", "status")

    def __init__(self, row: tuple[Any, ...]) -> None:
        self.id, self.scope, self.scope_id, self.limit, self.spent, self.status, self.mode = row


class ChargedBudgets:
    """The budget rows one batch's spends charge: each read once, written back once.

    A batch's spends mostly share their scopes, so each scope chain is read at
    its first spend and each charged row written back at the end of the batch,
    or before any other kind of write, which then sees the table as the spends
    left it (bench/spend.py: two UPDATEs and a SELECT fewer a spend).
    """

    def __init__(self) -> None:
        self._chains: dict[tuple[str | None, ...], list[_BudgetRow]] = {}
        self._rows: dict[str, _BudgetRow] = {}  # one object per row, shared by its chains
        self._charged: dict[str, _BudgetRow] = {}

    def chain(self, conn: sqlite3.Connection, ids: tuple[str | None, ...]) -> list[_BudgetRow]:
        """The budgeted scopes of agent, mission, team and tenant ids, in that order."""
        chain = self._chains.get(ids)
        if chain is None:
            rows = conn.execute(
                "SELECT id, scope, scope_id, limit_cents, spent_micros, status, mode"
                " FROM budgets" + CHAIN_WHERE, ids,
            )
            chain = [self._rows.setdefault(row[0], _BudgetRow(row)) for row in rows]
            chain.sort(key=lambda row: CHAIN_ORDER[row.scope])
            self._chains[ids] = chain
        return chain

    def charge(self, row: _BudgetRow, spent: int, status: money.Status) -> None:
        row.spent, row.status = spent, status
        self._charged[row.id] = row

    def write_back(self, conn: sqlite3.Connection, now: int) -> None:
        if self._charged:
            conn.executemany(
                "UPDATE budgets SET spent_micros = ?, status = ?, updated_at = ? WHERE id = ?",
                [(row.spent, row.status, now, row.id) for row in self._charged.values()],
            )
        self._chains.clear()
        self._rows.clear()
        self._charged.clear()


def record_spend(
    conn: sqlite3.Connection, now: int, job: SpendJob, charged: ChargedBudgets
) -> records.SpendCharged:
    """The hot path: few statements and no validation here; the request was validated."""
    request, fingerprint = job.request, job.fingerprint
    cost = request.cost_micros
    if request.idempotency_key is not None:
        seen = conn.execute(
            "SELECT id, fingerprint, cost_micros, scopes FROM spends WHERE idempotency_key = ?",
            (request.idempotency_key,),
        ).fetchone()
        if seen is not None:
            if seen[1] != fingerprint:
                raise errors.IdempotencyConflict(
                    "this idempotencyKey was used with a different body", {"spendId": seen[0]}
                )
            return records.SpendCharged(
                spend=records.SpendRecord(id=seen[0], cost_usd_micros=seen[2], duplicate=True),
                scopes=records.SCOPE_STATES.validate_json(seen[3]),
            )
    chain = charged.chain(
        conn, (request.agent_id, request.mission_id, request.team_id, request.tenant_id)
    )
    charges: list[tuple[_BudgetRow, int, money.Status]] = []
    states: list[records.ScopeState] = []
    events: list[audit_log.AuditEvent] = []
    for row in chain:
        scope, scope_id, limit, mode = row.scope, row.scope_id, row.limit, row.mode
        spent = row.spent + cost
        if spent > money.MAX_MICROS:  # checked for every scope before anything is written
            raise errors.Unprocessable(f"the {scope} budget's spend total would overflow")
        crossed = money.crossing(row.spent, spent, limit)
        status = money.status_for(spent, limit, mode)
        charges.append((row, spent, status))
        states.append(records.ScopeState(
            scope=scope, scope_id=scope_id, status=status, mode=mode,
            spent_usd_cents=money.micros_to_cents(spent), spent_usd_micros=spent,
            limit_usd_cents=limit, crossed=crossed,
        ))
        if crossed != "none" or (status == "paused" and row.status != "paused"):  # rare
            details = _budget_details(scope, scope_id, row.id, limit, spent)
            if crossed != "none":
                events.append(("budget", f"budget.crossed_{crossed}", request.agent_id, details
                               | {"crossed": crossed, "mode": mode, "taskId": request.task_id}))
            if status == "paused" and row.status != "paused":
                events.append(_paused_event(details))
    for event_type, action, agent_id, details in events:
        audit_log.append(conn, now, event_type, action, agent_id, details)
    spend_id = conn.execute(
        "INSERT INTO spends (idempotency_key, fingerprint, agent_id, mission_id, team_id,"
        " tenant_id, cost_micros, task_id, model, input_tokens, output_tokens, scopes,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (request.idempotency_key, fingerprint, request.agent_id, request.mission_id,
         request.team_id, request.tenant_id, cost, request.task_id, request.model,
         request.input_tokens, request.output_tokens,
         records.SCOPE_STATES.dump_json(states, by_alias=True), now),
    ).lastrowid
    assert spend_id is not None
    if charges:
        conn.executemany(
            "INSERT INTO spend_charges (budget_id, spend_id, micros) VALUES (?, ?, ?)",
            [(row.id, spend_id, cost) for row, _, _ in charges],
        )
    for row, spent, status in charges:  # last: a spend that failed above charged nothing
        charged.charge(row, spent, status)
    return records.SpendCharged(
        spend=records.SpendRecord(id=spend_id, cost_usd_micros=cost,
                                                 duplicate=False),
        scopes=states,
    )


def ledger_check(path: str) -> list[tuple[str, int, int]]:
    """(budget id, spent, sum of its charges) for every budget row: the invariant, for tests."""
    conn = sqlite3.connect(path)
    try:
        return list(conn.execute(
            "SELECT b.id, b.spent_micros, coalesce(sum(c.micros), 0) FROM budgets b"
            " LEFT JOIN spend_charges c ON c.budget_id = b.id GROUP BY b.id"
        ))
    finally:
        conn.close()

