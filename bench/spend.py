"""Throughput and latency of the spend hot path, relative to a no-op route.

Starts ``clawguard serve`` on a temporary database (a subprocess), creates two
budgets (agent ``a1`` in cap mode, team ``t1`` in warn mode), then, from a
separate load process, drives two phases one after the other against that same
daemon with N concurrent keep-alive connections (default 64) for ``--seconds``
each:

1. ``GET /healthz`` -- the ceiling: what the HTTP stack alone can serve;
2. ``POST /api/governance/spend`` charging four scopes (agent, mission, team,
   tenant; two with budget rows) with a unique ``idempotencyKey`` per request,
   i.e. one ``BEGIN IMMEDIATE`` transaction with a ledger row per request;
3. holds: each step is ``POST /api/governance/holds`` (0.5 cents on the same
   four scopes, a unique key) then ``POST .../holds/{id}/commit`` (0.4 cents),
   as an executor that reserves before a step and charges after it. Its line
   counts steps (two requests each) and their latencies are per request.

It prints requests/s, p50 and p99 latency for each phase and the ratio
spend-rps / healthz-rps (and holds steps/s over spend requests/s), and how
often the disk stalled a flush during the spend phase (DiskProbe): a stall of
the disk delays every commit of either store, so read a p99 beside it. The target
(on a 2-core machine) is a ratio of at least 0.3 with a spend p99 under 25 ms
and no errors; the exit status is 1 when it is missed.

The load generator is ``wrk`` (Debian package ``wrk``) when it is on PATH,
otherwise a pool of Python processes using aiohttp (same connection count).
The generator in use is printed. Run from the repository root::

    python bench/spend.py [--seconds 10] [--connections 64]

``--store postgresql`` runs the daemon on a fresh PostgreSQL database made on
the server of ``--pg-url`` (dropped afterwards); ``--instances 2`` runs two
daemons on that one database and splits the connections between them (one
wrk each; the p99 shown is the worse of the two). Its target is a p99 under
25 ms and no errors; throughput against SQLite is read off two runs made in
the same minute (bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LISTEN_RE = re.compile(r"listening on http://([^\s:/]+|\[[^\]]+\]):(\d+)")
SPEND_MICROS = 4000  # 0.4 cents in micro-dollars
SPEND_FIELDS = '"agentId":"a1","missionId":"m1","teamId":"t1","tenantId":"org","costUsdCents":0.4'
BUDGETS = (
    {"scope": "agent", "scopeId": "a1", "limitUsdCents": 100_000_000, "mode": "cap"},
    {"scope": "team", "scopeId": "t1", "limitUsdCents": 100_000_000, "mode": "warn"},
)
TARGET_RATIO = 0.3
TARGET_P99_MS = 25.0


@dataclass
class Result:
    requests: int  # responses received with a status < 400
    errors: int  # status >= 400, socket errors, timeouts
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def line(self, name: str) -> str:
        return (
            f"{name + ':':8} {self.rps:8.0f} req/s  p50 {self.p50_ms:6.2f} ms"
            f"  p99 {self.p99_ms:6.2f} ms  errors {self.errors}"
        )


class DiskProbe:
    """How long the disk made a durable write wait while a phase ran.

    A thread writes one 8 KiB block and fdatasyncs it every 20 ms, in the bench's
    temporary directory (on these machines the same disk as PostgreSQL's data), and
    counts the flushes that took over 10 ms. Both stores wait for such a flush at every
    commit, and the budget rows stay locked until it returns, so one stall of the disk
    holds back every spend in flight: a phase with stalls has them in its p99. The
    probe adds 50 small flushes a second to the store's own.
    """

    EVERY_S = 0.02
    STALL_S = 0.01

    def __init__(self, directory: Path) -> None:
        self._path = directory / "disk-probe"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="disk-probe", daemon=True)
        self.took: list[float] = []  # seconds, one per flush

    def __enter__(self) -> DiskProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        block = b"\0" * 8192
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while not self._stop.wait(self.EVERY_S):
                started = time.perf_counter()
                os.pwrite(fd, block, 0)
                os.fdatasync(fd)
                self.took.append(time.perf_counter() - started)
        finally:
            os.close(fd)
            self._path.unlink(missing_ok=True)

    def line(self) -> str:
        took = sorted(self.took) or [0.0]
        stalls = sum(t > self.STALL_S for t in took)
        return (f"{'disk:':8} {stalls} of {len(self.took)} fdatasync probes over "
                f"{self.STALL_S * 1000:.0f} ms, median {took[len(took) // 2] * 1000:.2f} ms,"
                f" longest {took[-1] * 1000:.0f} ms (during the spend phase)")


# --------------------------------------------------------------------- daemon


class Daemon:
    """A ``clawguard serve`` subprocess on a fresh temporary database."""

    def __init__(self, workdir: Path, url: str | None = None, auth: str = "none",
                 extra_config: str = "", program: tuple[str, ...] = ("-m", "clawguard")
                 ) -> None:
        self.workdir = workdir
        self.program = program  # what python runs: the daemon, or a bench's wrapper of it
        self.extra_config = extra_config  # more TOML, after the settings above
        self.url = url
        self.auth = auth  # "keys": the first-start admin key is in workdir/clawguard-admin.key
        self.log_path = workdir / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> str:
        config = self.workdir / "clawguard.toml"
        storage = (f'url = "{self.url}"' if self.url
                   else f'path = "{self.workdir / "clawguard.db"}"')
        config.write_text(
            '[server]\nhost = "127.0.0.1"\nport = 0\n'
            f'[storage]\n{storage}\n'
            f'[auth]\nmode = "{self.auth}"\n' + self.extra_config
        )
        env = dict(os.environ, CLAWGUARD_AUTH_MODE=self.auth, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        # stderr goes to a file, not a pipe: a pipe nobody drains would block
        # a daemon that logs per request.
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *self.program, "serve", "--config", str(config)],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = LISTEN_RE.search(self.log_path.read_text(errors="replace"))
            if match:
                return f"http://{match.group(1)}:{match.group(2)}"
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("daemon did not start; see its log")

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def http_json(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise RuntimeError(f"{method} {url}: {exc.code} {detail}") from None
    return json.loads(raw) if raw else None


def prepare(base: str) -> None:
    """Create the two budgets and check that one spend goes through."""
    for budget in BUDGETS:
        http_json("POST", f"{base}/api/governance/budgets", budget)
    body = json.loads("{" + SPEND_FIELDS + "}") | {"idempotencyKey": "bench-probe"}
    reply = http_json("POST", f"{base}/api/governance/spend", body)
    if reply.get("stop") or reply.get("spend", {}).get("costUsdMicros") != SPEND_MICROS:
        raise RuntimeError(f"unexpected spend reply: {reply}")


def agent_spent_micros(base: str) -> int:
    budgets = http_json("GET", f"{base}/api/governance/budgets?scope=agent")["budgets"]
    return next(int(b["spentUsdMicros"]) for b in budgets if b["scopeId"] == "a1")


# ------------------------------------------------------------------------ wrk

WRK_DONE = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH_RESULT %d %d %d %d %d %d %d %.1f %.1f\\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""

# The start of every POST script the benches give wrk: a per-thread id and a counter.
WRK_THREADS = """
-- setup() runs in the main Lua state; thread:set() gives each thread's own
-- state a global `tid`, so keys are unique across threads.
local counter, next_tid = 0, 0
function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
"""


WRK_SPEND = WRK_THREADS + """
function request()
  counter = counter + 1
  local body = string.format('{%s,"idempotencyKey":"bench-%s-%d-%d"}', FIELDS, RUN, tid, counter)
  return wrk.format(nil, nil, nil, body)
end
"""


WRK_HOLDS = WRK_THREADS + """
-- A step is a hold then its commit: response() queues each new hold's id, and the
-- thread's next request commits the oldest queued one (on whichever connection is free).
local queued = {}
function request()
  local id = table.remove(queued, 1)
  if id then
    return wrk.format(nil, "/api/governance/holds/" .. id .. "/commit", nil,
                      '{"costUsdCents":0.4}')
  end
  counter = counter + 1
  local body = string.format('{%s,"idempotencyKey":"hold-%s-%d-%d"}', FIELDS, RUN, tid, counter)
  return wrk.format(nil, "/api/governance/holds", nil, body)
end
function response(status, headers, body)
  local id = string.match(body, '^{"hold":{"id":"(hld_[0-9a-f]+)"')
  if id then table.insert(queued, id) end
end
"""
HOLD_FIELDS = SPEND_FIELDS.replace('"costUsdCents":0.4', '"amountUsdCents":0.5')


def run_wrk(
    url: str, spend: bool | str, connections: int, threads: int, seconds: int, tmp: Path
) -> Result:
    kind = "holds" if spend == "holds" else "spend" if spend else "healthz"
    script = tmp / f"{kind}.lua"
    lua = WRK_DONE
    if spend:
        fields = HOLD_FIELDS if kind == "holds" else SPEND_FIELDS
        lua = (
            f"FIELDS = {json.dumps(fields)}\nRUN = {json.dumps(uuid.uuid4().hex[:8])}\n"
            + (WRK_HOLDS if kind == "holds" else WRK_SPEND)
            + lua
        )
    script.write_text(lua)
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return parse_wrk(proc.stdout, proc.stderr)


def parse_wrk(stdout: str, stderr: str) -> Result:
    """The figures the WRK_DONE hook printed (bench/authorize.py reads them too)."""
    match = re.search(r"^BENCH_RESULT (.*)$", stdout, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"could not parse wrk output:\n{stdout}{stderr}")
    total, micros, status, *sock, p50_us, p99_us = match.group(1).split()
    return Result(
        requests=int(total) - int(status),
        errors=int(status) + sum(int(n) for n in sock),
        seconds=int(micros) / 1e6,
        p50_ms=float(p50_us) / 1000,
        p99_ms=float(p99_us) / 1000,
    )


# ------------------------------------------------------------- python fallback


async def _load(
    url: str, spend: bool | str, connections: int, seconds: float, worker: int
) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    run = uuid.uuid4().hex[:8]
    counter = 0

    async def client(session: aiohttp.ClientSession, deadline: float) -> None:
        nonlocal errors, counter
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                if spend == "holds":
                    counter += 1
                    body = (f'{{{HOLD_FIELDS},"idempotencyKey":'
                            f'"hold-{run}-{worker}-{counter}"}}')
                    base = url.removesuffix("/api/governance/holds")
                    async with session.post(url, data=body, headers={
                            "Content-Type": "application/json"}) as held:
                        hold = await held.json()
                    if held.status != 201:
                        raise aiohttp.ClientError(f"hold: {held.status}")
                    latencies.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    resp = await session.post(
                        f"{base}/api/governance/holds/{hold['hold']['id']}/commit",
                        data='{"costUsdCents":0.4}', headers={"Content-Type": "application/json"})
                elif spend:
                    counter += 1
                    body = f'{{{SPEND_FIELDS},"idempotencyKey":"bench-{run}-{worker}-{counter}"}}'
                    resp = await session.post(
                        url, data=body, headers={"Content-Type": "application/json"}
                    )
                else:
                    resp = await session.get(url)
                async with resp:
                    await resp.read()
                    ok = resp.status < 400
            except (TimeoutError, aiohttp.ClientError):
                ok = False
            if ok:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1

    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client(session, start + seconds) for _ in range(connections)))
        elapsed = time.perf_counter() - start
    return {"latencies": latencies, "errors": errors, "seconds": elapsed}


def _load_worker(
    url: str, spend: bool | str, connections: int, seconds: float, worker: int
) -> dict[str, Any]:
    return asyncio.run(_load(url, spend, connections, seconds, worker))


def run_python(
    url: str, spend: bool | str, connections: int, processes: int, seconds: int
) -> Result:
    processes = max(1, min(processes, connections))
    shares = [connections // processes + (i < connections % processes) for i in range(processes)]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=ctx) as pool:
        futures = [
            pool.submit(_load_worker, url, spend, n, seconds, i) for i, n in enumerate(shares)
        ]
        parts = [f.result() for f in futures]
    latencies = sorted(lat for p in parts for lat in p["latencies"])

    def pct(q: float) -> float:
        if not latencies:
            return 0.0
        return float(latencies[min(len(latencies) - 1, int(q * len(latencies)))]) * 1000

    return Result(
        requests=len(latencies),
        errors=sum(p["errors"] for p in parts),
        seconds=max(p["seconds"] for p in parts),
        p50_ms=pct(0.50),
        p99_ms=pct(0.99),
    )


# ----------------------------------------------------------------------- main


@contextlib.contextmanager
def bench_database(args: argparse.Namespace) -> Iterator[str | None]:
    """A fresh PostgreSQL database for --store postgresql (dropped after), else None."""
    if args.store != "postgresql":
        yield None
        return
    import psycopg

    name = "clawguard_bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(args.pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # a name made here, not input
    parts = urllib.parse.urlsplit(args.pg_url)
    try:
        yield urllib.parse.urlunsplit(parts._replace(path="/" + name))
    finally:
        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--seconds", type=int, default=10, help="duration of each phase (default 10)"
    )
    parser.add_argument(
        "--connections", type=int, default=64, help="concurrent connections (default 64)"
    )
    parser.add_argument("--threads", type=int, default=2, help="load threads/processes (default 2)")
    parser.add_argument(
        "--generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator: wrk if installed (auto), or the built-in aiohttp one",
    )
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite",
                        help="the storage engine (default sqlite)")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a PostgreSQL server to make the bench database on")
    parser.add_argument("--instances", type=int, default=1, choices=(1, 2),
                        help="daemons on the one database (2: postgresql only)")
    args = parser.parse_args(argv)
    if args.instances > 1 and args.store != "postgresql":
        parser.error("--instances 2 needs --store postgresql (a SQLite file has one daemon)")

    generator = args.generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "python"
    elif generator == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not on PATH (Debian: apt-get install wrk)")

    with tempfile.TemporaryDirectory(prefix="clawguard-bench-") as tmpdir, \
            bench_database(args) as url:
        tmp = Path(tmpdir)
        daemons = []
        for n in range(args.instances):
            (tmp / str(n)).mkdir()
            daemons.append(Daemon(tmp / str(n), url))
        try:
            bases = [daemon.start() for daemon in daemons]
            prepare(bases[0])

            def phase(path: str, spend: bool | str) -> Result:
                print(f"{generator}: {path} for {args.seconds} s ...", file=sys.stderr)
                share = args.connections // len(bases)
                # One wrk script folder per daemon: each script has its own run id, so the
                # two generators never send the same idempotency keys.
                with ThreadPoolExecutor(len(bases)) as pool:
                    parts = list(pool.map(lambda n: (
                        run_wrk(bases[n] + path, spend, share, args.threads, args.seconds,
                                tmp / str(n))
                        if generator == "wrk"
                        else run_python(bases[n] + path, spend, share, args.threads, args.seconds)
                    ), range(len(bases))))
                return Result(
                    requests=sum(p.requests for p in parts), errors=sum(p.errors for p in parts),
                    seconds=max(p.seconds for p in parts), p50_ms=max(p.p50_ms for p in parts),
                    p99_ms=max(p.p99_ms for p in parts),
                )

            healthz = phase("/healthz", spend=False)
            with DiskProbe(tmp) as disk:
                spend = phase("/api/governance/spend", spend=True)
            charged = agent_spent_micros(bases[0]) // SPEND_MICROS - 1  # minus the probe
            holds = phase("/api/governance/holds", spend="holds")
            committed = agent_spent_micros(bases[0]) // SPEND_MICROS - 1 - charged
        except Exception:
            for daemon in daemons:
                print(f"daemon log (tail):\n{daemon.log_tail()}", file=sys.stderr)
            raise
        finally:
            for daemon in daemons:
                daemon.stop()

    ratio = spend.rps / healthz.rps if healthz.rps else 0.0
    print(f"store: {args.store} x{args.instances}  generator: {generator}"
          f"  ({args.connections} connections, {args.seconds} s per phase)")
    print(healthz.line("healthz"))
    print(spend.line("spend"))
    print(disk.line())
    print(f"spends charged to agent a1: {charged} (responses counted: {spend.requests})")
    steps = holds.requests // 2
    print(f"{'holds:':8} {steps / holds.seconds:8.0f} steps/s (hold + commit)  p50 "
          f"{holds.p50_ms:6.2f} ms  p99 {holds.p99_ms:6.2f} ms per request  errors "
          f"{holds.errors}  commits charged: {committed}")
    print(f"ratio spend/healthz: {ratio:.2f}  holds steps/spend: "
          f"{steps / holds.seconds / spend.rps if spend.rps else 0:.2f}")
    if generator == "python":
        print("note: the Python generator may saturate before the daemon; wrk is more exact")
    passed = (
        (ratio >= TARGET_RATIO or args.store == "postgresql")
        and spend.p99_ms < TARGET_P99_MS
        and spend.errors == 0
        and healthz.errors == 0
        and charged >= spend.requests
        and holds.errors == 0
    )
    verdict = "PASS" if passed else "FAIL"
    print(
        f"{verdict}: target ratio >= {TARGET_RATIO} (sqlite), spend p99 < {TARGET_P99_MS:g} ms, "
        "no errors, every counted spend charged"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
