"""Spend throughput with a slow webhook receiver configured, against the same load without.

Each round starts ``clawguard serve`` twice on a fresh temporary database
(bench/spend.py's Daemon): once with no webhook, once with one webhook whose
receiver (a thread here) answers every POST only after ``--delay`` seconds
(default 2). Against each, for ``--seconds``, wrk drives spends on
``--connections`` connections while a side thread makes approval prompts at
``--events-per-s`` (each an `approval.requested` event, so the webhook always
has deliveries in flight and a growing backlog). Rounds alternate without and
with, ``--rounds`` times, so the machine's noise falls on both alike.

It prints each phase's spends/s and p99, how many deliveries the receiver
answered, the daemon's CPU time per spend (steadier than spends/s on a shared
machine), and the ratio of the mean with the slow receiver to the mean without.
It exits 1 when that ratio is under 0.85. Run from the repository root::

    python bench/notify.py [--seconds 8] [--rounds 2] [--delay 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import spend

TARGET = 0.85


class SlowReceiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.answered = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: SlowReceiver

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.server.delay)
        with self.server.lock:
            self.server.answered += 1
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def prompts(base: str, per_s: float, stop: threading.Event) -> int:
    """Approval prompts at `per_s` until `stop`; how many were made."""
    made = 0
    while not stop.is_set():
        spend.http_json("POST", f"{base}/api/tools/approvals",
                        {"toolName": "rm", "agentId": "bench", "waitMs": 0})
        made += 1
        stop.wait(1 / per_s)
    return made


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase(tmp: Path, hook_url: str | None, args: argparse.Namespace
          ) -> tuple[spend.Result, int, float]:
    extra = ""
    if hook_url is not None:
        extra = f'[[notify.webhooks]]\nurl = "{hook_url}"\nsecret = "bench"\n'
    workdir = Path(tempfile.mkdtemp(dir=tmp))
    daemon = spend.Daemon(workdir, extra_config=extra)
    try:
        base = daemon.start()
        spend.prepare(base)
        stop = threading.Event()
        made: list[int] = []
        side = threading.Thread(target=lambda: made.append(prompts(base, args.events_per_s,
                                                                   stop)))
        assert daemon.proc is not None
        cpu = cpu_seconds(daemon.proc.pid)
        side.start()
        try:
            result = spend.run_wrk(base + "/api/governance/spend", True, args.connections, 2,
                                   args.seconds, workdir)
        finally:
            stop.set()
            side.join()
        cpu = cpu_seconds(daemon.proc.pid) - cpu
        return result, made[0], cpu * 1e6 / max(result.requests, 1)
    except Exception:
        print(f"daemon log (tail):\n{daemon.log_tail()}", file=sys.stderr)
        raise
    finally:
        daemon.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--delay", type=float, default=2.0, help="the receiver's answer time")
    parser.add_argument("--events-per-s", type=float, default=20.0)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        parser.error("wrk is not on PATH (Debian: apt-get install wrk)")
    receiver = SlowReceiver(args.delay)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    without: list[float] = []
    with_hook: list[float] = []
    cpu: dict[str, list[float]] = {"without": [], "slow hook": []}
    with tempfile.TemporaryDirectory(prefix="clawguard-bench-") as tmpdir:
        for n in range(args.rounds):
            for url, series, name in ((None, without, "without"), (hook, with_hook, "slow hook")):
                before = receiver.answered
                result, made, cpu_us = phase(Path(tmpdir), url, args)
                series.append(result.rps)
                cpu[name].append(cpu_us)
                print(f"round {n + 1} {result.line(name)}  prompts {made}"
                      f"  deliveries answered {receiver.answered - before}"
                      f"  daemon CPU {cpu_us:.0f} us/spend")
    receiver.shutdown()
    ratio = (sum(with_hook) / len(with_hook)) / (sum(without) / len(without))
    print(f"ratio spends/s with a {args.delay:g} s receiver / without: {ratio:.2f}")
    mean = {name: sum(v) / len(v) for name, v in cpu.items()}
    print(f"daemon CPU per spend (prompts and deliveries included): without"
          f" {mean['without']:.0f} us, with {mean['slow hook']:.0f} us"
          f" ({mean['slow hook'] / mean['without']:.2f}x)")
    if ratio < TARGET:
        print(f"FAIL: under {TARGET}")
        return 1
    print(f"PASS: at least {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
