"""The PostgreSQL spend path at the store alone: tasks calling record_spend, no HTTP.

One or two PostgresStores (``--instances``: two stand for two daemons, in one
process) on a fresh database made on the server of ``--pg-url`` and dropped
afterwards; ``--tasks`` callers each charge one spend after another, with its
own idempotency key, on the chain spend.py uses (agent a1, mission m1, team t1,
tenant org; budgets on a1 and t1). Prints spends per second, the latency of a
spend and of a batch, and the process's CPU per spend (the figure the box's
other load moves least). It imports clawguard from the checkout it sits in, so
a copy in another checkout (``git archive``) measures that one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from spend import bench_database  # noqa: E402

from clawguard.core import budgets, commands, principals  # noqa: E402
from clawguard.runtime import config  # noqa: E402
from clawguard.store import engines  # noqa: E402

BUDGETS = (
    {"scope": "agent", "scopeId": "a1", "limitUsdCents": 100_000_000, "mode": "cap"},
    {"scope": "team", "scopeId": "t1", "limitUsdCents": 100_000_000, "mode": "warn"},
)


def _ms(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


async def run(url: str, seconds: float, instances: int, tasks: int) -> str:
    def clock() -> int:
        return int(time.time() * 1000)

    stores = [engines.open_store(config.StorageConfig(url=url), clock) for _ in range(instances)]
    for store in stores:
        await store.open()
    leader = principals.Principal("key_bench", "bench", "leader")
    for body in BUDGETS:
        await stores[0].set_budget(commands.BudgetSet.model_validate(body), leader)
    latencies: list[float] = []
    batches: list[tuple[int, float]] = []
    for store in stores:
        store.batch_observer = lambda n, dt: batches.append((n, dt))
    deadline = time.perf_counter() + seconds

    async def caller(i: int) -> None:
        store = stores[i % instances]
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            request = commands.SpendRequest.model_validate({
                "agentId": "a1", "missionId": "m1", "teamId": "t1", "tenantId": "org",
                "costUsdCents": Decimal("0.4"), "idempotencyKey": f"k-{i}-{n}",
            })
            started = time.perf_counter()
            await store.record_spend(request, budgets.fingerprint(request),
                                     budgets.ledger_key("bench", request.idempotency_key))
            latencies.append(time.perf_counter() - started)

    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(tasks)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    for store in stores:
        await store.close()
    count = len(latencies)
    latencies.sort()
    took = sorted(dt for _, dt in batches)
    return (f"x{instances}  {count / elapsed:6.0f} spends/s  p50 {_ms(latencies, .5):6.2f} ms"
            f"  p99 {_ms(latencies, .99):6.2f} ms  batches {len(took)} of {count / len(took):4.1f}"
            f" (p50 {_ms(took, .5):5.2f} ms)  cpu {cpu / count * 1e6:4.0f} us/spend")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--instances", type=int, default=1, choices=(1, 2))
    parser.add_argument("--tasks", type=int, default=64, help="concurrent callers (default 64)")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args(argv)
    with bench_database(argparse.Namespace(store="postgresql", pg_url=args.pg_url)) as url:
        assert url is not None
        print(asyncio.run(run(url, args.seconds, args.instances, args.tasks)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
