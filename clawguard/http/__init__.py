"""The HTTP surface on aiohttp: app wiring, routes, middleware, wire shapes and handlers."""
