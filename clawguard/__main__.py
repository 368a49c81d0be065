"""`python -m clawguard` is the `clawguard` command."""

from clawguard import cli

raise SystemExit(cli.main())
