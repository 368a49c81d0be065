"""Budgets and the spend ledger, inside a write transaction (see writer.py).

Load, decide with clawguard.core.budgets, apply: no rule lives here.
"""

from __future__ import annotations

import secrets
import sqlite3

from clawguard.core import budgets, commands, money, principals, records
from clawguard.store import tables
from clawguard.store.sqlite import audit_log, files

# The budget rows of one scope chain (agent, mission, team, tenant ids as ?1..?4).
CHAIN_WHERE = (
    " WHERE (scope = 'agent' AND scope_id = ?1) OR (scope = 'mission' AND scope_id = ?2)"
    " OR (scope = 'team' AND scope_id = ?3) OR (scope = 'tenant' AND scope_id = ?4)"
)


def _find_budget(conn: sqlite3.Connection, scope: str, scope_id: str) -> records.Budget | None:
    row = conn.execute(
        f"SELECT {tables.BUDGET_COLUMNS} FROM budgets WHERE scope = ? AND scope_id = ?",
        (scope, scope_id),
    ).fetchone()
    return None if row is None else tables.budget_from_row(row)


# What live holds reserve on each scope of one chain (ids as ?1..?4, now as ?5).
HELD_IN_CHAIN = (
    "SELECT 'agent', agent_id, sum(amount_micros) FROM holds WHERE status = 'held'"
    " AND agent_id = ?1 AND expires_at > ?5"
    " UNION ALL SELECT 'mission', mission_id, sum(amount_micros) FROM holds"
    " WHERE status = 'held' AND mission_id = ?2 AND expires_at > ?5"
    " UNION ALL SELECT 'team', team_id, sum(amount_micros) FROM holds WHERE status = 'held'"
    " AND team_id = ?3 AND expires_at > ?5"
    " UNION ALL SELECT 'tenant', tenant_id, sum(amount_micros) FROM holds"
    " WHERE status = 'held' AND tenant_id = ?4 AND expires_at > ?5"
)
# ... and on every scope that has any (now as ?1).
HELD_ALL = (
    "SELECT 'agent', agent_id, sum(amount_micros) FROM holds WHERE status = 'held'"
    " AND expires_at > ?1 AND agent_id IS NOT NULL GROUP BY agent_id"
    " UNION ALL SELECT 'mission', mission_id, sum(amount_micros) FROM holds"
    " WHERE status = 'held' AND expires_at > ?1 AND mission_id IS NOT NULL GROUP BY mission_id"
    " UNION ALL SELECT 'team', team_id, sum(amount_micros) FROM holds WHERE status = 'held'"
    " AND expires_at > ?1 AND team_id IS NOT NULL GROUP BY team_id"
    " UNION ALL SELECT 'tenant', tenant_id, sum(amount_micros) FROM holds"
    " WHERE status = 'held' AND expires_at > ?1 AND tenant_id IS NOT NULL GROUP BY tenant_id"
)


def _save_budget(conn: sqlite3.Connection, budget: records.Budget) -> None:
    conn.execute(
        "UPDATE budgets SET limit_cents = ?, status = ?, mode = ?, updated_at = ?, tenant_id = ?,"
        " spent_micros = ?, window_kind = ?, window_zone = ?, window_start = ? WHERE id = ?",
        (budget.limit_usd_cents, budget.status, budget.mode, budget.updated_at, budget.tenant_id,
         budget.spent_usd_micros, budget.window, budget.timezone, budget.window_start,
         budget.id),
    )


def _current(conn: sqlite3.Connection, now: int, scope: str, scope_id: str
             ) -> records.Budget | None:
    found = _find_budget(conn, scope, scope_id)
    return None if found is None else budgets.current(found, now)


def set_budget(
    conn: sqlite3.Connection, now: int, request: commands.BudgetSet,
    actor: principals.Principal,
) -> records.Budget:
    existing = _current(conn, now, request.scope, request.scope_id)
    since = budgets.recount_from(existing, request, now)
    recounted = None
    if since is not None:
        assert existing is not None
        (recounted,) = conn.execute(
            "SELECT coalesce(sum(c.micros), 0) FROM spend_charges c JOIN spends s"
            " ON s.id = c.spend_id WHERE c.budget_id = ? AND s.created_at >= ?",
            (existing.id, since),
        ).fetchone()
    change = budgets.set_budget(existing, request, now, "bud_" + secrets.token_hex(8), actor,
                                recounted)
    budget = change.budget
    if change.created:
        conn.execute(
            f"INSERT INTO budgets ({tables.BUDGET_COLUMNS})"
            " VALUES (?, ?, ?, ?, 0, 0, ?, ?, ?, ?, ?, ?, ?, ?)",
            (budget.id, budget.scope, budget.scope_id, budget.limit_usd_cents, budget.status,
             budget.mode, now, now, budget.tenant_id, budget.window, budget.timezone,
             budget.window_start),
        )
    else:
        _save_budget(conn, budget)
    audit_log.append(conn, now, *change.events)
    return budget


def delete_budget(
    conn: sqlite3.Connection, now: int, scope: str, scope_id: str,
    actor: principals.Principal,
) -> None:
    existing = _find_budget(conn, scope, scope_id)
    event = budgets.delete_budget(existing, scope, scope_id, actor)
    assert existing is not None
    conn.execute("DELETE FROM budgets WHERE id = ?", (existing.id,))
    audit_log.append(conn, now, event)


def resume_budget(
    conn: sqlite3.Connection, now: int, scope: str, scope_id: str, grace_cents: int | None,
    actor: principals.Principal,
) -> records.Resumed:
    resumed, events = budgets.resume_budget(
        _current(conn, now, scope, scope_id), scope, scope_id, grace_cents, now, actor
    )
    _save_budget(conn, resumed.budget)
    audit_log.append(conn, now, *events)
    return resumed


class SpendJob:
    """A spend waiting for the writer: charged through the batch's ChargedBudgets."""

    __slots__ = ("fingerprint", "ledger_key", "request")

    def __init__(
        self, request: commands.SpendRequest, fingerprint: str, ledger_key: str | None
    ) -> None:
        self.request, self.fingerprint, self.ledger_key = request, fingerprint, ledger_key


class ChargedBudgets:
    """The budget rows one batch's spends charge: each read once, written back once.

    A batch's spends mostly share their scopes, so each scope chain is read at
    its first spend and each charged row written back at the end of the batch,
    or before any other kind of write, which then sees the table as the spends
    left it (bench/spend.py: two UPDATEs and a SELECT fewer a spend).
    """

    def __init__(self) -> None:
        self._chains: dict[tuple[str | None, ...], list[budgets.Level]] = {}
        self._rows: dict[str, budgets.Level] = {}  # one object per row, shared by its chains
        self._charged: dict[str, budgets.Level] = {}

    def chain(
        self, conn: sqlite3.Connection, ids: tuple[str | None, ...]
    ) -> list[budgets.Level]:
        """The budgeted scopes of agent, mission, team and tenant ids, in that order."""
        chain = self._chains.get(ids)
        if chain is None:
            rows = conn.execute(
                f"SELECT {budgets.LEVEL_COLUMNS} FROM budgets" + CHAIN_WHERE, ids,
            )
            chain = budgets.in_chain_order(
                [self._rows.setdefault(row[0], budgets.Level(*row)) for row in rows]
            )
            self._chains[ids] = chain
        return chain

    def charge(
        self, row: budgets.Level, spent: int, status: money.Status, window_start: int | None
    ) -> None:
        row.spent, row.status, row.window_start = spent, status, window_start
        self._charged[row.id] = row

    def write_back(self, conn: sqlite3.Connection, now: int) -> None:
        if self._charged:
            conn.executemany(
                "UPDATE budgets SET spent_micros = ?, status = ?, window_start = ?,"
                " updated_at = ? WHERE id = ?",
                [(row.spent, row.status, row.window_start, now, row.id)
                 for row in self._charged.values()],
            )
        self._chains.clear()
        self._rows.clear()
        self._charged.clear()


def record_spend(
    conn: sqlite3.Connection, now: int, job: SpendJob, charged: ChargedBudgets
) -> records.SpendCharged:
    """The hot path: few statements and no validation here; the request was validated."""
    request, fingerprint, key = job.request, job.fingerprint, job.ledger_key
    if key is not None:
        seen = conn.execute(
            "SELECT id, fingerprint, cost_micros, scopes FROM spends WHERE idempotency_key = ?",
            (key,),
        ).fetchone()
        if seen is not None:
            return budgets.replay(budgets.StoredSpend(*seen), fingerprint)
    chain = charged.chain(
        conn, (request.agent_id, request.mission_id, request.team_id, request.tenant_id)
    )
    outcome = budgets.charge(chain, request, now)
    if outcome.events:
        audit_log.append(conn, now, *outcome.events)
    cost = request.cost_micros
    spend_id = conn.execute(
        "INSERT INTO spends (idempotency_key, fingerprint, agent_id, mission_id, team_id,"
        " tenant_id, cost_micros, task_id, model, input_tokens, output_tokens, scopes,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (key, fingerprint, request.agent_id, request.mission_id,
         request.team_id, request.tenant_id, cost, request.task_id, request.model,
         request.input_tokens, request.output_tokens,
         records.SCOPE_STATES.dump_json(outcome.scopes, by_alias=True), now),
    ).lastrowid
    assert spend_id is not None
    if outcome.levels:
        conn.executemany(
            "INSERT INTO spend_charges (budget_id, spend_id, micros) VALUES (?, ?, ?)",
            [(row.id, spend_id, cost) for row, _, _, _ in outcome.levels],
        )
    for row, spent, status, start in outcome.levels:  # last: one that failed charged nothing
        charged.charge(row, spent, status, start)
    return records.SpendCharged(
        spend=records.SpendRecord(id=spend_id, cost_usd_micros=cost, duplicate=False),
        scopes=outcome.scopes,
    )


def spend_rows(path: str) -> list[tuple[int, str | None, str, int, int]]:
    """Every ledger row as its running digest covers it (core.ledger.SpendRow), in id order."""
    conn = files.open_read_only(path)
    try:
        return list(conn.execute(tables.SPEND_ROWS))
    finally:
        conn.close()


def wrong_charges(path: str) -> list[tuple[str, int, int, int | None]]:
    """Charges that are not their spend's cost, or whose spend is gone (core.ledger)."""
    conn = files.open_read_only(path)
    try:
        return list(
            conn.execute(
                "SELECT c.budget_id, c.spend_id, c.micros, s.cost_micros FROM spend_charges c"
                " LEFT JOIN spends s ON s.id = c.spend_id"
                " WHERE s.id IS NULL OR s.cost_micros <> c.micros ORDER BY c.spend_id"
            )
        )
    finally:
        conn.close()


def ledger_check(path: str) -> list[tuple[str, int, int]]:
    """(budget id, spent, sum of its charges in the window it counts) for every budget row:
    the invariant, for tests."""
    conn = files.open_read_only(path)
    try:
        return list(
            conn.execute(
                "SELECT b.id, b.spent_micros, coalesce(sum(c.micros)"
                " FILTER (WHERE s.created_at >= coalesce(b.window_start, 0)), 0) FROM budgets b"
                " LEFT JOIN spend_charges c ON c.budget_id = b.id"
                " LEFT JOIN spends s ON s.id = c.spend_id GROUP BY b.id"
            )
        )
    finally:
        conn.close()
