"""The `clawguard` command: local commands on the database, remote ones over HTTP."""
