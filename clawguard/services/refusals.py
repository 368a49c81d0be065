"""Refused calls, folded: one `verification` audit row per (reason, key or address) per interval.

A refused call (401, 403) writes nothing on its own path: an audit row each
would let anyone with the address turn a wrong-key flood into a write flood
that starves the spends. Refusals are counted in memory instead, and every
`auth.refusal_audit_ms` a background flush appends one row per (reason, key
id, else remote address) with how many there were and the first and last
time; the last flush runs at shutdown. Counting never refuses anything: a
valid key from an address that also sent bad ones is served as always.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clawguard.core import audit, errors, principals
from clawguard.services import periodic
from clawguard.store import contract

log = logging.getLogger(__name__)

# Distinct (reason, who) tallies kept between flushes; beyond it, refusals from new
# addresses fold into one row per reason, so a flood from many addresses stays bounded.
MAX_TALLIES = 10_000
OTHERS = "(others)"


@dataclass
class _Tally:
    count: int
    first_at: int
    last_at: int
    method: str  # of the first refusal
    path: str
    remote: str | None
    principal: principals.Principal | None

    def event(self, reason: str) -> audit.Event:
        details: dict[str, Any] = {
            "reason": reason, "count": self.count, "firstAt": self.first_at,
            "lastAt": self.last_at, "method": self.method, "path": self.path,
            "remote": self.remote,
        }
        if self.principal is not None:
            details |= {"keyId": self.principal.key_id, "keyName": self.principal.name,
                        "role": self.principal.role}
        return audit.Event("verification", "auth.refused", None, details)


class Refusals:
    """The tallies since the last flush, and the task that flushes them."""

    def __init__(
        self, db: contract.Store, clock: Callable[[], int], interval_ms: int
    ) -> None:
        self._db = db
        self._clock = clock
        self._tallies: dict[tuple[str, str], _Tally] = {}
        self._loop = periodic.Periodic("refusal audit", interval_ms / 1000, self.flush)

    def note(
        self, reason: str, principal: principals.Principal | None, remote: str | None,
        method: str, path: str,
    ) -> None:
        """Count one refused call; never the key itself, only which key it was, if known."""
        who = principal.key_id if principal is not None else f"remote:{remote}"
        now = self._clock()
        tally = self._tallies.get((reason, who))
        if tally is None and len(self._tallies) >= MAX_TALLIES:
            who, remote = OTHERS, OTHERS
            tally = self._tallies.get((reason, who))
        if tally is None:
            self._tallies[(reason, who)] = _Tally(1, now, now, method, path, remote, principal)
        else:
            tally.count += 1
            tally.last_at = now

    @property
    def pending(self) -> int:
        """Refused calls counted and not yet written."""
        return sum(tally.count for tally in self._tallies.values())

    async def flush(self) -> int:
        """Append one audit row per tally; how many rows. Kept for the next flush when the
        store cannot take them."""
        tallies, self._tallies = self._tallies, {}
        if not tallies:
            return 0
        outcomes = await asyncio.gather(
            *(self._db.audit_event(tally.event(reason)) for (reason, _), tally in tallies.items()),
            return_exceptions=True,
        )
        written = 0
        for (key, tally), outcome in zip(tallies.items(), outcomes, strict=True):
            if outcome is None:
                written += 1
                continue
            if not isinstance(outcome, errors.StoreUnavailable):
                log.error("could not audit %d refused call(s): %r", tally.count, outcome)
            self._merge_back(key, tally)
        if written < len(tallies):
            log.warning("could not audit %d kind(s) of refused calls; retrying at the next"
                        " flush", len(tallies) - written)
        return written

    def _merge_back(self, key: tuple[str, str], tally: _Tally) -> None:
        newer = self._tallies.get(key)
        if newer is None:
            self._tallies[key] = tally
        else:
            newer.count += tally.count
            newer.first_at = tally.first_at
            newer.method, newer.path = tally.method, tally.path

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        """Stop the periodic flush, then flush what is left."""
        await self._loop.stop()
        await self.flush()
