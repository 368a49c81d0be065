"""Tool registry, tool policy and role override routes (seed 000's wire format)."""

from __future__ import annotations

from aiohttp import web

from clawguard.http import bodies, gatewire, state


async def list_tools(request: web.Request, query: gatewire.ToolFilter) -> web.Response:
    tools = await request.app[state.STORE].list_tools(query.include_archived)
    return bodies.respond_document({"tools": [t.wire() for t in tools]})


async def register_tool(request: web.Request, body: gatewire.ToolCreate) -> web.Response:
    tool = await request.app[state.STORE].register_tool(
        body.name, list(body.categories), body.description, state.principal_of(request))
    return bodies.respond_document(tool.wire(), 201)


async def deprecate_tool(
    request: web.Request, path: gatewire.ToolKey, body: gatewire.ToolDeprecate
) -> web.Response:
    tool = await request.app[state.STORE].deprecate_tool(
        path.name, body.reason, body.replacement, state.principal_of(request))
    return bodies.respond_document(tool.wire())


async def archive_tool(request: web.Request, path: gatewire.ToolKey) -> web.Response:
    tool = await request.app[state.STORE].archive_tool(path.name, state.principal_of(request))
    return bodies.respond_document(tool.wire())


async def list_tool_policies(request: web.Request) -> web.Response:
    policies = await request.app[state.STORE].list_tool_policies()
    return bodies.respond_document({"policies": [p.wire() for p in policies]})


async def create_tool_policy(
    request: web.Request, body: gatewire.ToolPolicyCreate
) -> web.Response:
    limits = body.restrictions or gatewire.Restrictions()
    policy = await request.app[state.STORE].create_tool_policy(
        body.tool_name, body.allowed, limits.allowed_domains, limits.max_response_size_kb,
        state.principal_of(request))
    return bodies.respond_document(policy.wire(), 201)


async def delete_tool_policy(request: web.Request, path: gatewire.ItemKey) -> web.Response:
    await request.app[state.STORE].delete_tool_policy(path.id, state.principal_of(request))
    return web.Response(status=204)


async def list_role_overrides(request: web.Request) -> web.Response:
    overrides = await request.app[state.STORE].list_role_overrides()
    return bodies.respond_document({"overrides": [o.wire() for o in overrides]})


async def create_role_override(
    request: web.Request, body: gatewire.RoleOverrideCreate
) -> web.Response:
    override = await request.app[state.STORE].create_role_override(
        body.role, body.tool_name, body.allowed, state.principal_of(request))
    return bodies.respond_document(override.wire(), 201)


async def delete_role_override(request: web.Request, path: gatewire.ItemKey) -> web.Response:
    await request.app[state.STORE].delete_role_override(path.id, state.principal_of(request))
    return web.Response(status=204)
