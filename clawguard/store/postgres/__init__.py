"""The PostgreSQL store: the one package that speaks SQL to PostgreSQL and owns psycopg's errors.

Several daemons on one database behave as one: every write is one
transaction that locks the rows it changes in one fixed order, decisions
and expiries are announced with NOTIFY, and the audit chain has one head.

    connection.py  the pool, the retrying transaction helper, driver errors -> StoreUnavailable
    schema.py      migrations/postgres applied under an advisory lock (also for `clawguard migrate`)
    listener.py    LISTEN/NOTIFY: wakes waiters parked on other instances
    audit_log.py   the hash-chained audit rows: appended behind the one head, read back whole
    keys.py        API keys; KeyAdmin for `clawguard keys` without a daemon
"""

from clawguard.store.postgres.audit_log import audit_chain
from clawguard.store.postgres.keys import KeyAdmin
from clawguard.store.postgres.schema import migrate_database

__all__ = ["KeyAdmin", "audit_chain", "migrate_database"]
