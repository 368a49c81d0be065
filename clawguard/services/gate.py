"""The action gate's compiled state, one copy a process, and the verdict authorize asks for.

Policies, tools, tool policies, role overrides and the approval settings are
compiled once and kept;
each use first reads the store's gate generation (one small read), and
recompiles when another write, here or on another daemon sharing the
database, has moved it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from clawguard.core import gate, guardrails, registry
from clawguard.core.gate import settings as gate_settings
from clawguard.store import contract


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One consistent view: the compiled sets, the settings and the tools' categories."""

    policies: gate.PolicySet
    access: gate.AccessTable
    settings: gate_settings.Settings
    categories: Mapping[str, tuple[str, ...]]

    def verdict(self, action: gate.Action, principal: gate.Principal,
                context: Mapping[str, object] | None
                ) -> tuple[gate.AccessDecision, gate.Verdict]:
        """Tool access and the guardrail verdict for one action (both, whatever the first
        says, so a caller can report every reason)."""
        decision = gate.check_access(self.access, action.tool, action.arguments, principal)
        return decision, gate.evaluate(action, principal, context, self.policies)


class Gate:
    """The compiled policy set and access table, rebuilt when the stored set changes."""

    def __init__(self, store: contract.Store) -> None:
        self._store = store
        self._lock = asyncio.Lock()
        self._generation: int | None = None
        self._policies = gate.compile([])
        self._access = registry.access_table([], [], [])
        self._snapshot = Snapshot(self._policies, self._access, gate_settings.DEFAULTS, {})
        self.compilations = 0  # how many times the stored set was loaded and compiled

    async def compiled(self, generation: int | None = None
                       ) -> tuple[gate.PolicySet, gate.AccessTable]:
        """The compiled sets as of `generation` (None: read it now)."""
        if generation is None:
            generation = await self._store.gate_generation()
        if generation != self._generation:
            async with self._lock:
                if generation != self._generation:
                    await self._rebuild(generation)
        return self._policies, self._access

    async def _rebuild(self, generation: int) -> None:
        # Loaded after the generation was read: a write in between is caught next time.
        stored = await self._store.list_guardrails()
        tools = await self._store.list_tools(include_archived=True)
        tool_policies = await self._store.list_tool_policies()
        overrides = await self._store.list_role_overrides()
        settings = await self._store.get_settings()
        self._policies = gate.compile([s.policy() for s in stored])
        self._access = registry.access_table(tools, tool_policies, overrides)
        self._snapshot = Snapshot(self._policies, self._access, settings,
                                  {tool.name: tool.categories for tool in tools})
        self._generation = generation
        self.compilations += 1

    async def snapshot(self, generation: int | None = None) -> Snapshot:
        """The compiled state and the approval settings, reloaded together when a write moved
        any of them; `generation` as the caller just read it (None: read it now)."""
        await self.compiled(generation)
        return self._snapshot

    async def dry_run(self, request: guardrails.DryRun) -> gate.Verdict:
        """The verdict of the stored policies, or of `request.policies` when given."""
        if request.policies is not None:
            policy_set = gate.compile(request.policies)
        else:
            policy_set, _ = await self.compiled()
        return gate.evaluate(request.action, request.principal, request.context, policy_set)


async def gate_verdict(
    compiled: Gate, action: gate.Action, principal: gate.Principal,
    context: Mapping[str, object] | None,
) -> tuple[gate.AccessDecision, gate.Verdict]:
    """Tool access and the guardrail verdict for one action, from the cached compiled sets."""
    return (await compiled.snapshot()).verdict(action, principal, context)
