"""The action gate's wire shapes: seed 002's guardrails and seed 000's tool registry,
tool policies and role overrides, all snake_case.

Guardrail bodies are declared loosely here (any JSON in each field) because
`core.gate` validates them and answers seed 002's error codes; the response
models document what handlers write with `documents.dumps`, which keeps a
rule's numbers exactly as they were sent.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic

from clawguard.core import commands, guardrails, records, registry
from clawguard.http import wire

_SNAKE = pydantic.ConfigDict(alias_generator=None)


class Reply(records.Model):
    model_config = _SNAKE


class Body(commands.Request):
    model_config = _SNAKE


class Document(commands.Request):
    """A body whose fields the gate checks; unknown fields are passed on for it to refuse."""

    model_config = pydantic.ConfigDict(alias_generator=None, strict=False, extra="allow")

    def fields(self) -> dict[str, Any]:
        return {**self.model_dump(exclude_unset=True), **(self.model_extra or {})}


class SnakeQuery(wire.Query):
    model_config = _SNAKE


def _flag(value: object) -> object:
    if value in ("true", "false"):
        return value == "true"
    return value


def _query_integer(value: object) -> object:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return value


QueryFlag = Annotated[bool, pydantic.BeforeValidator(_flag),
                      pydantic.WithJsonSchema({"type": "string", "enum": ["true", "false"]})]
Positive = Annotated[int, pydantic.BeforeValidator(_query_integer), pydantic.Field(ge=1),
                     pydantic.WithJsonSchema({"type": "integer", "minimum": 1,
                                              "maximum": wire.INTEGER_BOUND})]
ListLimit = Annotated[int, pydantic.BeforeValidator(_query_integer),
                      pydantic.Field(ge=1, le=guardrails.LIST_LIMIT_MAX),
                      pydantic.WithJsonSchema({"type": "integer", "minimum": 1,
                                               "maximum": guardrails.LIST_LIMIT_MAX})]
Short = Annotated[str, pydantic.StringConstraints(min_length=1, max_length=200)]
ToolName = Annotated[str, pydantic.StringConstraints(pattern=f"^{registry.TOOL_NAME.pattern}$")]


# --- guardrails (seed 002) -------------------------------------------------------------


class GuardrailCreate(Document):
    name: Any = None
    rules: Any = None
    description: Any = None
    status: Any = None
    message: Any = None


class GuardrailUpdate(Document):
    rules: Any = None
    description: Any = None
    status: Any = None
    message: Any = None


class GuardrailEvaluate(Document):
    model_config = pydantic.ConfigDict(extra="forbid")

    action: Any = None
    policies: Any = None
    principal: Any = None
    context: Any = None
    operator_id: Any = None


class GuardrailRollback(Body):
    message: Annotated[str, pydantic.StringConstraints(max_length=10_000)] | None = None


class GuardrailFilter(SnakeQuery):
    status: Literal["active", "disabled"] | None = None
    tool: Short | None = None
    limit: ListLimit = guardrails.LIST_LIMIT_DEFAULT
    cursor: Short | None = None


class GuardrailVersionQuery(SnakeQuery):
    version: Positive | None = None


class GuardrailVersionPath(Body):
    id: commands.Ident
    n: Positive


class Guardrail(Reply):
    id: str
    object: Literal["guardrail_policy"]
    name: str
    description: str | None
    status: Literal["active", "disabled"]
    version: int
    rules: list[dict[str, Any]]
    created_at: str
    updated_at: str


class GuardrailList(Reply):
    object: Literal["list"]
    data: list[Guardrail]
    has_more: bool
    next_cursor: str | None


class GuardrailDeleted(Reply):
    id: str
    object: Literal["guardrail_policy"]
    deleted: Literal[True]


class GuardrailVersion(Reply):
    version: int
    created_at: str
    created_by: str | None
    message: str | None


class GuardrailVersions(Reply):
    versions: list[GuardrailVersion]


class GuardrailRolledBack(Reply):
    new_version: int
    rolled_back_from: int
    deployed_at: str


class Matched(Reply):
    policy_id: str
    policy_version: int
    rule: dict[str, Any]
    constraint_failed: Literal["max_value", "when"] | None


class GuardrailEvaluation(Reply):
    object: Literal["guardrail_evaluation"]
    decision: Literal["ALLOW", "ALERT", "BLOCK"]
    matched: list[Matched]
    explanation: str


# --- the tool registry, tool policies, role overrides (seed 000) ---------------------------


class ToolFilter(SnakeQuery):
    include_archived: QueryFlag = False


class ToolKey(Body):
    name: commands.Ident


class ToolCreate(Body):
    name: ToolName
    categories: Annotated[list[registry.Category], pydantic.Field(min_length=1)]
    description: commands.Text | None = None


class ToolDeprecate(Body):
    reason: Annotated[str, pydantic.StringConstraints(min_length=1, max_length=10_000)]
    replacement: ToolName | None = None


class Restrictions(Body):
    allowed_domains: list[Annotated[str, pydantic.StringConstraints(
        min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.-]+$")]] | None = None
    max_response_size_kb: Annotated[int, pydantic.Field(ge=1, le=2**31 - 1)] | None = None


class ToolPolicyCreate(Body):
    tool_name: commands.Ident
    allowed: bool
    restrictions: Restrictions | None = None


class RoleOverrideCreate(Body):
    role: commands.Ident
    tool_name: commands.Ident
    allowed: bool


class Tool(Reply):
    name: str
    categories: list[str]
    description: str | None
    status: Literal["active", "deprecated", "archived"]
    deprecation_reason: str | None
    replacement: str | None
    created_at: str
    updated_at: str


class ToolList(Reply):
    tools: list[Tool]


class RestrictionsOut(Reply):
    allowed_domains: list[str] | None = None
    max_response_size_kb: int | None = None


class ToolPolicy(Reply):
    id: str
    tool_name: str
    allowed: bool
    restrictions: RestrictionsOut | None
    created_at: str


class ToolPolicyList(Reply):
    policies: list[ToolPolicy]


class RoleOverride(Reply):
    id: str
    role: str
    tool_name: str
    allowed: bool
    created_at: str


class RoleOverrideList(Reply):
    overrides: list[RoleOverride]


class ItemKey(Body):
    """The path of one tool policy or role override."""

    id: commands.Ident
