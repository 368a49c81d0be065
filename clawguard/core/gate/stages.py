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

from clawguard.core import approvals, records
from clawguard.core.gate import policies

DEFAULT_STAGE_NAME: Final = "approval"


@dataclass(frozen=True, slots=True)
class Plan:
    """What an approval needs: its stages (in order) and whether a live sticky grant for
    (agent, tool) may stand in for it."""

    stages: tuple[policies.Stage, ...]
    sticky: bool
    default: bool  # True when the stages are the threshold's default, not a rule's

    def opened(self) -> list[records.Stage]:
        """The stages the approval opens with (core.approvals: an unnamed stage is named by
        its place, every gate without votes); the default is the threshold's one stage."""
        if self.default:
            return approvals.threshold_stages(self.stages[0].gates[0].count)
        return approvals.new_stages([
            {"name": stage.name,
             "gates": [{"group": gate.group, "count": gate.count} for gate in stage.gates]}
            for stage in self.stages
        ])

    def wire(self) -> list[dict[str, Any]]:
        """The opened stages as the approval shows them: `[{name, gates: [{group, count,
        votes: []}], status: pending}]`."""
        return [stage.model_dump(mode="json", by_alias=True, exclude_none=True)
                for stage in self.opened()]


def plan(approvals: Sequence[policies.Stage], sticky: bool, threshold: int) -> Plan:
    """The approval's plan from the matched ALERT rules' stages (`approvals`, policy-then-rule
    order) and `sticky` (False when any matched rule says sticky: false); `threshold` is
    the settings' approval_threshold, used only when no rule names stages."""
    if approvals:
        return Plan(tuple(approvals), sticky, default=False)
    default = policies.Stage((policies.Gate(threshold),), DEFAULT_STAGE_NAME)
    return Plan((default,), sticky, default=True)
