"""Approval settings and receipts on PostgreSQL, inside a transaction.

Load, decide with clawguard.core.authorize, apply: no rule lives here. Two
instances racing on one idempotency key (or one receipt's outcome) both
decide; the insert that loses the unique key writes nothing and answers the
winner's row, so a key makes one receipt and a receipt takes one outcome.
Locks, in order: the settings row, `gate_generation`, the audit head.
"""

from __future__ import annotations

from typing import Any

from clawguard.core import authorize, documents, principals
from clawguard.core.gate import settings as gate_settings
from clawguard.store import tables
from clawguard.store.postgres import audit_log, connection


async def load_settings(conn: connection.Connection, lock: bool = False
                        ) -> gate_settings.Settings:
    if lock:
        await conn.execute(
            "INSERT INTO governance_settings (id, document, updated_at) VALUES (1, '{}', 0)"
            " ON CONFLICT (id) DO NOTHING")
    cursor = await conn.execute("SELECT document FROM governance_settings WHERE id = 1"
                                + (" FOR UPDATE" if lock else ""))
    row = await cursor.fetchone()
    return gate_settings.from_document(None if row is None else documents.loads(row[0]))


async def patch_settings(conn: connection.Connection, now: int, patch: dict[str, Any],
                         actor: principals.Principal) -> gate_settings.Settings:
    before = await load_settings(conn, lock=True)
    after = gate_settings.apply_patch(before, patch)
    await conn.execute("UPDATE governance_settings SET document = %s, updated_at = %s"
                       " WHERE id = 1", (documents.dumps(after.wire()), now))
    await conn.execute("UPDATE gate_generation SET generation = generation + 1 WHERE id = 1")
    await audit_log.append(conn, now, [authorize.settings_changed(before, after, patch, actor)])
    return after


async def _receipt(conn: connection.Connection, where: str, value: str
                   ) -> authorize.Stored | None:
    cursor = await conn.execute(f"{tables.RECEIPT} WHERE {where} = %s", (value,))
    row = await cursor.fetchone()
    return None if row is None else tables.receipt_from_row(row)


async def write_receipt(conn: connection.Connection, now: int, new: authorize.NewReceipt
                        ) -> tuple[authorize.Stored, bool]:
    key = new.idempotency_key
    existing = None if key is None else await _receipt(conn, "r.idempotency_key", key)
    stored, replayed, events = authorize.write(existing, new, now)
    if replayed:
        return stored, True
    cursor = await conn.execute(
        f"INSERT INTO receipts ({tables.RECEIPT_INSERT_COLUMNS})"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (idempotency_key) DO NOTHING",
        tables.receipt_row(stored, new),
    )
    if cursor.rowcount == 0:  # another instance inserted this key meanwhile
        assert key is not None
        winner = await _receipt(conn, "r.idempotency_key", key)
        assert winner is not None
        return authorize.replay(winner, new.fingerprint), True
    await audit_log.append(conn, now, events)
    return stored, False


async def append_outcome(conn: connection.Connection, now: int, receipt_id: str,
                         outcome: dict[str, Any]) -> authorize.Stored:
    stored, written, events = authorize.append_outcome(
        await _receipt(conn, "r.id", receipt_id), receipt_id, outcome)
    if not written:
        return stored
    cursor = await conn.execute(
        "INSERT INTO receipt_outcomes (receipt_id, decision, document, created_at)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (receipt_id) DO NOTHING",
        (receipt_id, outcome["decision"], documents.dumps(outcome), now),
    )
    if cursor.rowcount == 0:
        winner = await _receipt(conn, "r.id", receipt_id)
        assert winner is not None
        return winner
    await audit_log.append(conn, now, events)
    return stored
