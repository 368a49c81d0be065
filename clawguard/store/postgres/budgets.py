"""Budgets and the spend ledger on PostgreSQL, inside a write transaction.

Load, decide with clawguard.core.budgets, apply: no rule lives here. Every
budget row a transaction changes is locked first, FOR UPDATE in the one
order of `budgets.scope_rank, scope_id` (agent, mission, team, tenant), so
two instances charging overlapping chains queue on the rows instead of
deadlocking, and running totals form one serial order across instances.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from clawguard.core import audit, budgets, commands, errors, principals, records
from clawguard.store import tables
from clawguard.store.postgres import audit_log, connection

# The budget rows of one scope chain, by name (agent, mission, team, tenant).
CHAIN_WHERE = (
    " WHERE (scope = 'agent' AND scope_id = %(agent)s) OR (scope = 'mission' AND scope_id ="
    " %(mission)s) OR (scope = 'team' AND scope_id = %(team)s) OR (scope = 'tenant' AND"
    " scope_id = %(tenant)s)"
)


def chain_params(ids: commands.ScopeIds) -> dict[str, str | None]:
    return {"agent": ids.agent_id, "mission": ids.mission_id, "team": ids.team_id,
            "tenant": ids.tenant_id}


async def _locked_budget(
    conn: connection.Connection, scope: str, scope_id: str
) -> records.Budget | None:
    cursor = await conn.execute(
        f"SELECT {tables.BUDGET_COLUMNS} FROM budgets WHERE scope = %s AND scope_id = %s"
        " FOR UPDATE",
        (scope, scope_id),
    )
    row = await cursor.fetchone()
    return None if row is None else tables.budget_from_row(row)


# What live holds reserve on each scope id named (held_params: one array per scope, and
# now): one chain's, or every chain a hold batch names.
HELD_ON = (
    "SELECT 'agent', agent_id, sum(amount_micros) FROM holds WHERE status = 'held'"
    " AND agent_id = ANY(%(agent)s::text[]) AND expires_at > %(now)s GROUP BY agent_id"
    " UNION ALL SELECT 'mission', mission_id, sum(amount_micros) FROM holds"
    " WHERE status = 'held' AND mission_id = ANY(%(mission)s::text[]) AND expires_at > %(now)s"
    " GROUP BY mission_id"
    " UNION ALL SELECT 'team', team_id, sum(amount_micros) FROM holds WHERE status = 'held'"
    " AND team_id = ANY(%(team)s::text[]) AND expires_at > %(now)s GROUP BY team_id"
    " UNION ALL SELECT 'tenant', tenant_id, sum(amount_micros) FROM holds"
    " WHERE status = 'held' AND tenant_id = ANY(%(tenant)s::text[]) AND expires_at > %(now)s"
    " GROUP BY tenant_id"
)


def named_scopes(ids: commands.ScopeIds | records.Hold) -> Iterator[tuple[str, str]]:
    """The (scope, scope id) pairs a request or a hold names."""
    for scope, scope_id in zip(records.SCOPES, _chain_key(ids), strict=True):
        if scope_id is not None:
            yield scope, scope_id


def held_params(chains: Iterable[commands.ScopeIds]) -> dict[str, list[str]]:
    """HELD_ON's arrays: every scope id the chains name, by scope."""
    named: dict[str, list[str]] = {scope: [] for scope in records.SCOPES}
    for ids in chains:
        for scope, scope_id in named_scopes(ids):
            named[scope].append(scope_id)
    return named


# ... and on every scope that has any.
HELD_ALL = (
    "SELECT 'agent', agent_id, sum(amount_micros) FROM holds WHERE status = 'held'"
    " AND expires_at > %(now)s AND agent_id IS NOT NULL GROUP BY agent_id"
    " UNION ALL SELECT 'mission', mission_id, sum(amount_micros) FROM holds"
    " WHERE status = 'held' AND expires_at > %(now)s AND mission_id IS NOT NULL"
    " GROUP BY mission_id"
    " UNION ALL SELECT 'team', team_id, sum(amount_micros) FROM holds WHERE status = 'held'"
    " AND expires_at > %(now)s AND team_id IS NOT NULL GROUP BY team_id"
    " UNION ALL SELECT 'tenant', tenant_id, sum(amount_micros) FROM holds"
    " WHERE status = 'held' AND expires_at > %(now)s AND tenant_id IS NOT NULL"
    " GROUP BY tenant_id"
)


async def _save_budget(conn: connection.Connection, budget: records.Budget) -> None:
    await conn.execute(
        "UPDATE budgets SET limit_cents = %s, status = %s, mode = %s, updated_at = %s,"
        " tenant_id = %s, spent_micros = %s, window_kind = %s, window_zone = %s,"
        " window_start = %s WHERE id = %s",
        (budget.limit_usd_cents, budget.status, budget.mode, budget.updated_at, budget.tenant_id,
         budget.spent_usd_micros, budget.window, budget.timezone, budget.window_start,
         budget.id),
    )


async def _current(
    conn: connection.Connection, now: int, scope: str, scope_id: str
) -> records.Budget | None:
    found = await _locked_budget(conn, scope, scope_id)
    return None if found is None else budgets.current(found, now)


async def set_budget(
    conn: connection.Connection, now: int, request: commands.BudgetSet,
    actor: principals.Principal,
) -> records.Budget:
    existing = await _current(conn, now, request.scope, request.scope_id)
    since = budgets.recount_from(existing, request, now)
    recounted = None
    if since is not None:
        assert existing is not None
        cursor = await conn.execute(
            "SELECT coalesce(sum(c.micros), 0)::bigint FROM spend_charges c JOIN spends s"
            " ON s.id = c.spend_id WHERE c.budget_id = %s AND s.created_at >= %s",
            (existing.id, since),
        )
        row = await cursor.fetchone()
        assert row is not None
        recounted = int(row[0])
    change = budgets.set_budget(existing, request, now, "bud_" + secrets.token_hex(8), actor,
                                recounted)
    budget = change.budget
    if change.created:  # two instances creating it at once: one retries and updates it
        await conn.execute(
            f"INSERT INTO budgets ({tables.BUDGET_COLUMNS})"
            " VALUES (%s, %s, %s, %s, 0, 0, %s, %s, %s, %s, %s, %s, %s, %s)",
            (budget.id, budget.scope, budget.scope_id, budget.limit_usd_cents, budget.status,
             budget.mode, now, now, budget.tenant_id, budget.window, budget.timezone,
             budget.window_start),
        )
    else:
        await _save_budget(conn, budget)
    await audit_log.append(conn, now, change.events)
    return budget


async def delete_budget(
    conn: connection.Connection, now: int, scope: str, scope_id: str,
    actor: principals.Principal,
) -> None:
    existing = await _locked_budget(conn, scope, scope_id)
    event = budgets.delete_budget(existing, scope, scope_id, actor)
    assert existing is not None
    await conn.execute("DELETE FROM budgets WHERE id = %s", (existing.id,))
    await audit_log.append(conn, now, [event])


async def resume_budget(
    conn: connection.Connection, now: int, scope: str, scope_id: str, grace_cents: int | None,
    actor: principals.Principal,
) -> records.Resumed:
    resumed, events = budgets.resume_budget(
        await _current(conn, now, scope, scope_id), scope, scope_id, grace_cents, now, actor
    )
    await _save_budget(conn, resumed.budget)
    await audit_log.append(conn, now, events)
    return resumed


# --- spends: a batch of them, one transaction ----------------------------------------------


@dataclass(slots=True)
class Spend:
    """A spend waiting for its batch."""

    request: commands.SpendRequest
    fingerprint: str
    ledger_key: str | None  # core.budgets.ledger_key


Outcome = records.SpendCharged | errors.ClawguardError


# What a batch reads, in one statement: the budget rows of every chain it names
# (_chain_rows), locked in the fixed order; the ledger rows already under its idempotency
# keys; and its ledger ids. The keys and ids take no lock, and a key another instance
# commits after this read still cannot charge twice: our INSERT then raises
# UniqueViolation and the transaction runs again. The ids come from the identity column's
# sequence by its name (migration 0001 made it spends_id_seq), a constant the plan
# resolves once; pg_get_serial_sequence looked it up per id, ~0.17 ms more per batch of 64
# while the rows are locked (bench/README.md).
_LOAD = (
    "WITH locked AS (SELECT b.id, b.scope, b.scope_id, b.limit_cents, b.spent_micros,"
    " b.status, b.mode, b.window_kind, b.window_zone, b.window_start"
    " FROM budgets b JOIN unnest(%(scopes)b::text[], %(ids)b::text[]) AS w(scope, scope_id)"
    " ON b.scope = w.scope AND b.scope_id = w.scope_id"
    " ORDER BY b.scope_rank, b.scope_id FOR UPDATE OF b)"
    f" SELECT (SELECT json_agg(json_build_array({budgets.LEVEL_COLUMNS})) FROM locked),"
    " (SELECT json_agg(json_build_array(idempotency_key, id, fingerprint, cost_micros, scopes))"
    " FROM spends WHERE idempotency_key = ANY(%(keys)b::text[])),"
    " (SELECT array_agg(nextval('spends_id_seq'))"
    " FROM generate_series(1, %(count)s))"
)
# What it writes, in one statement: the ledger rows, their charges, the new levels. The
# charges' foreign key is checked at the statement's end, when the ledger rows are in.
_WRITE = (
    "WITH ledger AS (INSERT INTO spends (id, idempotency_key, fingerprint, agent_id,"
    " mission_id, team_id, tenant_id, cost_micros, task_id, model, input_tokens,"
    " output_tokens, scopes, created_at) SELECT *, %(now)s FROM unnest(%(s_id)b::bigint[],"
    " %(s_key)b::text[], %(s_fingerprint)b::text[], %(s_agent)b::text[],"
    " %(s_mission)b::text[], %(s_team)b::text[], %(s_tenant)b::text[],"
    " %(s_cost)b::bigint[], %(s_task)b::text[], %(s_model)b::text[],"
    " %(s_input)b::bigint[], %(s_output)b::bigint[], %(s_scopes)b::text[])),"
    " charges AS (INSERT INTO spend_charges (budget_id, spend_id, micros)"
    " SELECT * FROM unnest(%(c_budget)b::text[], %(c_spend)b::bigint[], %(c_micros)b::bigint[]))"
    " UPDATE budgets b SET spent_micros = v.spent, status = v.status,"
    " window_start = v.start, updated_at = %(now)s"
    " FROM unnest(%(b_id)b::text[], %(b_spent)b::bigint[], %(b_status)b::text[],"
    " %(b_start)b::bigint[]) AS v(id, spent, status, start) WHERE b.id = v.id"
)
_LEDGER_COLUMNS = ("s_id", "s_key", "s_fingerprint", "s_agent", "s_mission", "s_team",
                   "s_tenant", "s_cost", "s_task", "s_model", "s_input", "s_output", "s_scopes")


class Charging:
    """A batch's spends charged in memory after one load, each as if it ran alone in turn
    (against the levels the ones before it left), then written in one statement.

    `load` locks every budget row of every chain the batch names (in the fixed order),
    reads the ledger rows already under its keys and takes ledger ids; `charge` decides
    one spend; `write` writes the ledger rows, their charges and the new levels. The
    caller appends `events` to the audit log last (the head is the last lock taken).
    """

    def __init__(self, locked: Any, used: Any, numbered: Any) -> None:
        self._levels = {(row[1], row[2]): budgets.Level(*row) for row in locked or ()}
        self._stored = {row[0]: budgets.StoredSpend(*row[1:]) for row in used or ()}
        self._ids = iter(sorted(numbered or ()))
        self._ledger: list[tuple[Any, ...]] = []
        self._charges: list[tuple[str, int, int]] = []
        self._charged: dict[str, budgets.Level] = {}
        self.events: list[audit.Event] = []

    @classmethod
    async def load(cls, conn: connection.Connection, chains: Iterable[commands.ScopeIds],
                   keys: list[str], count: int) -> Charging:
        """For `count` spends under `keys` on `chains` (more chains may be locked along)."""
        cursor = await conn.execute(_LOAD, _chain_rows(chains) | {"keys": keys, "count": count})
        loaded = await cursor.fetchone()
        assert loaded is not None
        return cls(*loaded)

    def chain(self, request: commands.ScopeIds) -> list[budgets.Level]:
        """The chain's budget rows as the batch has left them, in chain order."""
        return budgets.in_chain_order([self._levels[named] for named in named_scopes(request)
                                       if named in self._levels])

    def stored(self, key: str) -> budgets.StoredSpend | None:
        return self._stored.get(key)

    def charge(self, spend: Spend, now: int) -> Outcome:
        """The spend's answer; a refused one (409, 422) changes nothing."""
        request = spend.request
        key = spend.ledger_key
        try:
            if key is not None and key in self._stored:
                return budgets.replay(self._stored[key], spend.fingerprint)
            outcome = budgets.charge(self.chain(request), request, now)
        except errors.ClawguardError as exc:
            return exc
        spend_id = next(self._ids)
        cost = request.cost_micros
        scopes_json = records.SCOPE_STATES.dump_json(outcome.scopes, by_alias=True).decode()
        self._ledger.append((
            spend_id, key, spend.fingerprint, request.agent_id, request.mission_id,
            request.team_id, request.tenant_id, cost, request.task_id, request.model,
            request.input_tokens, request.output_tokens, scopes_json))
        for row, spent, status, start in outcome.levels:
            row.spent, row.status, row.window_start = spent, status, start
            self._charged[row.id] = row
            self._charges.append((row.id, spend_id, cost))
        self.events.extend(outcome.events)
        if key is not None:  # a retry later in this batch replays this one
            self._stored[key] = budgets.StoredSpend(spend_id, spend.fingerprint, cost,
                                                    scopes_json)
        return records.SpendCharged(
            spend=records.SpendRecord(id=spend_id, cost_usd_micros=cost, duplicate=False),
            scopes=outcome.scopes,
        )

    async def write(self, conn: connection.Connection, now: int) -> None:
        if not self._ledger:
            return
        # A key another instance committed after our read: UniqueViolation, and the
        # transaction runs again and replays it.
        rows = sorted(self._charged.values(),
                      key=lambda row: (records.SCOPES.index(row.scope), row.scope_id))
        params: dict[str, Any] = {"now": now}
        params.update(zip(_LEDGER_COLUMNS, (list(c) for c in zip(*self._ledger, strict=True)),
                          strict=True))
        params["c_budget"], params["c_spend"], params["c_micros"] = (
            (list(c) for c in zip(*self._charges, strict=True)) if self._charges
            else ([], [], [])
        )
        params["b_id"] = [r.id for r in rows]
        params["b_spent"] = [r.spent for r in rows]
        params["b_status"] = [r.status for r in rows]
        params["b_start"] = [r.window_start for r in rows]
        await conn.execute(_WRITE, params)


async def record_spends(
    conn: connection.Connection, now: int, spends: Sequence[Spend]
) -> list[Outcome]:
    """Charge a batch of spends in the open transaction, each as if it ran alone in turn.

    Two statements whatever the batch holds (Charging): in the spend loop's pipelined
    transaction the first leaves with the BEGIN and the second with the COMMIT, so the
    rows stay locked for two round trips. A spend the deciders refuse (409, 422) gets its
    error and writes nothing.
    """
    charging = await Charging.load(conn, [s.request for s in spends],
                                   [s.ledger_key for s in spends if s.ledger_key is not None],
                                   len(spends))
    outcomes = [charging.charge(spend, now) for spend in spends]
    await charging.write(conn, now)
    await audit_log.append(conn, now, charging.events)
    return outcomes


def _chain_key(request: commands.ScopeIds | records.Hold) -> tuple[str | None, ...]:
    return (request.agent_id, request.mission_id, request.team_id, request.tenant_id)


def _chain_rows(requests: Iterable[commands.ScopeIds]) -> dict[str, list[str]]:
    """Every (scope, scope id) the requests' chains name: the arrays _LOAD joins."""
    chains = {_chain_key(request): request for request in requests}
    named = [pair for request in chains.values() for pair in named_scopes(request)]
    return {"scopes": [scope for scope, _ in named], "ids": [scope_id for _, scope_id in named]}


def spend_rows(url: str) -> list[tuple[int, str | None, str, int, int]]:
    """Every ledger row as its running digest covers it (core.ledger.SpendRow), in id order."""
    try:
        with psycopg.connect(connection.conninfo(url)) as conn:
            return [(r[0], r[1], r[2], r[3], r[4]) for r in conn.execute(tables.SPEND_ROWS)]
    except psycopg.Error as exc:
        raise connection.unavailable(exc, "read") from exc


def wrong_charges(url: str) -> list[tuple[str, int, int, int | None]]:
    """Charges that are not their spend's cost, or whose spend is gone (core.ledger)."""
    try:
        with psycopg.connect(connection.conninfo(url)) as conn:
            return [
                (r[0], r[1], r[2], r[3])
                for r in conn.execute(
                    "SELECT c.budget_id, c.spend_id, c.micros, s.cost_micros FROM spend_charges c"
                    " LEFT JOIN spends s ON s.id = c.spend_id"
                    " WHERE s.id IS NULL OR s.cost_micros <> c.micros ORDER BY c.spend_id"
                )
            ]
    except psycopg.Error as exc:
        raise connection.unavailable(exc, "read") from exc


def ledger_check(url: str) -> list[tuple[str, int, int]]:
    """(budget id, spent, sum of its charges) for every budget row: the invariant, for tests."""
    try:
        with psycopg.connect(connection.conninfo(url)) as conn:
            return [
                (r[0], r[1], r[2])
                for r in conn.execute(
                    "SELECT b.id, b.spent_micros, coalesce(sum(c.micros) FILTER (WHERE"
                    " s.created_at >= coalesce(b.window_start, 0)), 0)::bigint FROM budgets b"
                    " LEFT JOIN spend_charges c ON c.budget_id = b.id"
                    " LEFT JOIN spends s ON s.id = c.spend_id GROUP BY b.id"
                )
            ]
    except psycopg.Error as exc:
        raise connection.unavailable(exc, "read") from exc
