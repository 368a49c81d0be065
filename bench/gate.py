"""Latency of one guardrail verdict, in process: `gate.evaluate` against 100 and 1,000 rules.

The rules are spread over 50 tools in policies of 10 rules each: per tool a
mix of ALLOW rules with a max_value ceiling, ALERT rules with a min_value,
rules with a `when` guard (an expression, or an allOf of an expression and a
role), rules limited to roles or a connector, and 2% of rules with no tool
matcher (they sit in every tool's list). One action, on one tool, is evaluated
again and again; each call is timed alone with `perf_counter_ns` (the timer
itself costs ~0.1 us and is included). Targets: p50 <= 10 us at 100 rules,
<= 20 us at 1,000. Run from the repository root::

    python bench/gate.py [--calls 200000]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from decimal import Decimal

from clawguard.core import gate

TOOLS = [f"tool.{i:02d}" for i in range(50)]
TARGETS_US = {100: 10.0, 1000: 20.0}


def make_rule(n: int) -> dict[str, object]:
    if n % 50 == 49:  # 2% of the rules match every tool
        return {
            "decision": "ALLOW",
            "roles": ["ops"],
            "when": "$.context.ticket starts_with 'INC-'",
        }
    tool = TOOLS[n % len(TOOLS)]
    kind = (n // len(TOOLS)) % 6
    if kind == 0:
        return {"tool": tool, "decision": "ALLOW", "max_value": 1000 + n}
    if kind == 1:
        return {"tool": tool, "decision": "ALERT", "min_value": 500}
    if kind == 2:
        return {"tool": tool, "decision": "ALLOW", "when": "$.arguments.amount <= 2000"}
    if kind == 3:
        return {
            "tool": tool,
            "decision": "ALERT",
            "when": {"allOf": ["$.arguments.country != 'FR'", {"role": "junior"}]},
            "approvals": [{"name": "finance", "gates": [{"group": "finance", "count": 2}]}],
        }
    if kind == 4:
        return {"tool": tool, "decision": "ALLOW", "roles": ["finance", "ops"]}
    return {"tool": tool, "connector": "cn_other", "decision": "ALERT"}


def policy_set(rule_count: int) -> gate.PolicySet:
    rules = [make_rule(n) for n in range(rule_count)]
    policies = [
        gate.Policy(f"grd_{i:04d}", f"policy-{i:04d}", 1, rules[i * 10 : i * 10 + 10])
        for i in range(rule_count // 10)
    ]
    return gate.compile(policies)


def measure(rule_count: int, calls: int) -> tuple[float, float, str, int]:
    compiled = policy_set(rule_count)
    action = gate.Action(
        "tool.07",
        connector="cn_main",
        value=Decimal("180.00"),
        arguments={"amount": 180, "country": "US", "order": "ord_1"},
    )
    principal = gate.Principal("agent-7", roles=("finance",), scopes=("authorize",))
    context = {"ticket": "INC-4411", "missionId": "m1"}
    evaluate, clock = gate.evaluate, time.perf_counter_ns
    verdict = evaluate(action, principal, context, compiled)
    for _ in range(min(calls, 20_000)):  # warm up
        evaluate(action, principal, context, compiled)
    samples = [0] * calls
    gc.collect()
    gc.disable()  # a collection mid-run measures the collector, not the gate
    try:
        for i in range(calls):
            start = clock()
            evaluate(action, principal, context, compiled)
            samples[i] = clock() - start
    finally:
        gc.enable()
    samples.sort()
    p50 = statistics.median(samples) / 1000
    p99 = samples[int(len(samples) * 0.99)] / 1000
    return p50, p99, verdict.decision, len(verdict.matched)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {args.calls} verdicts per size")
    ok = True
    for rule_count, target in TARGETS_US.items():
        p50, p99, decision, matched = measure(rule_count, args.calls)
        ok &= p50 <= target
        print(
            f"{rule_count:5d} rules / {len(TOOLS)} tools: p50 {p50:6.2f} us  p99 {p99:6.2f} us"
            f"  (verdict {decision}, {matched} matched rules; target p50 <= {target:g} us)"
        )
    print("PASS" if ok else "FAIL: a p50 is above its target")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
