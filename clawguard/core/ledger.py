"""The ledger's invariant, checked: every budget's spent is the sum of the charges made to it,
and every charge is its spend's cost (no I/O: engines read the figures, this judges them).

The audit chain proves the audit rows; this proves the money a row of `budgets` claims, so
a `spent` edited in the database is caught although no audit row changed. And a running
digest over the ledger's rows, written into the audit chain as checkpoints, proves the
rows themselves: one deleted, added or edited after its checkpoint is named.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from clawguard.core import audit

# (budget id, spent micros on the row, sum of the micros charged to it)
Level = tuple[str, int, int]
# (budget id, spend id, micros charged, the spend's cost in micros, None when it is missing)
Charge = tuple[str, int, int, int | None]


@dataclass(frozen=True)
class Verdict:
    ok: bool
    budgets: int
    problems: list[str]


def verify(levels: Iterable[Level], wrong_charges: Iterable[Charge]) -> Verdict:
    problems, count = [], 0
    for budget_id, spent, charged in levels:
        count += 1
        if spent != charged:
            problems.append(f"budget {budget_id}: spent {spent} micros, but its charges sum"
                            f" to {charged}")
    for budget_id, spend_id, micros, cost in wrong_charges:
        if cost is None:
            problems.append(f"budget {budget_id}: charged {micros} micros by spend {spend_id},"
                            " which is not in the ledger")
        else:
            problems.append(f"budget {budget_id}: charged {micros} micros by spend {spend_id},"
                            f" which cost {cost}")
    return Verdict(not problems, count, problems)


# --- the running digest: ledger rows covered by the audit chain ----------------------------

# (spend id, ledger key, fingerprint, cost micros, created at): what a spend row commits to.
SpendRow = tuple[int, str | None, str, int, int]
CHECKPOINT = "ledger.checkpoint"
GENESIS = "0" * 64
# Spends younger than this are left to the next checkpoint: on PostgreSQL ids are taken
# before commit, so a lower id may still commit after a higher one for a moment.
SETTLE_MS = 10_000


def digest(prev: str, rows: Iterable[SpendRow]) -> tuple[str, int]:
    """The running digest after `rows` (in id order), and how many there were."""
    count = 0
    for row in rows:
        prev = hashlib.sha256((prev + audit.canonical(list(row))).encode()).hexdigest()
        count += 1
    return prev, count


def checkpoint(prev: tuple[int, str] | None, rows: list[SpendRow]) -> audit.Event | None:
    """The audit event that covers `rows` (the spends after the last checkpoint's, in id
    order, settled), chained to `prev` ((last spend id, digest) of that checkpoint)."""
    if not rows:
        return None
    from_id, prev_digest = prev if prev is not None else (0, GENESIS)
    new_digest, count = digest(prev_digest, rows)
    return audit.Event("verification", CHECKPOINT, None, {
        "fromSpendId": from_id, "lastSpendId": rows[-1][0], "spends": count,
        "prevDigest": prev_digest, "digest": new_digest,
    })


def checkpoint_end(details: str | dict[str, Any]) -> tuple[int, str]:
    """(last spend id, digest) of a checkpoint row's details, as stored."""
    point = json.loads(details) if isinstance(details, str) else details
    return int(point["lastSpendId"]), str(point["digest"])


def verify_checkpoints(
    spends: list[SpendRow], checkpoints: Iterable[dict[str, Any]]
) -> tuple[list[str], int]:
    """Problems found by recomputing every checkpoint from the ledger, and the highest spend
    id the unbroken chain of checkpoints covers (rows above it are not covered yet)."""
    problems: list[str] = []
    ends = {0: GENESIS}  # last spend id -> digest, of the checkpoints verified so far
    for point in checkpoints:
        first, last = point["fromSpendId"], point["lastSpendId"]
        if ends.get(first) != point["prevDigest"]:
            problems.append(f"ledger checkpoint after spend {first} does not follow one before")
            continue
        rows = [row for row in spends if first < row[0] <= last]
        found, count = digest(point["prevDigest"], rows)
        if (found, count) != (point["digest"], point["spends"]):
            problems.append(f"spends {first + 1}..{last}: {count} rows now, {point['spends']}"
                            " when checkpointed, and their digest differs (a row was"
                            " deleted, added or edited)")
            continue
        ends[last] = found
    return problems, max(ends)
