"""Every route's method, written once, for both clients; the transport is left to them.

`Api` builds a `calls.Call` for each route and hands it to `_run`, which
retries it as README "Integrate an agent" says and asks the transport
(`_exchange`) for each try. AsyncClient is an Api over aiohttp; the blocking
Client drives an Api whose transport blocks and so never suspends.

Retries are bounded (`Retry`: 3 tries, exponential backoff with jitter) and
happen only on connection failures, timeouts and 503, never on another
status. Every call is retried when its request surely never reached the
daemon (the connection could not be made) or when it answered 503 (its
store refused, nothing changed). After a failure that may have come after
the daemon acted (reset, dropped, timed out), only the calls that are safe
to send twice are retried:

- every GET, and `spend` (it carries an idempotency key, made here unless
  given and the same on every retry; the daemon replays the first answer
  with `duplicate: true` and charges nothing);
- `set_budget` (it sets an absolute limit; a replay may audit it twice).

Not after such a failure: `delete_budget` and `resolve_approval` (a replay
of one that landed answers 404 or 409), `resume_budget` (grace is relative
to spend at that moment), `revoke_grant`, `record_history` and opening an
approval request (a replay opens a second one). Those calls always use a
new connection, so a stale kept-alive one never makes them fail; their
failures raise Unreachable and the caller decides.

Waiting for a decision rides out a daemon restart: an approval request is
opened without waiting, then waited on with long-polls by its id, and a
wait that cannot reach the daemon keeps re-attaching, with backoff, until
its own deadline. A step's spend (idempotent) rides one out the same way.

Money: amounts are `Decimal` or `int` cents, written into the JSON from the
decimal digits, never through a float.
"""

from __future__ import annotations

import abc
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from clawguard.client import calls, errors, records, settings

T = TypeVar("T")

# One approval long-poll asks for at most this long; the daemon may cut it shorter.
LONG_POLL_MS = 60_000
# Pending answers that come back sooner than this are not re-asked sooner than this.
MIN_POLL_S = 0.5


class Failed(Exception):
    """A transport's "no answer"; `sent` when the request may have reached the daemon.
    The transport chains the library's own exception as the cause."""

    def __init__(self, sent: bool) -> None:
        super().__init__()
        self.sent = sent


@dataclass
class Step:
    """One agent step between its preflight and its spend: say what it cost with `cost()`.

    A step that names no cost records nothing. After the step, `outcome` is the
    recorded spend.
    """

    idempotency_key: str
    scopes: dict[str, str | None]
    task_id: str | None = None
    cents: calls.Cents | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    outcome: records.SpendOutcome | None = None

    def cost(self, cents: calls.Cents, *, model: str | None = None,
             input_tokens: int | None = None, output_tokens: int | None = None) -> None:
        self.cents = calls.cents(cents)
        self.model, self.input_tokens, self.output_tokens = model, input_tokens, output_tokens

    def _call(self) -> calls.Call[records.SpendOutcome]:
        assert self.cents is not None
        return calls.spend(self.cents, self.idempotency_key, calls.spend_fields(
            self.scopes, self.task_id, self.model, self.input_tokens, self.output_tokens))


@dataclass
class Guarded(Step):
    """A step `guarded(...)` let through: `verdict` is the ALLOW it ran under (its
    obligations to honour); say what it cost with `cost()`."""

    verdict: records.Verdict | None = None


class Api(abc.ABC):
    """The clawguard API, one async method per route, over a transport a subclass gives."""

    def __init__(self, config: settings.Settings) -> None:
        self._settings = config

    @property
    def url(self) -> str:
        return self._settings.url

    # --- what a transport provides ------------------------------------------------------

    @abc.abstractmethod
    async def _exchange(self, call: calls.Call[Any], request_id: str
                        ) -> tuple[int, Any, str | None]:
        """One try: (status, decoded body, the answer's X-Request-Id), or raise Failed."""

    @abc.abstractmethod
    async def _sleep(self, seconds: float) -> None:
        """Wait between tries."""

    # --- sending, with retries --------------------------------------------------------

    async def _run(self, call: calls.Call[T]) -> T:
        attempts = settings.Attempts(self._settings.retry)
        request_id = settings.request_id()
        while True:
            try:
                status, data, answered_id = await self._exchange(call, request_id)
            except Failed as failed:
                delay = attempts.next_delay(call.replayable or not failed.sent)
                if delay is None:
                    raise self._unreachable(call, failed) from failed.__cause__
            else:
                delay = None
                if status == 503 and 503 not in call.accept:
                    delay = attempts.next_delay(True)
                if delay is None:
                    return calls.finish(call, status, data, answered_id)
            await self._sleep(delay)

    def _unreachable(self, call: calls.Call[Any], failed: Failed) -> errors.Unreachable:
        cause = failed.__cause__
        why = f"{type(cause).__name__}: {cause}" if cause is not None else "no answer"
        return errors.Unreachable(
            f"no answer from {self.url} to {call.method} {call.path} ({why})",
            code="unreachable")

    async def _outlasting(self, call: Callable[[], calls.Call[T]], deadline: float | None
                          ) -> T:
        """`call()`, sent again with growing pauses while the daemon cannot be reached (or its
        store is down), until the monotonic `deadline` (None: for `ride_out_s` from the first
        failure); then the last error."""
        give_up, outage = deadline, 0
        while True:
            try:
                return await self._run(call())
            except errors.Unavailable:
                if give_up is None:
                    give_up = time.monotonic() + self._settings.ride_out_s
                left = give_up - time.monotonic()
                if left <= 0:
                    raise
            await self._sleep(min(left, self._settings.retry.delay(outage)))
            outage += 1

    # --- operations -------------------------------------------------------------------

    async def healthz(self) -> bool:
        return await self._run(calls.healthz())

    async def readyz(self) -> bool:
        """True when the store answers and is migrated; False on the daemon's 503."""
        return await self._run(calls.readyz())

    async def metrics(self) -> str:
        """The Prometheus text of GET /metrics (an operator's key)."""
        return await self._run(calls.metrics())

    async def openapi(self) -> dict[str, Any]:
        """The daemon's OpenAPI 3.1 document (GET /openapi.json, no key needed)."""
        return await self._run(calls.openapi())

    # --- guardrails and the tool registry (operator) -------------------------------------

    async def list_guardrails(self, *, status: str | None = None, tool: str | None = None,
                              limit: int | None = None, cursor: str | None = None
                              ) -> dict[str, Any]:
        """One page: `{object: "list", data, has_more, next_cursor}`."""
        return await self._run(calls.list_guardrails(status, tool, limit, cursor))

    async def get_guardrail(self, policy_id: str, *, version: int | None = None
                            ) -> dict[str, Any]:
        return await self._run(calls.get_guardrail(policy_id, version))

    async def create_guardrail(self, document: Mapping[str, object], *,
                               idempotency_key: str | None = None) -> dict[str, Any]:
        """A policy from a create body; retried safely with its Idempotency-Key."""
        key = idempotency_key or calls.new_idempotency_key()
        return await self._run(calls.create_guardrail(document, key))

    async def evaluate_guardrails(self, request: Mapping[str, object]) -> dict[str, Any]:
        """The dry run: `{action, policies?, principal?, context?}` -> guardrail_evaluation."""
        return await self._run(calls.evaluate_guardrails(request))

    async def list_tools(self, *, include_archived: bool = False) -> list[dict[str, Any]]:
        return await self._run(calls.list_tools(include_archived))

    async def register_tool(self, name: str, categories: list[str], *,
                            description: str | None = None) -> dict[str, Any]:
        return await self._run(calls.register_tool(name, categories, description))

    async def deprecate_tool(self, name: str, reason: str, *, replacement: str | None = None
                             ) -> dict[str, Any]:
        return await self._run(calls.deprecate_tool(name, reason, replacement))

    async def archive_tool(self, name: str) -> dict[str, Any]:
        return await self._run(calls.archive_tool(name))

    async def update_guardrail(self, policy_id: str, changes: Mapping[str, object]
                               ) -> dict[str, Any]:
        """PATCH {rules?, description?, status?, message?}: new rules mint a version."""
        return await self._run(calls.update_guardrail(policy_id, changes))

    async def delete_guardrail(self, policy_id: str) -> dict[str, Any]:
        return await self._run(calls.delete_guardrail(policy_id))

    async def guardrail_versions(self, policy_id: str) -> list[dict[str, Any]]:
        return await self._run(calls.guardrail_versions(policy_id))

    async def rollback_guardrail(self, policy_id: str, version: int, *,
                                 message: str | None = None) -> dict[str, Any]:
        return await self._run(calls.rollback_guardrail(policy_id, version, message))

    async def list_tool_policies(self) -> list[dict[str, Any]]:
        return await self._run(calls.list_tool_policies())

    async def create_tool_policy(self, tool_name: str, allowed: bool, *,
                                 restrictions: Mapping[str, object] | None = None
                                 ) -> dict[str, Any]:
        return await self._run(calls.create_tool_policy(tool_name, allowed, restrictions))

    async def delete_tool_policy(self, policy_id: str) -> None:
        await self._run(calls.delete_tool_policy(policy_id))

    async def list_role_overrides(self) -> list[dict[str, Any]]:
        return await self._run(calls.list_role_overrides())

    async def create_role_override(self, role: str, tool_name: str, allowed: bool
                                   ) -> dict[str, Any]:
        return await self._run(calls.create_role_override(role, tool_name, allowed))

    async def delete_role_override(self, override_id: str) -> None:
        await self._run(calls.delete_role_override(override_id))

    # --- budgets (operator) -----------------------------------------------------------

    async def list_budgets(self, *, scope: records.Scope | None = None,
                           status: records.Status | None = None) -> list[records.Budget]:
        return await self._run(calls.list_budgets(scope, status))

    async def set_budget(self, scope: records.Scope, scope_id: str, limit_usd_cents: int, *,
                         mode: records.Mode | None = None) -> records.Budget:
        return await self._run(calls.set_budget(scope, scope_id, limit_usd_cents, mode))

    async def delete_budget(self, scope: records.Scope, scope_id: str) -> None:
        await self._run(calls.delete_budget(scope, scope_id))

    async def resume_budget(self, scope: records.Scope, scope_id: str, *,
                            grace_usd_cents: int | None = None) -> records.Resumed:
        return await self._run(calls.resume_budget(scope, scope_id, grace_usd_cents))

    # --- spend (executor) -------------------------------------------------------------

    async def spend(self, cost_usd_cents: calls.Cents, *, agent_id: str | None = None,
                    mission_id: str | None = None, team_id: str | None = None,
                    tenant_id: str | None = None, idempotency_key: str | None = None,
                    task_id: str | None = None, model: str | None = None,
                    input_tokens: int | None = None, output_tokens: int | None = None
                    ) -> records.SpendOutcome:
        """Record a cost; `stop` in the answer means a cap fired (this does not raise)."""
        return await self._run(calls.spend(cost_usd_cents, idempotency_key, calls.spend_fields(
            calls.scopes(agent_id, mission_id, team_id, tenant_id), task_id, model,
            input_tokens, output_tokens)))

    async def preflight(self, *, agent_id: str | None = None, mission_id: str | None = None,
                        team_id: str | None = None, tenant_id: str | None = None
                        ) -> records.Preflight:
        return await self._run(calls.preflight(
            calls.scopes(agent_id, mission_id, team_id, tenant_id)))

    @contextlib.asynccontextmanager
    async def step(self, *, agent_id: str | None = None, mission_id: str | None = None,
                   team_id: str | None = None, tenant_id: str | None = None,
                   task_id: str | None = None, idempotency_key: str | None = None
                   ) -> AsyncIterator[Step]:
        """Preflight (BudgetPaused if refused), run the block, record `step.cost(...)`, and
        raise BudgetPaused if that spend stopped the scope. The money is recorded even when
        the block fails, and across a daemon restart: it was spent."""
        scopes = calls.scopes(agent_id, mission_id, team_id, tenant_id)
        check_preflight(await self.preflight(**scopes))
        step = Step(idempotency_key or calls.new_idempotency_key(), scopes, task_id)
        async with self._recording(step):
            yield step

    async def _record(self, step: Step) -> records.SpendOutcome:
        return await self._outlasting(step._call, None)

    async def spend_summary(self, group_by: records.SpendGrouping, *, since: int | None = None,
                            until: int | None = None) -> list[records.SpendGroup]:
        """Spend grouped by scope id or model, largest first; `since` inclusive and `until`
        exclusive, in epoch ms (operator)."""
        return await self._run(calls.spend_summary(group_by, since, until))

    # --- holds (executor; reading one: operator too) --------------------------------------

    async def create_hold(self, amount_usd_cents: calls.Cents, *, agent_id: str | None = None,
                          mission_id: str | None = None, team_id: str | None = None,
                          tenant_id: str | None = None, run_id: str | None = None,
                          ttl_ms: int | None = None, idempotency_key: str | None = None
                          ) -> records.Hold:
        """Reserve an estimate under the caps; Conflict (409) `budget_exhausted` or
        `budget_paused` names the scope that refused it in `.details`."""
        fields = {**{calls.camel(k): v for k, v in calls.scopes(
            agent_id, mission_id, team_id, tenant_id).items()}, "runId": run_id,
            "ttlMs": ttl_ms}
        return await self._run(calls.create_hold(
            amount_usd_cents, idempotency_key or calls.new_idempotency_key(), fields))

    async def get_hold(self, hold_id: str) -> records.Hold:
        return await self._run(calls.get_hold(hold_id))

    async def commit_hold(self, hold_id: str, cost_usd_cents: calls.Cents, *,
                          task_id: str | None = None, model: str | None = None,
                          input_tokens: int | None = None, output_tokens: int | None = None
                          ) -> records.SpendOutcome:
        """Charge the actual cost as a spend and free the hold; `stop` as for spend()."""
        return await self._run(calls.commit_hold(hold_id, cost_usd_cents, {
            "taskId": task_id, "model": model, "inputTokens": input_tokens,
            "outputTokens": output_tokens}))

    async def release_hold(self, hold_id: str) -> records.Hold:
        return await self._run(calls.release_hold(hold_id))

    # --- keys (admin) -----------------------------------------------------------------

    async def me(self) -> records.Me:
        """The key this client uses: its id, name, role, leads and groups."""
        return await self._run(calls.me())

    async def list_keys(self) -> list[records.ApiKey]:
        return await self._run(calls.list_keys())

    async def create_key(self, role: str, *, name: str | None = None,
                         leads: list[str] | None = None, groups: list[str] | None = None,
                         expires_in_ms: int | None = None) -> records.KeyCreated:
        """A new key; its value is in the answer (`.key`) and never shown again."""
        return await self._run(calls.create_key(role, name, leads, groups, expires_in_ms))

    async def revoke_key(self, key_id: str) -> records.ApiKey:
        return await self._run(calls.revoke_key(key_id))

    # --- runs (executor; listing and quotas: operator) ----------------------------------

    async def start_run(self, agent_id: str, *, mission_id: str | None = None,
                        team_id: str | None = None, tenant_id: str | None = None,
                        parent_run_id: str | None = None, idempotency_key: str | None = None
                        ) -> records.Run:
        """Start a run; QuotaExceeded (429) or Conflict (409, a delegation cap) refuse it."""
        fields = {"agentId": agent_id, "missionId": mission_id, "teamId": team_id,
                  "tenantId": tenant_id, "parentRunId": parent_run_id,
                  "idempotencyKey": idempotency_key}
        return await self._run(calls.start_run(
            {key: value for key, value in fields.items() if value is not None}))

    async def end_run(self, run_id: str) -> records.Run:
        return await self._run(calls.end_run(run_id))

    async def get_run(self, run_id: str) -> records.Run:
        return await self._run(calls.get_run(run_id))

    async def list_runs(self, *, status: str | None = None, agent_id: str | None = None,
                        limit: int | None = None) -> list[records.Run]:
        """Newest first."""
        return await self._run(calls.list_runs(status, agent_id, limit))

    async def run_events(self, run_id: str, events: list[Mapping[str, object]]
                         ) -> records.RunEvents:
        """Report tool calls, results, costs and denials; `tripped` says a breaker stopped it."""
        return await self._run(calls.run_events(run_id, events))

    async def quota(self, tenant_id: str) -> records.Quota:
        return await self._run(calls.quota(tenant_id))

    async def set_quota(self, tenant_id: str, overrides: Mapping[str, int | None]
                        ) -> records.Quota:
        """Set overrides (None removes one)."""
        return await self._run(calls.set_quota(tenant_id, overrides))

    # --- audit (operator) -------------------------------------------------------------

    async def audit(self, *, agent_id: str | None = None, event_type: str | None = None,
                    since: int | None = None, limit: int | None = None
                    ) -> list[records.AuditEntry]:
        """Newest first; `since` in epoch ms (inclusive)."""
        return await self._run(calls.audit(agent_id, event_type, since, limit))

    async def audit_head(self) -> records.AuditHead:
        return await self._run(calls.audit_head())

    # --- authorize: one verdict per side effect -----------------------------------------

    async def authorize(
        self, tool: str, *, agent_id: str, mission_id: str | None = None,
        team_id: str | None = None, tenant_id: str | None = None, run_id: str | None = None,
        roles: list[str] | None = None, connector: str | None = None,
        value: calls.Cents | None = None, args: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None, estimate_usd_cents: calls.Cents | None = None,
        task_id: str | None = None, wait_ms: int | None = None,
        idempotency_key: str | None = None,
    ) -> records.Verdict:
        """May `agent_id` run `tool` now? ALLOW, BLOCK or PENDING, never raised: read
        `verdict.decision`.

        A PENDING answer (an approval is open) is waited on up to `wait_ms` (None:
        until the approval is decided or expires; 0: not at all) by asking again with
        the same idempotency key, which answers the same receipt with the approval's
        outcome once it is decided. The wait rides out a daemon restart as
        `wait_for_approval` does.
        """
        fields = {
            "tool": tool, "agentId": agent_id, "missionId": mission_id, "teamId": team_id,
            "tenantId": tenant_id, "runId": run_id, "roles": roles, "connector": connector,
            "value": None if value is None else calls.cents(value), "args": args,
            "context": context, "taskId": task_id,
            "estimateUsdCents": None if estimate_usd_cents is None
            else calls.cents(estimate_usd_cents),
        }
        key = idempotency_key or calls.new_idempotency_key()
        deadline = None if wait_ms is None else time.monotonic() + wait_ms / 1000
        verdict = await self._run(calls.authorize(fields, key, 0))
        while verdict.decision == "PENDING" and _next_wait_ms(deadline) > 0:
            asked = time.monotonic()
            try:
                verdict = await self._outlasting(
                    lambda: calls.authorize(fields, key, _next_wait_ms(deadline)), deadline)
            except errors.Unavailable:
                return verdict
            pause = MIN_POLL_S - (time.monotonic() - asked)
            if verdict.decision == "PENDING" and pause > 0:
                await self._sleep(pause)
        return verdict

    @contextlib.asynccontextmanager
    async def guarded(
        self, tool: str, *, agent_id: str, mission_id: str | None = None,
        team_id: str | None = None, tenant_id: str | None = None, run_id: str | None = None,
        roles: list[str] | None = None, connector: str | None = None,
        value: calls.Cents | None = None, args: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None, estimate_usd_cents: calls.Cents | None = None,
        task_id: str | None = None, wait_ms: int | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncIterator[Guarded]:
        """Authorize (waiting on a PENDING approval up to `wait_ms`), run the block only on
        ALLOW (ActionBlocked otherwise), then record `step.cost(...)` as a spend of the same
        scopes, as `step()` does: also when the block fails, and BudgetPaused if that spend
        stopped a scope. With `estimate_usd_cents` the ALLOW holds the estimate (a BLOCK
        `budget_exhausted:<scope>` when it cannot): the cost commits that hold, and a block
        that names no cost releases it.

        ```
        async with client.guarded("mail.send", agent_id="a1", args=mail) as step:
            send(mail, max_kb=step.verdict.obligations.get("max_response_size_kb"))
            step.cost(0.4)
        ```
        """
        key = idempotency_key or calls.new_idempotency_key()
        verdict = await self.authorize(
            tool, agent_id=agent_id, mission_id=mission_id, team_id=team_id,
            tenant_id=tenant_id, run_id=run_id, roles=roles, connector=connector, value=value,
            args=args, context=context, estimate_usd_cents=estimate_usd_cents, task_id=task_id,
            wait_ms=wait_ms, idempotency_key=key)
        if not verdict.allowed:
            raise errors.ActionBlocked(verdict)
        scopes = calls.scopes(agent_id, mission_id, team_id, tenant_id)
        step = Guarded(f"{key}/spend", scopes, task_id, verdict=verdict)
        if verdict.hold_id is None:
            async with self._recording(step):
                yield step
            return
        async with self._settling(step, verdict.hold_id):
            yield step

    @contextlib.asynccontextmanager
    async def _settling(self, step: Step, hold_id: str) -> AsyncIterator[None]:
        """A step under a hold: its cost commits the hold (also when the block failed: the
        money is gone); a step that named no cost releases it."""
        try:
            yield
        except BaseException as exc:
            try:
                await self._settle_hold(step, hold_id)
            except errors.ClawguardError as failed:
                exc.add_note(f"clawguard: the failed step's hold was not settled: {failed}")
            raise
        await self._settle_hold(step, hold_id)
        if step.outcome is not None:
            check_outcome(step.outcome)

    async def _settle_hold(self, step: Step, hold_id: str) -> None:
        if step.cents is None:
            await self.release_hold(hold_id)
            return
        cents = step.cents
        step.outcome = await self._outlasting(lambda: calls.commit_hold(hold_id, cents, {
            "taskId": step.task_id, "model": step.model, "inputTokens": step.input_tokens,
            "outputTokens": step.output_tokens}), None)

    @contextlib.asynccontextmanager
    async def _recording(self, step: Step) -> AsyncIterator[None]:
        """Record the step's cost after the block, also when it failed (the money is gone)."""
        try:
            yield
        except BaseException as exc:
            if step.cents is not None:
                try:
                    step.outcome = await self._record(step)
                except errors.ClawguardError as failed:
                    exc.add_note(f"clawguard: the failed step's cost was not recorded: {failed}")
            raise
        if step.cents is not None:
            step.outcome = await self._record(step)
            check_outcome(step.outcome)

    async def receipt(self, receipt_id: str) -> dict[str, Any]:
        """Everything behind a verdict: request, reasons, policy versions, access rule,
        settings, approval and its outcome (operator)."""
        return await self._run(calls.receipt(receipt_id))

    async def approval_settings(self) -> dict[str, Any]:
        return await self._run(calls.approval_settings())

    async def set_approval_settings(self, patch: Mapping[str, object]) -> dict[str, Any]:
        """Seed 000's PATCH: category_flags merge key by key; null puts a setting back."""
        return await self._run(calls.set_approval_settings(patch))

    async def enforcement_check(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        """`{allowed, blocking: [{kind, ...}]}` for an agent, mission, team or tenant."""
        return await self._run(calls.enforcement_check(resource_type, resource_id))

    async def governance_report(self, *, period: str | None = None) -> dict[str, Any]:
        """Seed 000's report over last_24_hours, last_7_days or last_30_days (default)."""
        return await self._run(calls.governance_report(period))

    async def approval_stats(self, *, period: str | None = None) -> dict[str, Any]:
        return await self._run(calls.approval_stats(period))

    # --- approvals --------------------------------------------------------------------

    async def request_tool_approval(
        self, tool_name: str, agent_id: str, *, args: Mapping[str, Any] | None = None,
        reason: str | None = None, task_id: str | None = None, tenant_id: str | None = None,
        wait_ms: int | None = None,
    ) -> records.Handshake:
        """Ask, and wait up to `wait_ms` (None: until the request expires) for a decision.

        Returns on allow_once or allow_always; raises ApprovalDenied on deny,
        expired or timeout (its `approval_id` can be waited on again). The wait
        rides out a daemon restart as `wait_for_approval` does.
        """
        opened = await self._run(calls.open_tool({
            "toolName": tool_name, "agentId": agent_id, "args": args, "reason": reason,
            "taskId": task_id, "tenantId": tenant_id}))
        return await self._await_handshake(opened, wait_ms)

    async def request_delegation_approval(
        self, leader_agent_id: str, *, kind: str | None = None,
        target_agent_name: str | None = None, task: str | None = None,
        task_id: str | None = None, tenant_id: str | None = None, wait_ms: int | None = None,
    ) -> records.Handshake:
        """As request_tool_approval, for a leader delegating `kind` work (default code)."""
        opened = await self._run(calls.open_delegation({
            "leaderAgentId": leader_agent_id, "kind": kind,
            "targetAgentName": target_agent_name, "task": task, "taskId": task_id,
            "tenantId": tenant_id}))
        return await self._await_handshake(opened, wait_ms)

    async def _await_handshake(self, opened: records.Handshake, wait_ms: int | None
                               ) -> records.Handshake:
        if allowed(opened):
            return opened
        assert opened.approval_id is not None
        decided = await self.wait_for_approval(opened.approval_id, wait_ms=wait_ms)
        return records.Handshake(resolution=decided.status, approval_id=decided.id)

    async def wait_for_approval(self, approval_id: str, *, wait_ms: int | None = None
                                ) -> records.Approval:
        """Wait up to `wait_ms` (None: until the request expires) for a decision; the
        allowing row, or ApprovalDenied.

        A dropped connection, a refused one or a 503 (a daemon restarting) does
        not end the wait: it re-attaches by id, with growing pauses, until
        `wait_ms` runs out (None: for `ride_out_s` of outage), and only then
        raises ApprovalDenied with resolution `timeout`, the connection error
        as its cause.
        """
        deadline = None if wait_ms is None else time.monotonic() + wait_ms / 1000
        while True:
            asked = time.monotonic()
            try:
                approval = await self._outlasting(
                    lambda: calls.get_approval(approval_id, _next_wait_ms(deadline)), deadline)
            except errors.Unavailable as exc:
                raise errors.ApprovalDenied("timeout", approval_id) from exc
            if approval.status != "pending" or (deadline is not None
                                                and _next_wait_ms(deadline) == 0):
                return settled(approval)
            # A daemon cutting long-polls short (or answering at once on its way down) is
            # not asked again in a tight loop.
            pause = MIN_POLL_S - (time.monotonic() - asked)
            if pause > 0:
                await self._sleep(pause)

    async def get_approval(self, approval_id: str, *, wait_ms: int | None = None
                           ) -> records.Approval:
        """One request as it is now; with `wait_ms`, after waiting that long for a decision."""
        return await self._run(calls.get_approval(approval_id, wait_ms))

    async def pending_page(self, *, every: bool = False, limit: int | None = None,
                           cursor: str | None = None) -> records.ApprovalPage:
        """One page of the pending queue, newest first: `limit` rows (the daemon's default
        100, at most 1,000), after `cursor` (a page's `next_cursor`). `every`: all pending
        requests, also those this key may not decide (a daemon may show a leader only its
        own agents' requests)."""
        return await self._run(calls.pending(every, limit, cursor))

    async def pending_approvals(self, *, every: bool = False, page_size: int = 1_000,
                                reviewer_me: bool = False) -> list[records.Approval]:
        """The whole pending queue, newest first, read a page at a time (`pending_page`).
        A request decided meanwhile may be missing; none is listed twice. `reviewer_me`:
        only those this key could vote on now (`?reviewer=me`)."""
        found: list[records.Approval] = []
        cursor: str | None = None
        while True:
            page = await self._run(calls.pending(every, page_size, cursor, reviewer_me))
            found += page.approvals
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor

    async def resolve_approval(self, approval_id: str, decision: records.Decision, *,
                               resolved_by: str | None = None,
                               grant_scope: records.GrantScope | None = None
                               ) -> records.Approval:
        """`grant_scope` (allow_always): "tool" grants the tool with any arguments (the
        daemon's default), "args" only this request's arguments."""
        return await self._run(calls.resolve(approval_id, decision, resolved_by, grant_scope))

    async def vote_approval(self, approval_id: str, decision: records.VoteDecision, *,
                            comments: str | None = None, conditions: str | None = None,
                            resolved_by: str | None = None) -> records.Approval:
        """A vote on an approval with stages (on one without: the decision). `conditional`
        needs `conditions`, which the executor gets as an obligation. The approval comes
        back still `pending` until the vote that completes or denies it."""
        return await self._run(calls.vote(approval_id, decision, comments, conditions,
                                          resolved_by))

    async def waive_approval(self, approval_id: str, reason: str) -> records.Approval:
        """An admin approves an approval with stages without its votes; `reason` required."""
        return await self._run(calls.waive(approval_id, reason))

    async def grants(self, *, agent_id: str | None = None) -> list[records.Grant]:
        return await self._run(calls.grants(agent_id))

    async def revoke_grant(self, grant_id: str, *, revoked_by: str | None = None
                           ) -> records.Grant:
        return await self._run(calls.revoke(grant_id, revoked_by))

    async def approval_history(self, *, agent_id: str | None = None, limit: int | None = None
                               ) -> list[records.HistoryRecord]:
        return await self._run(calls.history(agent_id, limit))

    async def record_history(self, agent_id: str, action: records.HistoryAction,
                             tool_name: str, *, details: Mapping[str, Any] | None = None
                             ) -> records.HistoryRecord:
        return await self._run(calls.record_history(agent_id, action, tool_name, details))


# --- what an answer means for the caller ------------------------------------------------


def _next_wait_ms(deadline: float | None) -> int:
    if deadline is None:
        return LONG_POLL_MS
    return max(0, min(LONG_POLL_MS, int((deadline - time.monotonic()) * 1000)))


def settled(approval: records.Approval) -> records.Approval:
    """The decided row, or ApprovalDenied: deny, expired, or still pending (timeout)."""
    if approval.status in records.ALLOWING:
        return approval
    resolution = "timeout" if approval.status == "pending" else approval.status
    raise errors.ApprovalDenied(resolution, approval.id)


def allowed(handshake: records.Handshake) -> bool:
    """True when allowed, False when pending (wait for it); else ApprovalDenied."""
    if handshake.resolution in records.ALLOWING:
        return True
    if handshake.resolution == "timeout" and handshake.approval_id is not None:
        return False
    raise errors.ApprovalDenied(handshake.resolution, handshake.approval_id)


def check_preflight(preflight: records.Preflight) -> None:
    if preflight.allowed:
        return
    if preflight.reason == "store_unavailable":
        raise errors.Unavailable(
            "the daemon cannot record spend now, so no step may start",
            code="store_unavailable",
        )
    paused = [state.scope for state in preflight.scopes if state.status == "paused"]
    reason = f"budget_paused:{paused[0]}" if paused else (preflight.reason or "not_allowed")
    raise errors.BudgetPaused(reason, list(preflight.scopes))


def check_outcome(outcome: records.SpendOutcome) -> None:
    if outcome.stop:
        raise errors.BudgetPaused(outcome.stop_reason or "budget_paused",
                                  outcome.scopes, outcome)
