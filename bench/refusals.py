"""Spend throughput during a wrong-key flood, against the same daemon without one.

Starts ``clawguard serve`` with keys on (bench/spend.py's Daemon, a temporary
database), then drives three phases of ``--seconds`` each with wrk, one after
the other, in the same minute:

1. spends with the valid (first-start admin) key, ``--connections`` connections;
2. the same spends while a second wrk floods ``POST /api/governance/spend`` with
   a different wrong key on every request (``--flood-connections``);
3. the spends alone again.

It prints each phase, how many refused calls the flood made and how many audit
rows they left, and exits 1 unless the spends during the flood reach at least
80% of the mean of the phases without it. Run from the repository root::

    python bench/refusals.py [--seconds 5] [--connections 64] [--flood-connections 16]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import spend

TARGET = 0.8

FLOOD = spend.WRK_THREADS + """
function request()
  counter = counter + 1
  wrk.headers["X-API-Key"] = string.format("cgk_wrong-%s-%d-%d", RUN, tid, counter)
  return wrk.format(nil, nil, nil, '{"agentId":"a1","costUsdCents":1}')
end
"""


def wrk(url: str, script: Path, lua: str, connections: int, seconds: int) -> subprocess.Popen[str]:
    script.write_text(lua + spend.WRK_DONE)
    return subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def result(proc: subprocess.Popen[str]) -> spend.Result:
    out, err = proc.communicate()
    match = re.search(r"^BENCH_RESULT (.*)$", out, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"could not parse wrk output:\n{out}{err}")
    total, micros, status, *sock, p50_us, p99_us = match.group(1).split()
    return spend.Result(requests=int(total) - int(status),
                        errors=int(status) + sum(int(n) for n in sock),
                        seconds=int(micros) / 1e6, p50_ms=float(p50_us) / 1000,
                        p99_ms=float(p99_us) / 1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=5, help="each phase (default 5)")
    parser.add_argument("--connections", type=int, default=64, help="spend connections")
    parser.add_argument("--flood-connections", type=int, default=16,
                        help="wrong-key connections during the flood (default 16)")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        parser.error("wrk is not on PATH (Debian: apt-get install wrk)")

    with tempfile.TemporaryDirectory(prefix="clawguard-bench-") as tmpdir:
        tmp = Path(tmpdir)
        daemon = spend.Daemon(tmp, auth="keys")
        try:
            base = daemon.start()
            key = (tmp / "clawguard-admin.key").read_text().strip()
            spend_lua = (f"FIELDS = {json.dumps(spend.SPEND_FIELDS)}\n"
                         f"RUN = {json.dumps(uuid.uuid4().hex[:8])}\n" + spend.WRK_SPEND
                         + f'wrk.headers["X-API-Key"] = "{key}"\n')
            url = base + "/api/governance/spend"

            def spends(name: str) -> spend.Result:
                print(f"wrk: {name} for {args.seconds} s ...", file=sys.stderr)
                return result(wrk(url, tmp / f"spend-{name}.lua", spend_lua, args.connections,
                                  args.seconds))

            alone = spends("alone")
            flood_lua = f"RUN = {json.dumps(uuid.uuid4().hex[:8])}\n" + FLOOD
            flooding = wrk(url, tmp / "flood.lua", flood_lua, args.flood_connections,
                           args.seconds)
            during = spends("flood")
            flood = result(flooding)
            again = spends("again")
        except Exception:
            print(f"daemon log (tail):\n{daemon.log_tail()}", file=sys.stderr)
            raise
        finally:
            daemon.stop()  # the last refusals are audited at shutdown
        conn = sqlite3.connect(tmp / "clawguard.db")
        rows, counted = conn.execute(
            "SELECT count(*), coalesce(sum(json_extract(details, '$.count')), 0) FROM audit"
            " WHERE action = 'auth.refused'").fetchone()
        conn.close()

    without = (alone.rps + again.rps) / 2
    ratio = during.rps / without if without else 0.0
    print(f"generator: wrk  ({args.connections} spend connections, {args.flood_connections}"
          f" flood connections, {args.seconds} s per phase)")
    print(alone.line("alone"))
    print(during.line("flood"))
    print(again.line("again"))
    print(f"wrong-key flood: {flood.errors / flood.seconds:.0f} refused/s"
          f" ({flood.errors} refused, {flood.requests} not refused)")
    print(f"audit rows for refusals: {rows} (counting {counted} refused calls)")
    print(f"spend during the flood / without: {ratio:.2f}")
    passed = ratio >= TARGET and alone.errors == during.errors == again.errors == 0
    print(f"{'PASS' if passed else 'FAIL'}: target >= {TARGET}, no spend errors")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
