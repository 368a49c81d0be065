"""Approval settings and receipts in SQLite, inside a write transaction.

Load, decide with clawguard.core.authorize, apply: no rule lives here. The one
writer serialises every write, so a receipt's idempotency key is looked up and
inserted with nothing in between.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from clawguard.core import authorize, documents, principals
from clawguard.core.gate import settings as gate_settings
from clawguard.store import tables
from clawguard.store.sqlite import audit_log


def load_settings(conn: sqlite3.Connection) -> gate_settings.Settings:
    row = conn.execute("SELECT document FROM governance_settings WHERE id = 1").fetchone()
    return gate_settings.from_document(None if row is None else documents.loads(row[0]))


def patch_settings(conn: sqlite3.Connection, now: int, patch: dict[str, Any],
                   actor: principals.Principal) -> gate_settings.Settings:
    before = load_settings(conn)
    after = gate_settings.apply_patch(before, patch)
    conn.execute(
        "INSERT INTO governance_settings (id, document, updated_at) VALUES (1, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET document = excluded.document,"
        " updated_at = excluded.updated_at",
        (documents.dumps(after.wire()), now),
    )
    # Settings are compiled with the gate: moving the generation reloads them everywhere.
    conn.execute("UPDATE gate_generation SET generation = generation + 1 WHERE id = 1")
    audit_log.append(conn, now, authorize.settings_changed(before, after, patch, actor))
    return after


def _receipt(conn: sqlite3.Connection, where: str, value: str) -> authorize.Stored | None:
    row = conn.execute(f"{tables.RECEIPT} WHERE {where} = ?", (value,)).fetchone()
    return None if row is None else tables.receipt_from_row(row)


def write_receipt(conn: sqlite3.Connection, now: int, new: authorize.NewReceipt
                  ) -> tuple[authorize.Stored, bool]:
    existing = None
    if new.idempotency_key is not None:
        existing = _receipt(conn, "r.idempotency_key", new.idempotency_key)
    stored, replayed, events = authorize.write(existing, new, now)
    if not replayed:
        conn.execute(
            f"INSERT INTO receipts ({tables.RECEIPT_INSERT_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            tables.receipt_row(stored, new),
        )
        audit_log.append(conn, now, *events)
    return stored, replayed


def append_outcome(conn: sqlite3.Connection, now: int, receipt_id: str,
                   outcome: dict[str, Any]) -> authorize.Stored:
    stored, written, events = authorize.append_outcome(
        _receipt(conn, "r.id", receipt_id), receipt_id, outcome)
    if written:
        conn.execute(
            "INSERT INTO receipt_outcomes (receipt_id, decision, document, created_at)"
            " VALUES (?, ?, ?, ?)",
            (receipt_id, outcome["decision"], documents.dumps(outcome), now),
        )
        audit_log.append(conn, now, *events)
    return stored
