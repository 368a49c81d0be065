"""Load, decide with core, apply: the use cases the HTTP layer calls (spending, the approval
handshake, the reaper). No SQL and no aiohttp here."""
