"""Writes that share one transaction: one commit, and one turn at the audit head, for many.

Every write that appends to the audit chain locks its one head row until it
commits, so written one transaction each, the writes of every instance queue on
that row for a commit apiece (approval openings and authorize receipts; decisions
have batches of their own, approvals.decide_all). A batch runs its jobs in turn,
each in its own savepoint, holds back their audit events (audit_log.deferred)
and appends them all at its end, so the head is still the last lock the
transaction takes.

A job that raises a domain error rolls back to its savepoint and answers that
error; one that loses a race (a unique key another instance took first, a
deadlock, connection.Retry) runs again in a new savepoint and reads what the
other transaction committed. Jobs that lock several rows of one kind (budget
rows) are not batched this way, since two batches could take them in opposite
orders: spends and holds have set-based batches that lock all of theirs at
once, in the one order (budgets.record_spends, holds.run_steps).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from clawguard.core import audit, errors
from clawguard.store.postgres import audit_log, connection

Job = Callable[[connection.Connection, int], Awaitable[Any]]


async def run_jobs(conn: connection.Connection, now: int, jobs: Sequence[Job]) -> list[Any]:
    """Each job's result or domain error, in order; their audit rows appended last."""
    events: list[audit.Event] = []
    outcomes = [await _run_one(conn, now, job, events) for job in jobs]
    await audit_log.append(conn, now, events)
    return outcomes


async def _run_one(conn: connection.Connection, now: int, job: Job,
                   events: list[audit.Event]) -> Any:
    for attempt in range(1, connection.MAX_ATTEMPTS + 1):
        held: list[audit.Event] = []
        token = audit_log.deferred.set(held)
        try:
            async with conn.transaction():  # a savepoint of the batch's transaction
                result = await job(conn, now)
        except errors.ClawguardError as exc:
            return exc
        except (connection.Retry, *connection.RETRYABLE) as exc:
            if attempt == connection.MAX_ATTEMPTS:
                return connection.unavailable(exc, "written (it stayed contended)")
            continue
        finally:
            audit_log.deferred.reset(token)
        events.extend(held)
        return result
    raise AssertionError("unreachable")
