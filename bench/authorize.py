"""Throughput and latency of authorize over HTTP, relative to GET /healthz on the same daemon.

Starts ``clawguard serve`` on a temporary SQLite database (as bench/spend.py
does), stores 100 guardrail rules in 10 policies (bench/gate.py's mix over 50
tools: max_value ceilings, min_value ALERTs, `when` guards, role and
connector matchers, rules for every tool), registers the tool and allows it
by a tool policy with restrictions, then drives two phases one after the
other with N concurrent keep-alive connections (default 64):

1. ``GET /healthz`` -- the ceiling: what the HTTP stack alone can serve;
2. ``POST /api/governance/authorize`` for an action that ALLOWs (agent, team
   and tenant scopes with budget rows, roles, connector, value, arguments and
   context): per request the kill-switch read, the gate's generation read, tool
   access and the verdict over the compiled rules, and one receipt with its
   tool_call audit row written.

With ``--floor`` it then starts a second daemon whose verdict is a stub (the
same answer, no reads, no rules, no receipt: ``Authorizer.decide`` replaced in
that process only) and drives both phases again: what the same requests cost
in HTTP, body parsing, validation and the answer alone, so the rest of an
authorize's cost is the verdict's.

Target (2-core machine): authorize >= 0.3x healthz throughput, p99 <= 25 ms,
no errors, every answer ALLOW (checked on a sample before the run and by the
receipts counted after it). It also prints the daemon's own CPU time per
answer in each phase (Linux /proc), which a busy shared machine disturbs far
less than throughput: their quotient is the ratio the daemon reaches when it
has a core to itself. Run from the repository root::

    python bench/authorize.py [--seconds 10] [--connections 64]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import gate as gate_bench  # bench/gate.py: the same rule mix
import spend as spend_bench  # bench/spend.py: the daemon, the wrk driver and its result

TOOL = "tool.07"
ACTION = {
    "agentId": "a1", "teamId": "t1", "tenantId": "org", "tool": TOOL, "connector": "cn_main",
    "roles": ["finance"], "value": 180, "waitMs": 0,
    "args": {"amount": 180, "country": "US", "order": "ord_1", "url": "https://api.example.com/x"},
    "context": {"ticket": "INC-4411", "missionId": "m1"},
}
TARGET_RATIO = 0.3
TARGET_P99_MS = 25.0

WRK_AUTHORIZE = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = BODY
"""


# The --floor daemon: `clawguard serve` with a verdict that answers the one given in
# CLAWGUARD_BENCH_ANSWER and does nothing else.
FLOOR_WRAPPER = r"""
import json, os, runpy, sys
from clawguard.services import authorize

ANSWER = json.loads(os.environ["CLAWGUARD_BENCH_ANSWER"])

async def decide(self, request, caller):
    return dict(ANSWER)

authorize.Authorizer.decide = decide
sys.argv = ["clawguard", *sys.argv[1:]]
runpy.run_module("clawguard", run_name="__main__")
"""


def prepare(base: str) -> dict[str, object]:
    """100 rules, the tool with its policy, two budgets; one authorize must ALLOW (its answer
    is returned)."""
    post = spend_bench.http_json
    for budget in spend_bench.BUDGETS:
        post("POST", f"{base}/api/governance/budgets", budget)
    rules = [gate_bench.make_rule(n) for n in range(100)]
    for i in range(10):
        post("POST", f"{base}/api/guardrails",
             {"name": f"policy-{i:04d}", "rules": rules[i * 10:i * 10 + 10]})
    post("POST", f"{base}/api/tools", {"name": TOOL, "categories": ["other"]})
    post("POST", f"{base}/api/tool-policies", {
        "tool_name": TOOL, "allowed": True,
        "restrictions": {"allowed_domains": ["example.com"], "max_response_size_kb": 512}})
    reply = post("POST", f"{base}/api/governance/authorize", ACTION)
    if reply["decision"] != "ALLOW":
        raise RuntimeError(f"the bench action does not ALLOW: {reply}")
    return reply


def run_wrk(url: str, connections: int, threads: int, seconds: int, tmp: Path
            ) -> spend_bench.Result:
    script = tmp / "authorize.lua"
    script.write_text(f"BODY = {json.dumps(json.dumps(ACTION))}\n" + WRK_AUTHORIZE
                      + spend_bench.WRK_DONE)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s",
           str(script), url]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return spend_bench.parse_wrk(proc.stdout, proc.stderr)


def cpu_seconds(pid: int) -> float:
    """The daemon's user + system CPU time so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def receipts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT decision, count(*) FROM receipts GROUP BY decision"))
    finally:
        conn.close()


class Phases:
    """healthz then authorize against one daemon, with the daemon's CPU time for each."""

    def __init__(self, daemon: spend_bench.Daemon, base: str, args: argparse.Namespace,
                 tmp: Path) -> None:
        assert daemon.proc is not None
        pid = daemon.proc.pid
        print(f"wrk: /healthz for {args.seconds} s ...", file=sys.stderr)
        started = cpu_seconds(pid)
        self.healthz = spend_bench.run_wrk(base + "/healthz", False, args.connections,
                                           args.threads, args.seconds, tmp)
        self.healthz_cpu = cpu_seconds(pid) - started
        print(f"wrk: /api/governance/authorize for {args.seconds} s ...", file=sys.stderr)
        started = cpu_seconds(pid)
        self.authorized = run_wrk(base + "/api/governance/authorize", args.connections,
                                  args.threads, args.seconds, tmp)
        self.authorize_cpu = cpu_seconds(pid) - started

    @property
    def ratio(self) -> float:
        return self.authorized.rps / self.healthz.rps if self.healthz.rps else 0.0

    def cpu_per_answer(self) -> tuple[float, float]:
        """The daemon's CPU time per answer (us): healthz, authorize."""
        return (self.healthz_cpu / max(self.healthz.requests, 1) * 1e6,
                self.authorize_cpu / max(self.authorized.requests, 1) * 1e6)


def run_daemon(tmp: Path, args: argparse.Namespace, answer: dict[str, object] | None = None
               ) -> tuple[Phases, dict[str, object]]:
    """The phases against a fresh daemon: the real one, or (`answer` given) the floor's."""
    tmp.mkdir(exist_ok=True)
    program: tuple[str, ...] = ("-m", "clawguard")
    if answer is not None:
        os.environ["CLAWGUARD_BENCH_ANSWER"] = json.dumps(answer)
        program = ("-c", FLOOR_WRAPPER)
    daemon = spend_bench.Daemon(tmp, program=program)
    try:
        base = daemon.start()
        reply = prepare(base)
        return Phases(daemon, base, args, tmp), reply
    except Exception:
        print(f"daemon log (tail):\n{daemon.log_tail()}", file=sys.stderr)
        raise
    finally:
        daemon.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=10, help="each phase (default 10)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--floor", action="store_true",
                        help="then the same phases against a daemon whose verdict is a stub")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        parser.error("wrk is not on PATH (Debian: apt-get install wrk)")

    with tempfile.TemporaryDirectory(prefix="clawguard-bench-") as tmpdir:
        tmp = Path(tmpdir)
        real, reply = run_daemon(tmp / "real", args)
        counted = receipts(tmp / "real" / "clawguard.db")
        floor = run_daemon(tmp / "floor", args, reply)[0] if args.floor else None
    healthz, authorized, ratio = real.healthz, real.authorized, real.ratio
    print(f"store: sqlite  generator: wrk  ({args.connections} connections,"
          f" {args.seconds} s per phase, 100 rules in 10 policies)")
    print(healthz.line("healthz"))
    print(authorized.line("authorize"))
    print(f"receipts written: {counted} (responses counted: {authorized.requests} + 1 probe)")
    print(f"ratio authorize/healthz: {ratio:.2f}")
    # On a shared machine the daemon gets what CPU the others leave it, so throughput swings;
    # its own CPU time per answer does not, and says what the ratio is when the daemon has
    # its core to itself (the loop is single-threaded, so it is CPU-bound under load).
    per_healthz, per_authorize = real.cpu_per_answer()
    print(f"daemon CPU per answer: healthz {per_healthz:.0f} us, authorize {per_authorize:.0f}"
          f" us; CPU-bound ratio {per_healthz / per_authorize:.2f}")
    if floor is not None:
        floor_healthz, floor_authorize = floor.cpu_per_answer()
        print(floor.healthz.line("floor healthz"))
        print(floor.authorized.line("floor authorize"))
        print(f"floor (stub verdict): ratio {floor.ratio:.2f}; daemon CPU per answer healthz"
              f" {floor_healthz:.0f} us, authorize {floor_authorize:.0f} us; so the verdict"
              f" costs about {per_authorize - floor_authorize:.0f} us of the"
              f" {per_authorize:.0f}")
    passed = (ratio >= TARGET_RATIO and authorized.p99_ms <= TARGET_P99_MS
              and authorized.errors == 0 and healthz.errors == 0
              and set(counted) == {"ALLOW"} and counted["ALLOW"] >= authorized.requests)
    print(f"{'PASS' if passed else 'FAIL'}: target ratio >= {TARGET_RATIO}, authorize p99 <="
          f" {TARGET_P99_MS:g} ms, no errors, every answer an ALLOW with its receipt")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
