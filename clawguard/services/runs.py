"""Runs as executors and operators meet them: start, end, breaker events, quotas.

The store applies clawguard.core.runs inside its transactions; this adds the
settings (plan defaults, breaker and delegation limits), the time reads are
made at, and the metrics.
"""

from __future__ import annotations

from collections.abc import Callable

from clawguard.core import commands, errors, records, runs
from clawguard.runtime import config, metrics
from clawguard.store import contract


class Runs:
    def __init__(self, db: contract.Store, cfg: config.Config, clock: Callable[[], int],
                 counters: metrics.Metrics) -> None:
        self._db, self._clock, self._metrics = db, clock, counters
        self._rules = cfg.run_rules()
        self._plan_name = cfg.quotas.plan
        self._plan = cfg.quotas.defaults()

    async def start(self, request: commands.RunStart) -> records.Run:
        try:
            started = await self._db.start_run(request, self._plan, self._rules)
        except errors.QuotaExceeded as exc:
            self._metrics.quota_refusals.labels(exc.details["key"]).inc()
            raise
        except errors.DelegationCap as exc:
            self._metrics.delegation_refusals.labels(exc.details["cap"]).inc()
            raise
        if not started.replayed:
            self._metrics.runs_started.inc()
        return started.run.as_of(self._clock())

    async def end(self, run_id: str) -> records.Run:
        return (await self._db.end_run(run_id)).as_of(self._clock())

    async def events(self, run_id: str, events: list[commands.RunEvent]) -> records.RunEvents:
        applied = await self._db.run_events(run_id, events, self._rules)
        if applied.tripped is not None:
            self._metrics.breaker_trips.labels(applied.tripped.reason).inc()
        return records.RunEvents(run=applied.run, tripped=applied.tripped)

    async def get(self, run_id: str) -> records.Run:
        run = await self._db.get_run(run_id)
        if run is None:
            raise errors.NotFound(f"no run {run_id}")
        return run.as_of(self._clock())

    async def list(self, status: records.RunStatus | None, agent_id: str | None,
                   limit: int) -> list[records.Run]:
        now = self._clock()
        return [run.as_of(now) for run in await self._db.list_runs(status, agent_id, now, limit)]

    async def tripped(self, run_id: str) -> bool:
        """Whether the run's breakers stopped it (NotFound for an unknown run)."""
        return (await self.get(run_id)).status == "tripped"

    async def quota(self, tenant_id: str) -> records.Quota:
        overrides = await self._db.quota_overrides(tenant_id)
        return runs.quota_view(self._plan_name, self._plan, overrides)

    async def set_quota(self, tenant_id: str, patch: dict[str, object]) -> records.Quota:
        checked = runs.check_patch(patch, self._plan)
        overrides = await self._db.set_quota_overrides(tenant_id, checked)
        return runs.quota_view(self._plan_name, self._plan, overrides)
