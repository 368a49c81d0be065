"""Authorize as executors meet it: one verdict per side effect, its receipt, its approval.

Loads what the checks read (the named scopes' budgets, the run, the compiled
gate with the approval settings), lets clawguard.core.authorize judge, opens
an approval for an ALERT through the handshake, writes the receipt, then
waits on the approval like delegation-approval does. A decision that lands
later is appended to the receipt when someone asks again with the same
idempotency key. Reports and the enforcement check read SQL aggregates.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

from clawguard.core import approvals as approval_rules
from clawguard.core import authorize, budgets, commands, errors, principals
from clawguard.core.gate import settings as gate_settings
from clawguard.runtime import config, metrics
from clawguard.services import gate, handshake, holds
from clawguard.store import contract

log = logging.getLogger(__name__)

REASON_MAX_CHARS = 2_000
GRANT_REASON = "a live sticky grant for this agent and tool satisfies the approval"
FAILED_REASON = "the approval could not be opened or waited on (fail closed)"


def new_receipt_id() -> str:
    return "rcp_" + secrets.token_hex(8)


def _scope(refused: errors.ClawguardError) -> str:
    """The scope a hold's refusal names."""
    details = refused.details if isinstance(refused.details, dict) else {}
    return str(details.get("scope"))


class Authorizer:
    def __init__(self, db: contract.Store, compiled: gate.Gate, approvals: handshake.Approvals,
                 held: holds.Holds, cfg: config.Config, clock: Callable[[], int],
                 counters: metrics.Metrics) -> None:
        self._db, self._gate, self._approvals, self._holds = db, compiled, approvals, held
        self._wait_ms = cfg.approvals.wait_ms
        self._plan = cfg.quotas.defaults()
        self._clock = clock
        self._metrics = counters

    async def decide(self, request: authorize.Request, caller: principals.Principal
                     ) -> dict[str, Any]:
        """The verdict's answer; a key already used answers its receipt (IdempotencyConflict
        for another request), NotFound for an unknown runId."""
        fingerprint = authorize.fingerprint(request)
        key = authorize.idempotency_key(caller.key_id or "-", request.idempotency_key)
        if key is not None:
            seen = await self._db.find_receipt(key)
            if seen is not None:
                return await self._settle(authorize.replay(seen, fingerprint), request.wait_ms,
                                          caller)
        scopes, generation = await self._db.authorize_reads(request.scope_ids())
        run = None
        if request.run_id is not None:
            stored_run = await self._db.get_run(request.run_id)
            if stored_run is None:
                raise errors.NotFound(f"no run {request.run_id}")
            run = stored_run.as_of(self._clock())
        view = await self._gate.snapshot(generation)
        access, verdict = view.verdict(request.action(), request.principal(), request.context)
        categories = view.categories.get(request.tool, ())
        judgement = authorize.judge(budgets.stop_reason(scopes), run, access, verdict,
                                    categories, view.settings)
        decision: authorize.Decision
        reasons = list(judgement.reasons)
        approval = None
        if judgement.outcome == "ALERT":
            decision, approval, extra = await self._open(request, judgement, caller)
            reasons += extra
        else:
            decision = judgement.outcome
        receipt_id, hold_id = new_receipt_id(), None
        if decision == "ALLOW" and request.estimate_usd_cents is not None:
            try:
                hold_id = await self._hold(request, caller, receipt_id)
            except (errors.BudgetExhausted, errors.BudgetPaused) as refused:
                judgement = authorize.hold_refused(judgement, refused.code, _scope(refused))
                decision, reasons = "BLOCK", [*reasons, judgement.reasons[-1]]
        document = authorize.receipt_document(
            request, judgement, decision, reasons, access, verdict, categories, view.settings,
            scopes, run, approval, hold_id)
        new = authorize.NewReceipt(
            receipt_id, request, decision,
            None if approval is None else approval["approvalId"], categories, key, fingerprint,
            document)
        stored, replayed = await self._db.write_receipt(new)
        if not replayed:
            self._metrics.verdict_children[stored.decision].inc()
        return await self._settle(stored, request.wait_ms, caller)

    async def _hold(self, request: authorize.Request, caller: principals.Principal,
                    receipt_id: str) -> str:
        """Reserve an ALLOW's estimate on its scopes (and run). The hold's key is the
        authorize's own (or, unkeyed, the receipt's id): a retry racing the first call
        places no second hold."""
        assert request.estimate_usd_cents is not None
        hold = await self._holds.place_estimate(
            request.scope_ids(), request.estimate_usd_cents, caller.key_id or "-",
            request.idempotency_key or receipt_id)
        return hold.id

    async def _open(self, request: authorize.Request, judgement: authorize.Judgement,
                    caller: principals.Principal
                    ) -> tuple[authorize.Decision, dict[str, Any], list[str]]:
        """Open the ALERT's approval without waiting (the receipt is written first, so a retry
        finds it); a live sticky grant answers at once unless a rule says sticky: false."""
        assert judgement.plan is not None
        plan = judgement.plan
        reason = "; ".join(judgement.reasons)[:REASON_MAX_CHARS]
        stages = plan.opened()
        new = approval_rules.new_request(
            handshake.new_approval_id(), request.tool, request.agent_id, request.args, reason,
            request.task_id, request.tenant_id, caller, stages=stages, sticky=plan.sticky)
        opened = await self._approvals.request(new, 0)
        if opened.approval_id is None:
            if opened.resolution == "allow_always":
                view = authorize.approval_view(None, "allow_always", plan) | {"grant": True}
                return "ALLOW", view, [GRANT_REASON]
            return "BLOCK", authorize.approval_view(None, "deny", plan), [FAILED_REASON]
        status = "pending" if opened.resolution == "timeout" else opened.resolution
        view = authorize.approval_view(opened.approval_id, status, plan)
        if status == "pending":
            return "PENDING", view, []
        return authorize.decision_of(status), view, (
            [FAILED_REASON] if status == "deny" else [])

    async def _settle(self, stored: authorize.Stored, wait_ms: int | None,
                      caller: principals.Principal) -> dict[str, Any]:
        """A PENDING receipt: wait up to `wait_ms` (None: approvals.wait_ms) for its approval,
        and append the outcome once it is decided. Any other receipt answers as it is."""
        if stored.decision != "PENDING" or stored.outcome is not None:
            return stored.answer()
        assert stored.approval_id is not None
        wait = self._wait_ms if wait_ms is None else wait_ms
        try:
            approval = await self._approvals.get(stored.approval_id, caller, wait)
        except errors.NotFound:
            return stored.answer()  # a key that may not read the approval hears the receipt
        if approval.status == "pending":
            return stored.answer()
        outcome = authorize.outcome_document(approval)
        estimate = authorize.estimate_of(stored.document)
        if outcome["decision"] == "ALLOW" and estimate is not None:
            key = stored.document["request"].get("idempotencyKey") or stored.id
            try:
                hold = await self._holds.place_estimate(*estimate, caller.key_id or "-", key)
                outcome["holdId"] = hold.id
            except (errors.BudgetExhausted, errors.BudgetPaused) as refused:
                outcome = authorize.refuse_outcome(outcome, refused.code, _scope(refused))
        settled = await self._db.append_receipt_outcome(stored.id, outcome)
        return settled.answer()

    # --- receipts, settings, the enforcement check, reports ---------------------------------

    async def receipt(self, receipt_id: str) -> dict[str, Any]:
        """The receipt, with its approval as it reads now (its stages and their votes)."""
        stored = await self._db.get_receipt(receipt_id)
        if stored is None:
            raise errors.NotFound(f"no receipt {receipt_id}")
        body = stored.wire()
        if stored.approval_id is not None:
            row = await self._db.get_approval(stored.approval_id)
            if row is not None:
                body["approvalNow"] = row.as_of(self._clock()).to_json()
        return body

    async def settings(self) -> gate_settings.Settings:
        return await self._db.get_settings()

    async def set_settings(self, patch: dict[str, Any], actor: principals.Principal
                           ) -> gate_settings.Settings:
        return await self._db.patch_settings(gate_settings.check_patch(patch), actor)

    async def enforcement(self, resource_type: authorize.ResourceType, resource_id: str
                          ) -> dict[str, Any]:
        now = self._clock()
        scope_ids = commands.ScopeIds.model_validate({f"{resource_type}Id": resource_id})
        scopes = await self._db.scope_states(scope_ids)
        found = await self._db.enforcement_blockers(resource_type, resource_id, now)
        entries = authorize.blocking(resource_type, resource_id, scopes, found, self._plan)
        return {"allowed": not entries, "resourceType": resource_type,
                "resourceId": resource_id, "blocking": entries}

    async def report(self, period: authorize.Period) -> dict[str, Any]:
        now = self._clock()
        figures = await self._db.report_figures(now - authorize.PERIOD_MS[period], now)
        return authorize.report(period, figures)

    async def approval_stats(self, period: authorize.Period) -> dict[str, Any]:
        now = self._clock()
        by_tool, by_category = await self._db.approval_stats(
            now - authorize.PERIOD_MS[period], now)
        return {"period": period, **authorize.approval_stats(by_tool, by_category)}
