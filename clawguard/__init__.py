"""clawguard: a governance daemon that keeps a fleet of AI agents inside its budgets."""

__version__ = "0.1.0"
