"""`python -m clawguard` is the `clawguard` command."""

from clawguard.cli import local

raise SystemExit(local.main())
