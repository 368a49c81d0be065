"""The admin command line over HTTP, run as a user runs it: subprocesses against a real daemon
with keys on. Tables for people, the daemon's JSON with --json, exit codes for scripts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from daemon import Daemon
from proxy import Proxy

from clawguard import client
from clawguard.cli import remote


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A daemon whose keys were made first, with `clawguard keys create`, as an operator would."""
    db = tmp_path_factory.mktemp("cli") / "cli.db"
    keys = {}
    for role in ("admin", "executor"):
        made = subprocess.run(
            [sys.executable, "-m", "clawguard", "keys", "create", "--role", role, "--db",
             str(db)], capture_output=True, text=True, check=True)
        keys[role] = made.stdout.strip()
    with Daemon(db, auth_mode="keys") as daemon:
        yield daemon, keys


def run(served, *argv, key="admin", **env) -> subprocess.CompletedProcess[str]:
    daemon, keys = served
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CLAWGUARD_")}
    environ |= {"CLAWGUARD_URL": daemon.url, "CLAWGUARD_API_KEY": keys.get(key, key), **env}
    return subprocess.run([sys.executable, "-m", "clawguard", *argv], capture_output=True,
                          text=True, env=environ, timeout=60, stdin=subprocess.DEVNULL)


def run_all(served, *commands: tuple) -> list[subprocess.CompletedProcess[str]]:
    """Independent commands at once: each is a process that spends most of its life importing."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda argv: run(served, *argv[0], **argv[1]),
                             [(c[:-1], c[-1]) if isinstance(c[-1], dict) else (c, {})
                              for c in commands]))


def daemon_json(served, path: str) -> dict:
    """What the daemon itself answers, to compare --json with."""
    daemon, keys = served
    request = urllib.request.Request(daemon.url + path,
                                     headers={"Authorization": f"Bearer {keys['admin']}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_budgets_spend_and_preflight(served):
    team = unique("t")
    made = run(served, "budgets", "set", "team", team, "500", "--mode", "cap")
    assert made.returncode == 0, made.stderr
    header, row = made.stdout.splitlines()
    assert header.split() == ["SCOPE", "SCOPE", "ID", "MODE", "STATUS", "SPENT", "LIMIT", "USED"]
    assert row.split() == ["team", team, "cap", "active", "$0.00", "$5.00", "0%"]

    spent = run(served, "spend", "0.4", "--team", team, "--agent", "a1", "--model", "m",
                key="executor")
    assert spent.returncode == 0, spent.stderr
    assert spent.stdout.startswith("spend ") and "$0.004" in spent.stdout

    stopped = run(served, "spend", "499.6", "--team", team, "--idempotency-key", "k-" + team,
                  "--json", key="executor")
    assert stopped.returncode == remote.EXIT_STOPPED == 3
    answer = json.loads(stopped.stdout)
    assert answer["stop"] is True and answer["stopReason"] == "budget_paused:team"
    assert "kill-switch" in stopped.stderr
    again, refused, listed = run_all(  # none of these changes anything
        served, ("spend", "499.6", "--team", team, "--idempotency-key", "k-" + team,
                 {"key": "executor"}),
        ("preflight", "--team", team, {"key": "executor"}),
        ("budgets", "list", "--scope", "team", "--json"))
    assert again.returncode == 3 and "nothing charged again" in again.stdout
    assert refused.returncode == 3 and refused.stdout.startswith("refused: budget_paused")
    assert listed.returncode == 0
    assert json.loads(listed.stdout) == daemon_json(served, "/api/governance/budgets?scope=team")

    resumed = run(served, "budgets", "resume", "team", team, "--grace", "100", "--json")
    assert resumed.returncode == 0
    assert json.loads(resumed.stdout)["willRepause"] is False
    assert json.loads(resumed.stdout)["budget"]["limitUsdCents"] == 600
    assert run(served, "budgets", "delete", "team", team).returncode == 0
    missing = run(served, "budgets", "delete", "team", team)
    assert missing.returncode == 1 and "404 not_found" in missing.stderr


def test_approvals_list_resolve_grants_revoke(served):
    daemon, keys = served
    agent = unique("a")
    command = "rm -rf " + " ".join(f"/srv/build/artifacts/{n:03d}" for n in range(12))
    with client.Client(daemon.url, keys["executor"]) as api, \
            pytest.raises(client.ApprovalDenied) as opened:
        api.request_tool_approval("deploy", agent, args={"password": "hunter2", "cmd": command},
                                  reason="ship it", wait_ms=0)
    approval_id = opened.value.approval_id

    with Proxy(daemon.url) as proxy:
        listed, as_json, shown, everything = run_all(
            served, ("approvals", "list"), ("approvals", "list", "--json"),
            ("approvals", "show", approval_id),
            ("approvals", "list", "--all", "--json", "--url", proxy.url))
        [asked] = [r.split(b" ")[1] for r in proxy.requests]
    assert listed.returncode == 0
    [line] = [line for line in listed.stdout.splitlines() if approval_id in line]
    assert agent in line and "deploy" in line and "hunter2" not in listed.stdout
    assert command in listed.stdout  # the command being approved, never cut
    assert "ship it" in listed.stdout
    assert json.loads(as_json.stdout) == daemon_json(served, "/api/tools/approvals")
    assert asked == b"/api/tools/approvals?limit=1000&all=true"  # a page at a time
    assert everything.returncode == 0 and json.loads(everything.stdout)["ok"] is True

    assert shown.returncode == 0, shown.stderr
    assert command in shown.stdout and "hunter2" not in shown.stdout
    fields = dict(line.split(None, 1) for line in shown.stdout.splitlines()
                  if line and not line[0].isspace() and " " in line)
    assert fields["id"] == approval_id and fields["agentId"] == agent
    assert fields["status"] == "pending" and fields["reason"] == "ship it"

    resolved = run(served, "approvals", "resolve", approval_id, "allow_always", "--by", "alice",
                   "--json")
    assert resolved.returncode == 0
    approval = json.loads(resolved.stdout)["approval"]
    # With keys on, the deciding key's name stands, whatever --by claims.
    assert (approval["status"], approval["resolvedBy"]) == ("allow_always", "admin")
    twice, grants, table = run_all(served, ("approvals", "resolve", approval_id, "deny"),
                                   ("approvals", "grants", "--agent", agent, "--json"),
                                   ("approvals", "grants", "--agent", agent))
    # Not at a terminal, allow_always without --scope grants the tool, and says so.
    assert "--scope args" in resolved.stderr
    assert twice.returncode == 1 and "409" in twice.stderr
    [grant] = json.loads(grants.stdout)["grants"]
    assert grant["approvalId"] == approval_id and grant["grantScope"] == "tool"
    assert grant["id"] in table.stdout
    assert table.stdout.split()[3] == "SCOPE" and " tool " in table.stdout
    revoked = run(served, "approvals", "revoke", grant["id"], "--by", "bob", "--json")
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["grant"]["revokedBy"] == "admin"


def open_request(served, agent: str, args: dict) -> str:
    daemon, keys = served
    with client.Client(daemon.url, keys["executor"]) as api, \
            pytest.raises(client.ApprovalDenied) as opened:
        api.request_tool_approval("shell", agent, args=args, wait_ms=0)
    approval_id: str = opened.value.approval_id
    return approval_id


def test_resolve_scope_args_grants_only_those_arguments(served):
    daemon, keys = served
    agent = unique("a")
    approval_id = open_request(served, agent, {"cmd": "rm -rf build"})
    resolved = run(served, "approvals", "resolve", approval_id, "allow_always", "--scope", "args",
                   "--json")
    assert resolved.returncode == 0, resolved.stderr
    assert "--scope" not in resolved.stderr
    [grant] = daemon_json(served, f"/api/tools/approvals/grants?agentId={agent}")["grants"]
    assert grant["grantScope"] == "args"
    with client.Client(daemon.url, keys["executor"]) as api:
        assert api.request_tool_approval("shell", agent, args={"cmd": "rm -rf build"},
                                         wait_ms=0).resolution == "allow_always"
        with pytest.raises(client.ApprovalDenied):
            api.request_tool_approval("shell", agent, args={"cmd": "rm -rf /"}, wait_ms=0)
    bad = run(served, "approvals", "resolve", approval_id, "allow_always", "--scope", "all")
    assert bad.returncode == remote.EXIT_USAGE


def test_resolve_asks_for_the_scope_at_a_terminal(served):
    import pty

    daemon, keys = served
    agent = unique("a")
    approval_id = open_request(served, agent, {"cmd": "make"})
    controller, terminal = pty.openpty()
    try:
        os.write(controller, b"everything\nargs\n")  # a wrong answer is asked again
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CLAWGUARD_")}
        environ |= {"CLAWGUARD_URL": daemon.url, "CLAWGUARD_API_KEY": keys["admin"]}
        done = subprocess.run(
            [sys.executable, "-m", "clawguard", "approvals", "resolve", approval_id,
             "allow_always", "--json"], stdin=terminal, capture_output=True, text=True,
            env=environ, timeout=60)
    finally:
        os.close(terminal)
        os.close(controller)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("[tool/args]") == 2
    [grant] = daemon_json(served, f"/api/tools/approvals/grants?agentId={agent}")["grants"]
    assert grant["grantScope"] == "args"


def test_audit_tail_and_follow(served):
    daemon, keys = served
    tail, table = run_all(served, ("audit", "tail", "-n", "3", "--json"),
                          ("audit", "tail", "-n", "2", "--event-type", "budget"))
    assert tail.returncode == 0
    rows = [json.loads(line) for line in tail.stdout.splitlines()]
    newest = daemon_json(served, "/api/governance/audit?limit=3")["audit"]
    assert rows == newest[::-1]  # oldest first, as tail prints
    assert table.returncode == 0 and all(" budget " in line for line in table.stdout.splitlines())

    environ = {k: v for k, v in os.environ.items() if not k.startswith("CLAWGUARD_")}
    follower = subprocess.Popen(
        [sys.executable, "-m", "clawguard", "audit", "tail", "--follow", "-n", "1", "--json",
         "--interval", "0.05", "--url", daemon.url, "--key", keys["admin"]],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ)
    try:
        assert follower.stdout is not None
        first = json.loads(follower.stdout.readline())
        assert first["id"] == daemon_json(served, "/api/governance/audit?limit=1")["audit"][0]["id"]
        mission = unique("m")
        with client.Client(daemon.url, keys["admin"]) as api:
            api.set_budget("mission", mission, 10)
            api.delete_budget("mission", mission)
        later = [json.loads(follower.stdout.readline()) for _ in range(2)]
        assert [(r["action"], r["details"]["scopeId"]) for r in later] == [
            ("budget.set", mission), ("budget.deleted", mission)]
        assert later[0]["id"] < later[1]["id"]
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) == 0
    finally:
        follower.kill()
        follower.wait()
        for stream in (follower.stdout, follower.stderr):
            if stream is not None:
                stream.close()


def test_exit_codes_scripts_can_rely_on(served, tmp_path):
    keys = served[1]
    with socket.create_server(("127.0.0.1", 0)) as sock:
        nowhere = f"http://127.0.0.1:{sock.getsockname()[1]}"
    key_file = tmp_path / "admin.key"
    key_file.write_text(keys["admin"] + "\n")
    no_key, forbidden, gone, zero, galaxy, no_scope, too_long, by_file, helped, cents = run_all(
        served,
        ("budgets", "list", {"key": ""}),
        ("budgets", "list", {"key": "executor"}),
        ("budgets", "list", "--url", nowhere),
        ("budgets", "set", "team", "t1", "0"),
        ("budgets", "set", "galaxy", "t1", "10"),
        ("spend", "1"),
        ("budgets", "set", "team", "x" * 201, "10"),
        ("budgets", "list", "--key-file", str(key_file), "--json", {"key": ""}),
        ("budgets", "list", "--help"),
        ("budgets", "set", "team", "t1", "40.5"),
    )
    assert no_key.returncode == remote.EXIT_REFUSED == 5 and "401 unauthorized" in no_key.stderr
    assert "--key-file" in no_key.stderr and "CLAWGUARD_API_KEY" in no_key.stderr
    assert forbidden.returncode == 5 and "403 forbidden" in forbidden.stderr
    assert "--key-file" not in forbidden.stderr  # a key was given; the hint would mislead
    assert gone.returncode == 4 and "no answer" in gone.stderr
    assert zero.returncode == galaxy.returncode == no_scope.returncode == 2  # refused locally
    assert too_long.returncode == 2 and "400 invalid_input" in too_long.stderr  # the daemon's 400
    assert by_file.returncode == 0 and "budgets" in json.loads(by_file.stdout)
    assert helped.returncode == 0 and "exit codes:" in helped.stdout
    assert "5  the key" in helped.stdout
    assert cents.returncode == 2 and "whole" in cents.stderr and "not a number" not in cents.stderr


def test_spend_summary_over_http(served):
    agent = unique("sum")
    assert run(served, "spend", "2", "--agent", agent, key="executor").returncode == 0
    assert run(served, "spend", "1", "--agent", agent, key="executor").returncode == 0
    shown = run(served, "spend", "summary", "--by", "agent")
    assert shown.returncode == 0, shown.stderr
    header, *rows = shown.stdout.splitlines()
    assert header.split()[:3] == ["AGENT", "SPENT", "SPENDS"]
    assert [agent, "$0.03", "2", "0", "0"] in [row.split() for row in rows]
    as_json = run(served, "spend-summary", "--by", "agent", "--json")
    groups = json.loads(as_json.stdout)
    assert groups == daemon_json(served, "/api/governance/spend/summary?groupBy=agent")["groups"]
    refused = run(served, "spend", "summary", key="executor")
    assert refused.returncode != 0 and "403 forbidden" in refused.stderr


def test_guardrails_and_tools(served, tmp_path):
    name = unique("refunds")
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"name": name, "rules": [
        {"tool": "order.refund", "decision": "ALLOW", "max_value": 250},
        {"tool": "order.refund", "decision": "ALERT"}]}))
    created = run(served, "guardrails", "create", "--file", str(policy), "--json")
    assert created.returncode == 0, created.stderr
    made = json.loads(created.stdout)
    trial = tmp_path / "trial.json"
    trial.write_text(json.dumps({"action": {"tool": "order.refund", "value": 180}}))
    tool = unique("shell.exec")
    listed, shown, verdict, registered = run_all(
        served, ("guardrails", "list"), ("guardrails", "show", made["id"]),
        ("guardrails", "evaluate", "--file", str(trial)),
        ("tools", "create", tool, "--category", "other", "--category", "pii"))
    assert name in listed.stdout and made["id"] in listed.stdout
    assert json.loads(shown.stdout) == daemon_json(served, f"/api/guardrails/{made['id']}")
    assert verdict.stdout.startswith("ALERT: "), verdict.stdout + verdict.stderr
    assert registered.returncode == 0 and "other,pii" in registered.stdout
    deprecated = run(served, "tools", "deprecate", tool, "--reason", "old")
    assert "deprecated" in deprecated.stdout and "old" in deprecated.stdout
    assert run(served, "tools", "archive", tool).returncode == 0
    again = run(served, "tools", "archive", tool)
    assert again.returncode != 0 and "archived" in again.stderr
    assert tool not in run(served, "tools", "list").stdout
    assert tool in run(served, "tools", "list", "--include-archived").stdout
    duplicate = run(served, "guardrails", "create", "--file", str(policy))
    assert duplicate.returncode != 0 and "state_conflict" in duplicate.stderr + duplicate.stdout


def test_runs_and_quota_commands(served):
    daemon, keys = served
    with client.Client(daemon.url, api_key=keys["executor"]) as executor:
        run_id = executor.start_run(unique("agent"), tenant_id="cli-org").id
        assert executor.run_events(run_id, [{"kind": "tool-call"}]).tripped is None
    shown, listed, quota = run_all(
        served, ("runs", "show", run_id, "--json"), ("runs", "list", "--status", "running"),
        ("quota", "set", "cli-org", "runs_per_hour=500", "concurrent_runs=default"))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == daemon_json(served, f"/api/governance/runs/{run_id}")
    assert listed.returncode == 0 and run_id in listed.stdout
    assert quota.returncode == 0, quota.stderr
    assert "500" in quota.stdout
    shown = run(served, "quota", "show", "cli-org", "--json")
    assert json.loads(shown.stdout)["overrides"] == {"runs_per_hour": 500}
    refused = run(served, "quota", "set", "cli-org", "runs_per_hour=0")
    assert refused.returncode == 1 and "runs_per_hour" in refused.stderr
    unknown = run(served, "runs", "show", "run_nope")
    assert unknown.returncode == 1


def test_holds_show(served):
    daemon, keys = served
    with client.Client(daemon.url, api_key=keys["executor"]) as executor:
        hold = executor.create_hold(25, agent_id=unique("agent"))
    shown, table = run_all(served, ("holds", "show", hold.id, "--json"),
                           ("holds", "show", hold.id))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == daemon_json(served, f"/api/governance/holds/{hold.id}")
    assert table.returncode == 0 and hold.id in table.stdout and "held" in table.stdout
    assert run(served, "holds", "show", "hld_nope").returncode == 1
