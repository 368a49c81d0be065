"""The PostgreSQL store: the one package that speaks SQL to PostgreSQL and owns psycopg's errors.

Several daemons on one database behave as one: every write is one
transaction that locks the rows it changes in one fixed order, decisions
and expiries are announced with NOTIFY, and the audit chain has one head.

    connection.py  the pool, the retrying transaction helper, driver errors -> StoreUnavailable
    schema.py      migrations/postgres applied under an advisory lock (also for `clawguard migrate`)
    listener.py    LISTEN/NOTIFY: wakes waiters parked on other instances, and event streams
    audit_log.py   the hash-chained audit rows: appended behind the one head, read back whole
    keys.py        API keys; KeyAdmin for `clawguard keys` without a daemon
    budgets.py     budgets and the spend ledger: spends charged a batch a transaction
    approvals.py   approvals, sticky grants and their history; decisions and expiries NOTIFY
    store.py       PostgresStore, the Store contract: reads, writes, the spend batches
"""

from clawguard.store.postgres.audit_log import audit_chain
from clawguard.store.postgres.budgets import ledger_check, spend_rows, wrong_charges
from clawguard.store.postgres.keys import KeyAdmin
from clawguard.store.postgres.schema import migrate_database
from clawguard.store.postgres.store import PostgresStore

__all__ = [
    "KeyAdmin",
    "PostgresStore",
    "audit_chain",
    "ledger_check",
    "migrate_database",
    "spend_rows",
    "wrong_charges",
]
