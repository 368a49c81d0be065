"""The stages an approval opened by the gate carries, and whether a sticky grant may satisfy it.

An ALERT's approval takes the `approvals` of its matched ALERT rules,
concatenated in policy-then-rule order and used as given (the evaluator
already lists them so: `Verdict.approvals`). When no matched rule names any,
it gets the default: one stage with one gate whose count is the settings'
`approval_threshold`. The threshold never changes stages a rule named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from clawguard.core.gate import policies

DEFAULT_STAGE_NAME: Final = "approval"


@dataclass(frozen=True, slots=True)
class Plan:
    """What an approval needs: its stages (in order) and whether a live sticky grant for
    (agent, tool) may stand in for it."""

    stages: tuple[policies.Stage, ...]
    sticky: bool
    default: bool  # True when the stages are the threshold's default, not a rule's

    def wire(self) -> list[dict[str, Any]]:
        """`[{name, gates: [{group?, count, votes: []}], status}]` as the approval opens:
        every stage pending, no votes yet (an unnamed stage is named by its place)."""
        return [
            {
                "name": stage.name if stage.name is not None else f"stage-{index + 1}",
                "gates": [
                    {**({"group": g.group} if g.group is not None else {}), "count": g.count,
                     "votes": []}
                    for g in stage.gates
                ],
                "status": "pending",
            }
            for index, stage in enumerate(self.stages)
        ]


def plan(approvals: Sequence[policies.Stage], sticky: bool, threshold: int) -> Plan:
    """The approval's plan from the matched ALERT rules' stages (`approvals`, policy-then-rule
    order) and `sticky` (False when any matched rule says sticky: false); `threshold` is
    the settings' approval_threshold, used only when no rule names stages."""
    if approvals:
        return Plan(tuple(approvals), sticky, default=False)
    default = policies.Stage((policies.Gate(threshold),), DEFAULT_STAGE_NAME)
    return Plan((default,), sticky, default=True)
