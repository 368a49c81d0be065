"""The client as a package of its own: it loads nothing of the daemon, reads what the daemon
answers (and more), ships its type annotations, and both clients share one set of methods."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pydantic
import pytest

from clawguard import client
from clawguard.client import api, blocking, records
from clawguard.core import money
from clawguard.core import records as daemon_records

ROOT = Path(__file__).resolve().parents[2]
DAEMON = ("clawguard.core", "clawguard.http", "clawguard.store", "clawguard.services",
          "clawguard.runtime", "clawguard.cli")


def test_importing_the_client_loads_none_of_the_daemon():
    probe = (
        "import sys, json\n"
        "import clawguard.client\n"
        "from clawguard import client\n"
        "with client.Client('http://127.0.0.1:9') as c: pass\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    loaded = json.loads(done.stdout)
    assert "clawguard.client" in loaded and "clawguard.client.records" in loaded
    daemon = [name for name in loaded
              if any(name == part or name.startswith(part + ".") for part in DAEMON)]
    assert daemon == []
    assert "aiohttp" not in loaded  # the blocking client never pays for it


PAIRS = [
    (records.Budget, daemon_records.Budget),
    (records.ScopeState, daemon_records.ScopeState),
    (records.HeldScope, daemon_records.HeldScope),
    (records.Hold, daemon_records.Hold),
    (records.SpendRecord, daemon_records.SpendRecord),
    (records.SpendOutcome, daemon_records.SpendOutcome),
    (records.Preflight, daemon_records.Preflight),
    (records.Resumed, daemon_records.Resumed),
    (records.AuditEntry, daemon_records.AuditEntry),
    (records.AuditHead, daemon_records.AuditHead),
    (records.Handshake, daemon_records.Handshake),
    (records.Approval, daemon_records.Approval),
    (records.Grant, daemon_records.Grant),
    (records.HistoryRecord, daemon_records.HistoryRecord),
]


@pytest.mark.parametrize(("mine", "theirs"), PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_the_client_records_ask_for_nothing_the_daemon_does_not_send(mine, theirs):
    required = {name for name, field in mine.model_fields.items() if field.is_required()}
    assert required <= set(theirs.model_fields)
    assert {f.alias for f in mine.model_fields.values()} <= {
        f.alias for f in theirs.model_fields.values()}


def test_the_values_the_cli_offers_are_the_daemons():
    assert records.SCOPES == daemon_records.SCOPES
    assert records.DECISIONS == daemon_records.DECISIONS
    assert daemon_records.GrantScope.__args__ == records.GRANT_SCOPES  # type: ignore[attr-defined]
    assert records.EVENT_TYPES == daemon_records.EVENT_TYPES
    assert money.Status.__args__ == records.STATUSES  # type: ignore[attr-defined]
    assert money.Mode.__args__ == records.MODES  # type: ignore[attr-defined]


def test_a_newer_daemons_fields_and_statuses_are_read_and_kept():
    row = {"id": "apr_1", "toolName": "rm", "agentId": "a1", "argsSummary": '{"x":1}',
           "reason": None, "status": "awaiting_quorum", "taskId": None, "tenantId": None,
           "createdAt": 1, "expiresAt": 2, "resolvedAt": None, "resolvedBy": None,
           "quorum": {"needed": 2, "votes": []}}
    approval = records.Approval.model_validate(row)
    assert approval.status == "awaiting_quorum"
    assert approval.to_json() == row  # --json gives it back whole
    with pytest.raises(pydantic.ValidationError):
        records.Approval.model_validate({k: v for k, v in row.items() if k != "agentId"})
    with pytest.raises(pydantic.ValidationError):  # frozen
        approval.status = "deny"  # type: ignore[misc]
    with pytest.raises(client.ApprovalDenied) as unknown:  # an unknown status is no allowance
        api.settled(approval)
    assert unknown.value.resolution == "awaiting_quorum"


def test_both_clients_have_each_method_once():
    """Client's methods are made from api.Api's: same names, same signatures, same docs."""
    routes = {name for name, value in vars(api.Api).items()
              if not name.startswith("_") and callable(value)}
    for name in routes:
        made = getattr(client.Client, name)
        source = getattr(api.Api, name)
        assert made.__wrapped__ is source, name
        assert inspect.signature(made) == inspect.signature(source), name
        assert made.__doc__ == source.__doc__
        assert getattr(client.AsyncClient, name) is source  # inherited, not copied
    assert issubclass(client.AsyncClient, api.Api) and not issubclass(client.Client, api.Api)


def test_a_blocking_call_that_would_suspend_is_refused():
    async def suspends() -> None:
        import asyncio

        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="waited"):
        blocking.drive(suspends())


def test_the_wheel_ships_the_client_with_its_type_annotations(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("clawguard-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "clawguard/py.typed" in names
    assert {f"clawguard/client/{m}.py" for m in (
        "__init__", "aio", "api", "blocking", "calls", "errors", "records", "settings")} <= names
    assert "clawguard/client.py" not in names and "clawguard/client_errors.py" not in names
