"""The ledger's invariant, checked: every budget's spent is the sum of the charges made to it,
and every charge is its spend's cost (no I/O: engines read the figures, this judges them).

The audit chain proves the audit rows; this proves the money a row of `budgets` claims, so
a `spent` edited in the database is caught although no audit row changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

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
