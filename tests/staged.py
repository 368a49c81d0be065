"""Opening approvals with stages in tests: the gate's authorize opens them in the daemon;
here they open through the handshake service's own path (Approvals.request)."""

from __future__ import annotations

from typing import Any

from clawguard.core import approvals, principals, records
from clawguard.http import state
from clawguard.services import handshake


def new(
    stages: list[dict[str, Any]], agent: str = "a1", tool: str = "deploy",
    requester: principals.Principal = principals.ANONYMOUS, sticky: bool = True,
) -> records.NewApproval:
    """`stages` as rules declare them: [{name?, gates: [{group?, count}]}]."""
    return approvals.new_request(
        handshake.new_approval_id(), tool, agent, {"env": "prod"}, "ship it", "task-1", None,
        requester, approvals.new_stages(stages), sticky,
    )


async def open_staged(app: Any, stages: list[dict[str, Any]], **fields: Any) -> str:
    """Open one on a running app (waitMs 0: the handshake answers at once); its id."""
    answer = await app[state.APPROVALS].request(new(stages, **fields), 0)
    assert answer.resolution == "timeout" and answer.approval_id is not None
    return str(answer.approval_id)
