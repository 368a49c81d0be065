"""The approval handshake: open a request, park its callers, wake them on a decision or expiry.

Waiting never polls. The registry maps each request id being waited on to
its parked callers, one future each; the decision, the reaper's expiry or
shutdown completes all of them in one pass, so they wake at once. A caller's
own deadline puts its future in a bucket of the deadline wheel (one loop timer
per bucket, not per caller). A caller is registered before the row can be read
or decided, so no decision can slip between the two.

A parked handshake is its future and nothing else: the future computes its
own answer when woken, so no coroutine of this module waits with it (the
handler awaits the future). 10,000 parked agents cost what each keeps
(bench/README.md, approvals.py).

The expiry rule (`models.Approval.as_of`): a pending row past `expiresAt` is
expired to every reader, before the reaper writes it. A caller's own deadline
(`approvals.wait_ms`, or a shorter `waitMs`) answers `timeout` and leaves the
row pending for a re-attach. Anything unexpected inside the handshake answers
`deny` (fail closed) and is logged. No aiohttp here.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from clawguard.core import approvals, commands, errors, principals, records
from clawguard.runtime import config, metrics
from clawguard.store import contract

log = logging.getLogger(__name__)

Clock = Callable[[], int]
B = TypeVar("B")
T = TypeVar("T")

EXPIRE_BATCH = 500
# asyncio may fire a timer up to its clock resolution early; a wait that ends at
# the row's expiry waits this much longer so the clock has surely reached it.
_EXPIRY_SLACK_S = 0.005


def new_approval_id() -> str:
    return "apr_" + secrets.token_hex(8)


# Whether an asker may vote on its own request, when something other than the stored
# approval settings' allow_self_approval is to say so (tests). Without one, each vote's
# transaction reads the stored setting (never cached: a PATCH applies to the next vote).
SelfApproval = Callable[[], Awaitable[bool]]


def _prebuilt(
    new: records.NewApproval, requester: principals.Principal, approval_id: str
) -> records.NewApproval:
    return new


def _require_scope(caller: principals.Principal, agent_id: str | None) -> None:
    """Forbidden when the caller names an agent it may not act for."""
    refusal = None if agent_id is None else caller.refusal_to_see(agent_id)
    if refusal is not None:
        raise errors.Forbidden(refusal, {"agentId": agent_id})


# The deadline wheel's resolution: a caller's own deadline ends up to this much late.
_TICK_S = 0.01
_NO_EXPIRY = 1 << 62


class _Parked(asyncio.Future[Any]):
    """One parked caller: completed by a decision, its deadline (a wheel bucket) or
    shutdown. Slots, not a dict: thousands are parked at once."""

    __slots__ = ("_owner", "approval_id", "due")

    def __init__(self, owner: Approvals, approval_id: str) -> None:
        super().__init__()
        self._owner = owner
        self.approval_id = approval_id
        self.due: _Bucket | None = None  # its bucket of the deadline wheel, once armed

    def end(self, approval: records.Approval | None) -> None:
        """The row decided or expired (None: the deadline or shutdown came first)."""
        self._owner._disarm(self)
        if not self.done():
            self.set_result(approval)

    def cancel(self, msg: Any | None = None) -> bool:
        # The awaiting task was cancelled (shutdown past its timeout): forget this caller.
        self._owner._unpark(self)
        self._owner._disarm(self)
        return super().cancel(msg)


class _Handshake(_Parked):
    """A parked handshake: completes with the caller's answer (records.Handshake, as
    `answer` makes it: the handler's response), which it computes itself when woken, so
    nothing else waits along with it."""

    __slots__ = ("answer", "expires_at", "started")

    def __init__(
        self, owner: Approvals, approval_id: str, answer: Callable[[records.Handshake], Any]
    ) -> None:
        super().__init__(owner, approval_id)
        self.answer = answer
        self.expires_at = _NO_EXPIRY  # known once the row is stored
        self.started = -1.0  # when the wait began (loop time); < 0: not observed

    def end(self, approval: records.Approval | None) -> None:
        owner = self._owner
        owner._disarm(self)
        if self.done():
            return
        try:
            if approval is not None:
                resolution = approvals.resolution_of(approval)
            else:
                resolution = "expired" if owner._clock() >= self.expires_at else "timeout"
            if self.started >= 0:  # an open with waitMs 0 (then re-attach) waited for nobody
                owner._observe_wait(resolution, self.started)
            handshake = records.Handshake(resolution=resolution, approval_id=self.approval_id)
        except Exception:  # fail closed
            log.exception("approval handshake failed (%s); answering deny", self.approval_id)
            handshake = records.Handshake(resolution="deny", approval_id=self.approval_id)
        try:
            answer = self.answer(handshake)
        except Exception as exc:  # this caller's alone: the others woken with it still hear
            log.exception("cannot answer approval %s", self.approval_id)
            self.set_exception(exc)
        else:
            self.set_result(answer)


# A bucket of the deadline wheel: its tick (loop time / _TICK_S), timer and callers.
_Bucket = tuple[int, asyncio.TimerHandle, list[_Parked]]


def _answered(answer: T) -> asyncio.Future[T]:
    done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    done.set_result(answer)
    return done


def _handshake(handshake: records.Handshake) -> records.Handshake:
    return handshake


class Approvals:
    """The handshake over one store; one per app, closed at shutdown."""

    def __init__(
        self, db: contract.Store, settings: config.ApprovalsConfig, clock: Clock,
        counters: metrics.Metrics, allow_self_approval: SelfApproval | None = None,
    ) -> None:
        self._db = db
        self._allow_self_approval = allow_self_approval
        self._metrics = counters
        self._settings = settings
        self._clock = clock
        # Request id -> its parked callers, one small future each: a decision
        # completes them all in one pass. A parked wait holds only its future
        # (no shield, no copied models, no coroutine of its own).
        # One caller of an id (by far the most usual) is kept without a list.
        self._waiters: dict[str, _Parked | list[_Parked]] = {}
        # The deadline wheel: tick (loop time / _TICK_S) -> the bucket of the callers whose
        # deadline ends in it, with its one timer.
        self._due: dict[int, _Bucket] = {}
        self._timer_context = contextvars.Context()  # shared: timers need no context copy
        self._parked = 0
        self._closing = False
        self._rereads: set[asyncio.Task[None]] = set()  # held so they are not collected

    @property
    def parked(self) -> int:
        """How many callers are waiting for a decision now (their deadlines set)."""
        return self._parked

    @property
    def watched(self) -> int:
        """How many request ids have a caller registered (parked, or about to be)."""
        return len(self._waiters)

    # --- the blocking handshake --------------------------------------------------

    async def ask_tool(
        self, body: commands.ToolApprovalRequest, requester: principals.Principal,
        answer: Callable[[records.Handshake], T],
    ) -> asyncio.Future[T]:
        """Open a tool request (or short-circuit on a grant): the future of the caller's
        answer, `answer(handshake)` (the HTTP handler's response: the handler need not
        wait along)."""
        return await self._open(approvals.tool_request, body, requester, body.wait_ms, answer)

    async def ask_delegation(
        self, body: commands.DelegationApprovalRequest, requester: principals.Principal,
        answer: Callable[[records.Handshake], T],
    ) -> asyncio.Future[T]:
        return await self._open(
            approvals.delegation_request, body, requester, body.wait_ms, answer)

    async def request(self, new: records.NewApproval, wait_ms: int | None) -> records.Handshake:
        """The handshake for a request already built (core.approvals.new_request), with
        stages or without: open it (or short-circuit on a grant) and wait up to `wait_ms`.
        An approval with stages wakes its waiters only with its final outcome."""
        return await (await self._open(
            _prebuilt, new, principals.ANONYMOUS, wait_ms, _handshake))

    async def _open(
        self, build: Callable[[B, principals.Principal, str], records.NewApproval], body: B,
        requester: principals.Principal, wait_ms: int | None,
        answer: Callable[[records.Handshake], T],
    ) -> asyncio.Future[T]:
        """Store the request and park its caller: the future of the caller's answer, done
        already on a grant, a failure (deny), or waitMs 0 (timeout)."""
        approval_id: str | None = None  # set once the pending row exists
        parked: _Handshake | None = None
        try:
            new = build(body, requester, new_approval_id())
            parked = _Handshake(self, new.id, answer)
            self._park(parked)  # before the row exists: no decision is missed
            opened = await self._db.open_approval(new, self._settings.ttl_ms)
            if opened.grant is not None:
                self._forget(parked)
                return _answered(answer(records.Handshake(resolution="allow_always")))
            assert opened.approval is not None
            approval_id = opened.approval.id
            parked.expires_at = opened.approval.expires_at
            seconds = self._wait_seconds(wait_ms)
            if seconds <= 0:  # waitMs 0 (then re-attach): answered now, no wait observed
                self._forget(parked)
                parked.end(None)
            elif not parked.done():
                parked.started = asyncio.get_running_loop().time()
                self._arm(parked, seconds)
            return parked
        except BaseException as exc:
            if parked is not None:
                self._forget(parked)
            if not isinstance(exc, Exception):
                raise
            # Fail closed: whatever went wrong, the caller is not allowed.
            log.exception("approval handshake failed (%s); answering deny", approval_id)
            return _answered(answer(records.Handshake(resolution="deny", approval_id=approval_id)))

    # --- reading and re-attaching --------------------------------------------------

    async def get(
        self, approval_id: str, viewer: principals.Principal, wait_ms: int | None = None
    ) -> records.Approval:
        """One row as it acts now; with `wait_ms`, first wait that long for its decision. A
        request of an agent the viewer does not lead is not found, as an unknown id is."""
        seconds = self._wait_seconds(wait_ms) if wait_ms else 0.0
        if seconds <= 0:
            return self._as_of_now(await self._require(approval_id, viewer))
        waiter = _Parked(self, approval_id)
        self._park(waiter)  # before the read, so a decision cannot slip between
        try:
            approval = self._as_of_now(await self._require(approval_id, viewer))
            if approval.status != "pending":
                return approval
            started = asyncio.get_running_loop().time()
            if not waiter.done():
                self._arm(waiter, min(seconds, self._until_expiry(approval.expires_at)))
            woken: records.Approval | None = await waiter
            approval = self._as_of_now(approval) if woken is None else woken
            self._observe_wait(approvals.resolution_of(approval), started)
            return approval
        finally:
            self._forget(waiter)

    def _observe_wait(self, resolution: records.Resolution, started: float) -> None:
        """How long a caller waited for people, by what it heard (re-attaches included)."""
        waited = asyncio.get_running_loop().time() - started
        self._metrics.approval_wait.labels(resolution).observe(waited)

    async def pending(
        self, viewer: principals.Principal, limit: int, after: records.PendingKey | None = None
    ) -> tuple[list[records.Approval], records.PendingKey | None]:
        """A page of the pending requests of the agents the viewer may act for, newest first,
        and where the next page starts (None: this was the last). The store filters by the
        leader's agents, so a page is never short for rows the viewer may not see."""
        rows = await self._db.list_pending_approvals(
            self._clock(), limit + 1, after, viewer.leads)
        page = [row for row in rows[:limit] if viewer.may_act_for(row.agent_id)]
        return page, records.PendingKey.of(page[-1]) if len(rows) > limit and page else None

    async def reviews(
        self, viewer: principals.Principal, limit: int, after: records.PendingKey | None = None
    ) -> tuple[list[records.Approval], records.PendingKey | None]:
        """`?reviewer=me`: a page of the pending requests the viewer could vote on (or decide)
        now, newest first (core.approvals.may_vote); read on until the page is full."""
        allow_self = await self._self_approval_now()
        page: list[records.Approval] = []
        while True:
            now = self._clock()
            rows = await self._db.list_pending_approvals(now, limit + 1, after, viewer.leads)
            for row in rows[:limit]:
                if approvals.may_vote(row, viewer, None, allow_self, now):
                    page.append(row)
                    if len(page) == limit:
                        more = len(rows) > limit or row is not rows[-1]
                        return page, records.PendingKey.of(row) if more else None
            if len(rows) <= limit:
                return page, None
            after = records.PendingKey.of(rows[limit - 1])

    async def _self_approval_now(self) -> bool:
        if self._allow_self_approval is not None:
            return await self._allow_self_approval()
        return (await self._db.get_settings()).allow_self_approval

    # --- deciding ---------------------------------------------------------------------

    async def vote(
        self, approval_id: str, ballot: approvals.Ballot, resolved_by: str | None,
        voter: principals.Principal, grant_scope: records.GrantScope = "tool",
    ) -> records.Approval:
        """One vote (on an approval without stages: the decision), counted once whatever
        races it; its waiters are woken only when the approval is decided."""
        allow_self = None
        if self._allow_self_approval is not None:
            allow_self = await self._allow_self_approval()
        try:
            approval = await self._db.vote_approval(
                approval_id, ballot, resolved_by, voter, allow_self,
                self._settings.sticky_ttl_ms, grant_scope,
            )
        except errors.Refused as refused:
            await self._audit_refusal(refused)
            raise
        if approval.status != "pending":
            self._wake(approval.id, approval)
            # One turn of the loop, so the woken waiters answer before this voter
            # does: their agents are blocked, the leader is not. Without it, a batch
            # of votes committed together answers every voter before any waiter.
            await asyncio.sleep(0)
        return approval

    async def waive(
        self, approval_id: str, reason: str, resolved_by: str | None,
        admin: principals.Principal,
    ) -> records.Approval:
        """An admin approves an approval with stages without its votes; wakes its waiters."""
        approval = await self._db.waive_approval(approval_id, reason, resolved_by, admin)
        self._wake(approval.id, approval)
        await asyncio.sleep(0)
        return approval

    async def expire_due(self) -> int:
        """Write every pending row past expiry as expired and wake its waiters; how many.

        A read first: the reaper sweeps every approvals.sweep_ms and most sweeps find
        nothing due, which then costs no write transaction and no turn of the writer.
        """
        if not await self._db.any_approval_due(self._clock()):
            return 0
        count = 0
        while True:
            expired = await self._db.expire_approvals(EXPIRE_BATCH)
            for approval in expired:
                self._wake(approval.id, approval)
            count += len(expired)
            if len(expired) < EXPIRE_BATCH:
                return count

    # --- sticky grants and history ------------------------------------------------------

    async def grants(
        self, viewer: principals.Principal, agent_id: str | None = None
    ) -> list[records.Grant]:
        """Live grants (of `agent_id`, else of every agent) that the viewer may see."""
        _require_scope(viewer, agent_id)
        rows = await self._db.list_grants(self._clock(), agent_id)
        return [row for row in rows if viewer.may_act_for(row.agent_id)]

    async def revoke(
        self, grant_id: str, revoked_by: str | None, revoker: principals.Principal
    ) -> records.Grant:
        try:
            return await self._db.revoke_grant(grant_id, revoked_by, revoker)
        except errors.Refused as refused:
            await self._audit_refusal(refused)
            raise

    async def _audit_refusal(self, refused: errors.Refused) -> None:
        """A refused decision's verification row, in a write of its own: the refused write
        was rolled back, and its audit rows with it."""
        try:
            await self._db.audit_event(refused.event)
        except errors.StoreUnavailable as exc:  # the refusal stands either way
            log.warning("could not audit a refused decision (%s): %s", refused.message, exc)

    async def history(
        self, viewer: principals.Principal, agent_id: str | None, limit: int
    ) -> list[records.HistoryRecord]:
        """The newest `limit` history rows (of `agent_id`, else of every agent the viewer
        may see)."""
        _require_scope(viewer, agent_id)
        if agent_id is not None or viewer.leads is None:
            return await self._db.list_history(agent_id, limit)
        # A leader's agents are few: the newest `limit` of each, merged, are the newest
        # `limit` of them all.
        each = await asyncio.gather(*(self._db.list_history(agent, limit)
                                      for agent in sorted(viewer.leads)))
        merged = sorted((row for rows in each for row in rows), key=lambda row: -row.id)
        return merged[:limit]

    async def record(
        self, body: commands.HistoryAppend, writer: principals.Principal
    ) -> records.HistoryRecord:
        """Append by hand to the history of an agent the writer may act for."""
        _require_scope(writer, body.agent_id)
        details = None if body.details is None else approvals.json_text(body.details)
        return await self._db.append_history(body.agent_id, body.action, body.tool_name, details)

    def heard(self, approval_id: str, approval: records.Approval | None = None) -> None:
        """Another daemon on the same database decided or expired `approval_id` (the store's
        notification): wake the callers parked on it here with the decided row it carried,
        else with the row as read now."""
        if approval is not None and approval.status != "pending":
            self._wake(approval_id, approval)
        elif approval_id in self._waiters and not self._closing:
            task = asyncio.get_running_loop().create_task(self._reread(approval_id))
            self._rereads.add(task)
            task.add_done_callback(self._rereads.discard)

    async def _reread(self, approval_id: str) -> None:
        try:
            approval = await self._db.get_approval(approval_id)
        except errors.StoreUnavailable as exc:  # the waiters' own deadlines still run
            log.warning("cannot read approval %s after a notification: %s", approval_id, exc)
            return
        if approval is not None and (approval := self._as_of_now(approval)).status != "pending":
            self._wake(approval_id, approval)

    # --- shutdown -----------------------------------------------------------------------

    def close(self) -> None:
        """Answer every parked wait now (as `timeout`, the rows stay pending); park no more."""
        self._closing = True
        for approval_id in list(self._waiters):
            self._wake(approval_id, None)

    # --- the waiters registry -----------------------------------------------------------

    def _wait_seconds(self, wait_ms: int | None) -> float:
        limit = self._settings.wait_ms
        return (limit if wait_ms is None else min(wait_ms, limit)) / 1000

    def _as_of_now(self, approval: records.Approval) -> records.Approval:
        return approval.as_of(self._clock())

    async def _require(
        self, approval_id: str, viewer: principals.Principal
    ) -> records.Approval:
        approval = await self._db.get_approval(approval_id)
        if approval is None or not viewer.may_act_for(approval.agent_id):
            raise errors.NotFound(f"no approval {approval_id}")
        return approval

    def _park(self, parked: _Parked) -> None:
        if self._closing:
            parked.end(None)
            return
        others = self._waiters.setdefault(parked.approval_id, parked)
        if isinstance(others, list):
            others.append(parked)
        elif others is not parked:
            self._waiters[parked.approval_id] = [others, parked]

    def _unpark(self, parked: _Parked) -> None:
        waiters = self._waiters.get(parked.approval_id)
        if waiters is parked:
            del self._waiters[parked.approval_id]
        elif isinstance(waiters, list) and parked in waiters:
            waiters.remove(parked)
            if not waiters:
                del self._waiters[parked.approval_id]

    def _forget(self, parked: _Parked) -> None:
        """The caller goes: out of the registry and the wheel (its future left as it is)."""
        self._unpark(parked)
        self._disarm(parked)

    def _wake(self, approval_id: str, approval: records.Approval | None) -> None:
        waiters = self._waiters.pop(approval_id, None)
        for parked in waiters if isinstance(waiters, list) else (waiters,) if waiters else ():
            parked.end(approval)

    def _until_expiry(self, expires_at: int) -> float:
        return (expires_at - self._clock()) / 1000 + _EXPIRY_SLACK_S

    def _arm(self, parked: _Parked, seconds: float) -> None:
        """Start the caller's deadline: `seconds`, or the row's expiry if sooner (by this
        caller's own clock, ahead of the reaper)."""
        if isinstance(parked, _Handshake):
            seconds = min(seconds, self._until_expiry(parked.expires_at))
        loop = asyncio.get_running_loop()
        # The bucket's end is never before the deadline: a caller ends late by < _TICK_S.
        tick = math.ceil((loop.time() + max(0.0, seconds)) / _TICK_S)
        due = self._due.get(tick)
        if due is None:
            timer = loop.call_at(tick * _TICK_S, self._deadlines, tick,
                                 context=self._timer_context)
            due = self._due[tick] = (tick, timer, [])
        due[2].append(parked)
        parked.due = due  # the bucket, shared: no object of its own per caller
        self._parked += 1

    def _disarm(self, parked: _Parked) -> None:
        due, parked.due = parked.due, None
        if due is None:
            return
        self._parked -= 1
        tick, timer, callers = due
        callers.remove(parked)
        if not callers:
            timer.cancel()
            del self._due[tick]

    def _deadlines(self, tick: int) -> None:
        """A bucket of the wheel is due: its callers' deadlines (or expiries) came first."""
        _, _, callers = self._due.pop(tick)
        self._parked -= len(callers)
        for parked in callers:
            parked.due = None
            self._unpark(parked)
            parked.end(None)
