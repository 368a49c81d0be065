"""How both engines' rows become records: the column lists they select and the mappings.

The schema is one schema in two dialects (migrations/sqlite, migrations/postgres),
so the columns a table is read by, and what a row of them means, are the same on
SQLite and on PostgreSQL and live here once. Statements stay with their engine:
their placeholders, locks and conflict clauses differ by dialect. A column list
here is dialect-free; where a type differs (a SQLite integer for a boolean) the
mapping absorbs it.

(Named `tables`, not `rows`: the engines call their result lists `rows`.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from clawguard.core import (
    approvals,
    audit,
    authorize,
    documents,
    guardrails,
    money,
    principals,
    records,
    registry,
    webhooks,
)

# --- approvals, sticky grants, the approval history ----------------------------------------

APPROVAL_COLUMNS = (
    "id, tool_name, agent_id, args_summary, reason, status, task_id, tenant_id, created_at,"
    " expires_at, resolved_at, resolved_by, args_fingerprint, stages, sticky, waiver,"
    " requested_by_key"
)
GRANT_COLUMNS = (
    "id, agent_id, tool_name, grant_scope, args_fingerprint, args_summary, approval_id,"
    " created_at, expires_at, revoked_at, revoked_by"
)
HISTORY_COLUMNS = "id, agent_id, action, tool_name, details, created_at"


def approval_from_row(row: Iterable[Any]) -> records.Approval:
    (aid, tool, agent, args, reason, status, task, tenant, created, expires, resolved_at,
     resolved_by, fingerprint, stages, sticky, waiver, requested_by_key) = row
    staged = stages is not None
    return records.Approval(
        id=aid, tool_name=tool, agent_id=agent, args_summary=args, reason=reason,
        status=approvals.read_status(status, staged), task_id=task, tenant_id=tenant,
        created_at=created, expires_at=expires, resolved_at=resolved_at,
        resolved_by=resolved_by, args_fingerprint=fingerprint,
        stages=records.STAGES.validate_json(stages) if staged else None,
        sticky=bool(sticky) if staged else None,
        waiver=None if waiver is None else records.Waiver.model_validate_json(waiver),
        requested_by_key=requested_by_key,
    )


def approval_values(approval: records.Approval) -> tuple[Any, ...]:
    """What a decision or a vote writes to its row: status, resolved_at, resolved_by,
    stages and waiver (the engines add who resolved it and the row's id)."""
    return (
        approvals.stored_status(approval), approval.resolved_at, approval.resolved_by,
        None if approval.stages is None else stages_json(approval.stages),
        None if approval.waiver is None else approval.waiver.to_json_bytes().decode(),
    )


def stages_json(stages: list[records.Stage]) -> str:
    return records.STAGES.dump_json(stages, by_alias=True).decode()


def grant_from_row(row: Iterable[Any]) -> records.Grant:
    (gid, agent, tool, grant_scope, fingerprint, args_summary, approval_id, created, expires,
     revoked_at, revoked_by) = row
    return records.Grant(
        id=gid, agent_id=agent, tool_name=tool, grant_scope=grant_scope,
        args_fingerprint=fingerprint, args_summary=args_summary, approval_id=approval_id,
        created_at=created, expires_at=expires, revoked_at=revoked_at, revoked_by=revoked_by,
    )


def history_from_row(row: Iterable[Any]) -> records.HistoryRecord:
    hid, agent, action, tool, details, created = row
    return records.HistoryRecord(
        id=hid, agent_id=agent, action=action, tool_name=tool, details=details,
        created_at=created,
    )


# --- budgets -------------------------------------------------------------------------------

# held_micros is unused (always 0): what a scope holds is summed from its live holds.
BUDGET_COLUMNS = (
    "id, scope, scope_id, limit_cents, spent_micros, held_micros, status, mode,"
    " created_at, updated_at, tenant_id, window_kind, window_zone, window_start"
)


def budget_from_row(row: Iterable[Any]) -> records.Budget:
    """The row as stored; callers apply core.budgets.current for its window and holds."""
    (bid, scope, scope_id, limit, spent, _, status, mode, created, updated, tenant, window,
     zone, start) = row
    return records.Budget(
        id=bid, scope=scope, scope_id=scope_id, tenant_id=tenant, limit_usd_cents=limit,
        spent_usd_cents=money.micros_to_cents(spent), spent_usd_micros=spent,
        held_usd_cents=0, status=status, mode=mode, created_at=created, updated_at=updated,
        window=window, timezone=zone, window_start=start,
    )


# --- holds ---------------------------------------------------------------------------------

HOLD_COLUMNS = (
    "id, agent_id, mission_id, team_id, tenant_id, run_id, amount_micros, status, created_at,"
    " expires_at, resolved_at, spend_id, scopes"
)


def hold_from_row(row: Sequence[Any]) -> records.Hold:
    (hid, agent, mission, team, tenant, run, amount, status, created, expires, resolved,
     spend_id, scopes) = row
    return records.Hold(
        id=hid, agent_id=agent, mission_id=mission, team_id=team, tenant_id=tenant,
        run_id=run, amount_usd_micros=amount, status=status, created_at=created,
        expires_at=expires, resolved_at=resolved, spend_id=spend_id,
        scopes=records.HELD_SCOPES.validate_json(scopes),
    )


def hold_values(hold: records.Hold) -> tuple[Any, ...]:
    """A hold's values in HOLD_COLUMNS order, for an INSERT."""
    return (hold.id, hold.agent_id, hold.mission_id, hold.team_id, hold.tenant_id, hold.run_id,
            hold.amount_usd_micros, hold.status, hold.created_at, hold.expires_at,
            hold.resolved_at, hold.spend_id,
            records.HELD_SCOPES.dump_json(hold.scopes, by_alias=True).decode())


def held_by_scope(rows: Iterable[Sequence[Any]]) -> dict[tuple[str, str], int]:
    """{(scope, scope id): micros held} from (scope, scope id, micros) rows."""
    return {(scope, scope_id): int(micros) for scope, scope_id, micros in rows if micros}


# --- API keys ------------------------------------------------------------------------------

PRINCIPAL_COLUMNS = "id, name, role, leads, groups, expires_at"
KEY_COLUMNS = "id, name, role, leads, groups, created_at, expires_at, revoked_at, last_used_at"


def _names(text: str | None) -> list[str] | None:
    return None if text is None else list(json.loads(text))


def names_json(names: frozenset[str] | None) -> str | None:
    """A key's leads or groups as their column holds them: a sorted JSON list, or NULL."""
    return None if names is None else json.dumps(sorted(names))


def principal_from_row(row: Iterable[Any]) -> principals.Principal:
    key_id, name, role, leads, groups, expires_at = row
    return principals.Principal(
        key_id=key_id, name=name, role=role,
        leads=None if leads is None else frozenset(json.loads(leads)),
        groups=None if groups is None else frozenset(json.loads(groups)),
        expires_at=expires_at,
    )


def key_from_row(row: Iterable[Any]) -> records.ApiKey:
    key_id, name, role, leads, groups, created, expires, revoked, used = row
    return records.ApiKey(
        id=key_id, name=name, role=role, leads=_names(leads), groups=_names(groups),
        created_at=created, expires_at=expires, revoked_at=revoked, last_used_at=used,
    )


# --- runs and tenant quotas ----------------------------------------------------------------

RUN_COLUMNS = (
    "id, agent_id, status, depth, parent_run_id, started_at, lease_expires_at, ended_at"
)


def run_from_row(row: Iterable[Any]) -> records.Run:
    rid, agent, status, depth, parent, started, lease, ended = row
    return records.Run(id=rid, agent_id=agent, status=status, depth=depth, parent_run_id=parent,
                       started_at=started, lease_expires_at=lease, ended_at=ended)


def decode_overrides(stored: str | None) -> dict[str, int]:
    return {} if stored is None else dict(json.loads(stored))


# --- guardrail policies, the tool registry, tool policies, role overrides ------------------

HEAD_COLUMNS = (
    "seq, id, name, description, status, version, created_at, updated_at, deleted_at,"
    " idempotency_key, fingerprint"
)
VERSION_COLUMNS = "policy_id, version, rules, created_at, created_by, message"
# A policy at its current version: the head's columns, then the version's. No placeholders:
# each engine appends its own WHERE.
STORED = (
    "SELECT p.seq, p.id, p.name, p.description, p.status, p.version, p.created_at,"
    " p.updated_at, p.deleted_at, p.idempotency_key, p.fingerprint,"
    " v.policy_id, v.version, v.rules, v.created_at, v.created_by, v.message"
    " FROM guardrail_policies p JOIN guardrail_versions v ON v.policy_id = p.id"
)
TOOL_COLUMNS = (
    "seq, name, categories, description, status, reason, replacement, created_at, updated_at"
)
TOOL_POLICY_COLUMNS = (
    "id, tool_name, allowed, allowed_domains, max_response_size_kb, created_at"
)
OVERRIDE_COLUMNS = "id, role, tool_name, allowed, created_at"


def head_from_row(row: Sequence[Any]) -> guardrails.Head:
    return guardrails.Head(*row)


def version_from_row(row: Sequence[Any]) -> guardrails.Version:
    policy_id, version, rules, created_at, created_by, message = row
    return guardrails.Version(policy_id, version, tuple(documents.loads(rules)), created_at,
                              created_by, message)


def stored_from_row(row: Sequence[Any]) -> guardrails.Stored:
    return guardrails.Stored(head_from_row(row[:11]), version_from_row(row[11:]))


def tool_from_row(row: Sequence[Any]) -> registry.Tool:
    seq, name, categories, description, status, reason, replacement, created, updated = row
    return registry.Tool(seq, name, tuple(documents.loads(categories)), description, status,
                         reason, replacement, created, updated)


def tool_policy_from_row(row: Sequence[Any]) -> registry.ToolPolicy:
    # bool(): SQLite stores `allowed` as an integer, PostgreSQL as a boolean.
    pid, tool, allowed, domains, max_kb, created = row
    return registry.ToolPolicy(pid, tool, bool(allowed),
                               None if domains is None else tuple(documents.loads(domains)),
                               max_kb, created)


def override_from_row(row: Sequence[Any]) -> registry.RoleOverride:
    oid, role, tool, allowed, created = row
    return registry.RoleOverride(oid, role, tool, bool(allowed), created)


# Every ledger row as the checkpoints' running digest covers it (core.ledger.SpendRow).
SPEND_ROWS = (
    "SELECT id, idempotency_key, fingerprint, cost_micros, created_at FROM spends ORDER BY id"
)


# Receipts with their appended outcome (core.authorize.Stored); each engine adds its WHERE.
RECEIPT = (
    "SELECT r.id, r.agent_id, r.decision, r.approval_id, r.fingerprint, r.document,"
    " r.created_at, o.document FROM receipts r LEFT JOIN receipt_outcomes o"
    " ON o.receipt_id = r.id"
)


def receipt_from_row(row: Sequence[Any]) -> authorize.Stored:
    rid, agent, decision, approval_id, fingerprint, document, created, outcome = row
    return authorize.Stored(rid, agent, decision, approval_id, fingerprint,
                            documents.loads(document), created,
                            None if outcome is None else documents.loads(outcome))


def receipt_row(receipt: authorize.Stored, new: authorize.NewReceipt) -> tuple[Any, ...]:
    """The INSERT's values, in the column order both engines write."""
    request = new.request
    return (receipt.id, request.agent_id, request.mission_id, request.team_id,
            request.tenant_id, request.run_id, request.tool, documents.dumps(list(new.categories)),
            receipt.decision, receipt.approval_id, new.idempotency_key, receipt.fingerprint,
            documents.dumps(receipt.document), receipt.created_at)


RECEIPT_INSERT_COLUMNS = (
    "id, agent_id, mission_id, team_id, tenant_id, run_id, tool_name, categories, decision,"
    " approval_id, idempotency_key, fingerprint, document, created_at"
)


# A webhook delivery (notify_deliveries d) with the audit row (audit a) it tells.
DELIVERY_COLUMNS = (
    "d.attempts, d.created_at, a.seq, a.event_type, a.action, a.agent_id, a.details,"
    " a.created_at, a.prev_hash, a.hash"
)


def delivery_from_row(webhook: str, row: Sequence[Any]) -> webhooks.Delivery:
    return webhooks.Delivery(webhook, row[0], row[1], audit.Row(*row[2:10]))


def backlog_from_row(row: Sequence[Any]) -> webhooks.Backlog:
    """From (undelivered, oldest created_at, earliest next try, given up)."""
    return webhooks.Backlog(int(row[0]), row[1], row[2], int(row[3]))


BACKLOG_COLUMNS = (
    "count(*) FILTER (WHERE failed_at IS NULL), min(created_at) FILTER (WHERE failed_at IS NULL),"
    " min(next_attempt_at) FILTER (WHERE failed_at IS NULL),"
    " count(*) FILTER (WHERE failed_at IS NOT NULL)"
)
