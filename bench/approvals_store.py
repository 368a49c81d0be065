"""Approval decisions at the PostgreSQL store alone: no HTTP, no waiters.

Each round opens ``--batch`` approvals (default 64) on a fresh database made on
the server of ``--pg-url`` (dropped afterwards), then resolves them all at once,
so they share a decision batch (store/postgres/approvals.py ``decide_all``).
Prints decisions per second, the process's CPU per decision (the figure the
box's other load moves least) and the time of a batch. It imports clawguard
from the checkout it sits in, so a copy in another checkout (``git archive``)
measures that one::

    python bench/approvals_store.py [--rounds 20] [--batch 64]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from spend import bench_database  # noqa: E402

from clawguard.core import principals, records  # noqa: E402
from clawguard.runtime import config  # noqa: E402
from clawguard.store import engines  # noqa: E402

LEADER = principals.Principal("key_bench", "bench", "leader")


def _new(approval_id: str) -> records.NewApproval:
    return records.NewApproval(id=approval_id, tool_name="bench.deploy", agent_id=approval_id,
                               args_summary=None, reason=None, task_id=None, tenant_id=None,
                               args_fingerprint="f")


async def run(url: str, rounds: int, size: int) -> str:
    store = engines.open_store(config.StorageConfig(url=url), lambda: int(time.time() * 1000))
    await store.open()
    batches: list[float] = []
    cpu = wall = 0.0
    try:
        for n in range(rounds):
            ids = [f"apr_{n}_{i}" for i in range(size)]
            await asyncio.gather(*(store.open_approval(_new(i), 3_600_000) for i in ids))
            store.batch_observer = lambda _, seconds: batches.append(seconds)
            started_cpu, started = time.process_time(), time.perf_counter()
            await asyncio.gather(*(store.resolve_approval(i, "allow_once", "bench", 0, LEADER)
                                   for i in ids))
            wall += time.perf_counter() - started
            cpu += time.process_time() - started_cpu
            store.batch_observer = None
    finally:
        await store.close()
    decided = rounds * size
    return (f"{decided / wall:6.0f} decisions/s  cpu {cpu / decided * 1e6:4.0f} us/decision  "
            f"batches {len(batches)}, median {statistics.median(batches) * 1000:5.1f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64, help="decisions made at once (64)")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args(argv)
    with bench_database(argparse.Namespace(store="postgresql", pg_url=args.pg_url)) as url:
        assert url is not None
        print(asyncio.run(run(url, args.rounds, args.batch)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
