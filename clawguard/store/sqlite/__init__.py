"""The SQLite store: the one package that speaks SQL to SQLite and owns its exceptions.

    store.py      SQLiteStore, the Store contract: reads, and writes handed to the writer
    writer.py     the one writer: waiting writes batched, one transaction a batch
    budgets.py    budgets and the spend ledger, inside a write transaction
    approvals.py  approvals, sticky grants and their history, inside a write transaction
    keys.py       API keys; KeyAdmin for `clawguard keys` without a daemon
    audit_log.py  the hash-chained audit rows: appended, and read back whole
    files.py      a database file: opened with the durable pragmas, migrated, read offline
"""

from clawguard.store.sqlite.audit_log import audit_chain
from clawguard.store.sqlite.budgets import ledger_check, spend_rows, wrong_charges
from clawguard.store.sqlite.files import connect, migrate_database
from clawguard.store.sqlite.keys import KeyAdmin
from clawguard.store.sqlite.store import SQLiteStore

__all__ = [
    "KeyAdmin",
    "SQLiteStore",
    "audit_chain",
    "connect",
    "ledger_check",
    "migrate_database",
    "spend_rows",
    "wrong_charges",
]
