"""Capacity of the approval handshake: many parked waits on one daemon, then every one resolved.

Starts ``clawguard serve`` (a subprocess, port 0, a temporary database) and,
from this process, over HTTP/1.1 keep-alive connections of its own (``Http``:
70-130 us of this process's CPU per resolve, where an aiohttp session took
260-350 us of the two cores the daemons are measured on):

1. warms the daemon up with a small park-and-resolve round;
2. parks ``--waits`` (default 10,000) approval waits, each its own connection
   (``POST /api/tools/approvals``, one agent per wait so no sticky grant
   short-circuits), and reads the daemon's VmRSS from /proc before and after:
   resident memory per parked wait;
3. with all of them parked, sends the daemon SIGUSR1, which makes it run a
   full ``gc.collect()`` on its event loop thread (a hook this bench installs,
   not part of clawguard) while ``/healthz`` is probed: does a full collection
   stall other requests, and for how long;
4. resolves every request (``--concurrency`` at a time) while ``/healthz`` is
   probed, and measures, per request, the time from sending the resolve to
   its waiter's answer (the decision's commit included), and the delay from
   the resolve's response to its waiter's (negative: the waiter heard first,
   which is the design); and the CPU each party used for it (the daemons, the
   PostgreSQL backends serving them, this client), per resolve: on a box of two
   cores the figures that do not move with the noise of other work.

``--store postgresql --instances 2`` runs two daemons on a fresh PostgreSQL
database: waits are parked on both and decisions made on either.

Targets: decision -> waiter p99 <= 50 ms, /healthz worst <= 50 ms while
resolving, at most 12 KB per parked wait; exit status 1 when missed. Run
from the repository root with the package importable::

    python bench/approvals.py [--waits 10000] [--concurrency 64] [--no-freeze] [--log PATH]
                              [--store sqlite|postgresql] [--instances 1|2]

``--no-freeze`` leaves collection to CPython (no freezing, no collector), to
compare the pause of a full collection with and without it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from spend import bench_database

REPO = Path(__file__).resolve().parent.parent
LISTEN_RE = re.compile(r"listening on (http://[\d.]+:\d+)")
TOOLS = "/api/tools/approvals"
TARGET_KB_PER_WAIT = 12.0
TARGET_P99_MS = 50.0
TARGET_HEALTHZ_MS = 50.0

# Runs the daemon with two bench-only signal hooks: SIGUSR1 times a full
# collection on the loop's thread (a Python signal handler runs there, between
# bytecodes, just as an automatic collection would); SIGUSR2 counts the
# objects the collector tracks. Automatic generation-2 pauses are logged too.
WRAPPER = r"""
import gc, os, signal, sys, time
from clawguard.cli import local

_manual = [False]
def collect(signum, frame):
    started = time.perf_counter()
    _manual[0] = True
    found = gc.collect()
    _manual[0] = False
    took = (time.perf_counter() - started) * 1000
    print(f"BENCH collect {took:.2f} {found}", file=sys.stderr, flush=True)

def count(signum, frame):  # frozen objects too: the daemon freezes parked waits
    print(f"BENCH objects {len(gc.get_objects()) + gc.get_freeze_count()}"
          f" {gc.get_freeze_count()}", file=sys.stderr, flush=True)

_started = [0.0]
def watch(phase, info):
    if info["generation"] != 2 or _manual[0]:
        return
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        took = (time.perf_counter() - _started[0]) * 1000
        print(f"BENCH auto-gen2 {took:.2f}", file=sys.stderr, flush=True)

# Every stall of the daemon's loop over 50 ms, whatever its cause (BENCH lag <ms>), and
# every young collection over 20 ms.
import asyncio
from clawguard.runtime import server as _server
_serve = _server.serve
async def _lagging(cfg):
    async def watch_lag():
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(0.01)
            late = (loop.time() - started - 0.01) * 1000
            if late > 50:
                print(f"BENCH lag {late:.1f} {time.time():.3f}", file=sys.stderr, flush=True)
    watching = asyncio.ensure_future(watch_lag())
    try:
        await _serve(cfg)
    finally:
        watching.cancel()
_server.serve = _lagging
_young = [0.0]
def watch_young(phase, info):
    if info["generation"] == 2:
        return
    if phase == "start":
        _young[0] = time.perf_counter()
    elif (took := (time.perf_counter() - _young[0]) * 1000) > 20:
        print(f"BENCH young-gc {took:.2f} gen{info['generation']}", file=sys.stderr, flush=True)
gc.callbacks.append(watch_young)

signal.signal(signal.SIGUSR1, collect)
signal.signal(signal.SIGUSR2, count)
gc.callbacks.append(watch)
if os.environ.get("BENCH_NO_FREEZE"):  # CPython's own automatic collections, nothing frozen
    from clawguard.runtime import collector
    collector.TICK_S = 1e9
    gc.freeze = gc.unfreeze = lambda: None
    gc.set_threshold = lambda *thresholds: None
sys.exit(local.main(["serve"]))
"""


def raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1_048_576
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Daemon:
    def __init__(self, workdir: Path, freeze: bool, url: str | None = None) -> None:
        self.log_path = workdir / "daemon.log"
        self.db = workdir / "clawguard.db"
        self.url = url
        self.env = dict(
            os.environ,
            CLAWGUARD_SERVER_HOST="127.0.0.1",
            CLAWGUARD_SERVER_PORT="0",
            CLAWGUARD_STORAGE_PATH=str(self.db),
            CLAWGUARD_APPROVALS_TTL_MS="3600000",
            CLAWGUARD_APPROVALS_WAIT_MS="3600000",
            CLAWGUARD_AUTH_MODE="none",  # loopback only; the bench measures waiting, not keys
            PYTHONUNBUFFERED="1",
        )
        self.env.pop("CLAWGUARD_CONFIG", None)
        if url is not None:
            self.env["CLAWGUARD_STORAGE_URL"] = url
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), self.env.get("PYTHONPATH")) if p
        )
        if not freeze:
            self.env["BENCH_NO_FREEZE"] = "1"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> str:
        with self.log_path.open("wb") as log:  # a file, not a pipe nobody drains
            self.proc = subprocess.Popen(
                [sys.executable, "-c", WRAPPER], cwd=REPO, env=self.env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = LISTEN_RE.search(self.log())
            if match:
                return match[1]
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("daemon did not start:\n" + self.log())

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def rss_kb(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        assert match is not None
        return int(match[1])

    async def signal_and_read(self, signum: int, tag: str) -> list[str]:
        """Send a bench hook signal and wait for the line it logs."""
        seen = self.log().count(f"BENCH {tag} ")
        os.kill(self.pid, signum)
        for _ in range(500):
            lines = [line for line in self.log().splitlines() if line.startswith(f"BENCH {tag} ")]
            if len(lines) > seen:
                return lines[-1].split()[2:]
            await asyncio.sleep(0.01)
        raise RuntimeError(f"no BENCH {tag} line")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used (0 if it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pids(url: str | None) -> list[int]:
    """The PostgreSQL backends serving the bench's database (none for SQLite)."""
    if url is None:
        return []
    import psycopg

    with psycopg.connect(url) as pg:
        return [pid for (pid,) in pg.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()")]


class CpuMeter:
    """CPU used while resolving, per party: the daemons, PostgreSQL's backends, this client."""

    def __init__(self, daemons: list[Daemon], url: str | None) -> None:
        self.daemons = [daemon.pid for daemon in daemons]
        self.url = url
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        return {"daemons": sum(map(cpu_seconds, self.daemons)),
                "postgresql": sum(map(cpu_seconds, server_pids(self.url))),
                "client": time.process_time()}

    def used(self) -> dict[str, float]:
        end = self._read()
        return {party: end[party] - self.start.get(party, 0.0) for party in end}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# The headers an aiohttp client sends (a parked request keeps them: the memory per wait
# depends on them).
_HEADERS = (b"Accept: */*\r\nAccept-Encoding: gzip, deflate\r\n"
            b"User-Agent: Python/3.11 aiohttp/3.14.5\r\n")


class Http(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection, one request at a time: all this bench asks of a
    client, at a fraction of a general one's CPU (it shares the machine with the daemons
    it measures). Answers must carry Content-Length, as the daemon's JSON answers do."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self._host = b""

    @classmethod
    async def connect(cls, base: str) -> Http:
        url = urlsplit(base)
        assert url.hostname is not None and url.port is not None, base
        _, http = await asyncio.get_running_loop().create_connection(
            cls, url.hostname, url.port)
        http._host = url.netloc.encode()
        return http

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc or ConnectionError("the daemon closed the connection"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0 or self._answer is None:
            return
        head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        length = next((int(line.split(":", 1)[1]) for line in head[1:]
                       if line[:15].lower() == "content-length:"), None)
        if length is None:
            self._answer.set_exception(RuntimeError(f"no Content-Length: {head}"))
            return
        if len(self._buffer) < end + 4 + length:
            return
        body = bytes(self._buffer[end + 4:end + 4 + length])
        del self._buffer[:end + 4 + length]
        self._answer.set_result((int(head[0].split(" ", 2)[1]), body))

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """(status, body) of one request; `body` is sent as JSON."""
        assert self._transport is not None and self._answer is None
        payload = b"" if body is None else json.dumps(body).encode()
        self._answer = asyncio.get_running_loop().create_future()
        self._transport.write(
            b"%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n"
            b"Content-Type: application/json\r\n\r\n%s"
            % (method.encode(), path.encode(), self._host, _HEADERS, len(payload), payload))
        try:
            return await self._answer
        finally:
            self._answer = None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class Bench:
    def __init__(self, bases: list[str], db: Path, url: str | None) -> None:
        self.base = bases[0]
        self.bases = bases
        self.db = db
        self.url = url
        self.answered: dict[str, float] = {}
        self.resolutions: dict[str, str] = {}
        # A wait's connection stays open once answered, as an agent's would for its next
        # request (the daemon keeps an idle connection for each); closed at the end.
        self.connections: list[Http] = []

    def pending_ids(self) -> list[str]:
        """Read from the database, not over HTTP: listing 10,000 rows again and again
        would load the daemon (and its garbage collector) with work that is not waiting."""
        query = "SELECT id FROM approvals WHERE status = 'pending'"
        if self.url is not None:
            import psycopg

            with psycopg.connect(self.url) as pg:
                return [i for (i,) in pg.execute(query)]
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            return [i for (i,) in conn.execute(query)]
        finally:
            conn.close()

    async def connect(self, base: str) -> Http:
        http = await Http.connect(base)
        self.connections.append(http)
        return http

    def close(self) -> None:
        for http in self.connections:
            http.close()

    async def wait(self, agent: str, n: int = 0) -> None:
        """Park on daemon n % instances."""
        http = await self.connect(self.bases[n % len(self.bases)])
        body = {"toolName": "bench.deploy", "agentId": agent, "args": {"target": agent}}
        status, raw = await http.request("POST", TOOLS, body)
        if status != 200:
            raise RuntimeError(f"wait {agent}: {status} {raw[:200]!r}")
        answer = json.loads(raw)
        self.answered[answer["approvalId"]] = time.perf_counter()
        self.resolutions[answer["approvalId"]] = answer["resolution"]

    async def park(self, count: int, prefix: str, step: int = 500) -> list[asyncio.Task[None]]:
        """Open `count` waits, `step` connections at a time (the listen backlog is finite)."""
        tasks: list[asyncio.Task[None]] = []
        already = len(self.pending_ids())
        for start in range(0, count, step):
            batch = range(start, min(count, start + step))
            tasks += [asyncio.create_task(self.wait(f"{prefix}-{n}", n)) for n in batch]
            while len(self.pending_ids()) < already + len(tasks):  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # polls the bench's own read of the file
        return tasks

    async def resolve_all(
        self, ids: list[str], concurrency: int
    ) -> tuple[dict[str, float], dict[str, float]]:
        """(when each resolve was sent, when its response came back): `concurrency`
        connections, each sending its next resolve as soon as the last one is answered."""
        sent: dict[str, float] = {}
        resolved: dict[str, float] = {}
        queue = iter(enumerate(ids))

        async def resolver() -> None:
            # With two daemons, every other decision is made on the other one than half
            # of its waiters are parked on: it reaches them by NOTIFY.
            https = [await self.connect(base) for base in self.bases]
            for n, approval_id in queue:
                http = https[n % len(https)]
                sent[approval_id] = time.perf_counter()
                status, raw = await http.request(
                    "POST", f"{TOOLS}/{approval_id}/resolve", {"decision": "allow_once"})
                if status != 200:
                    raise RuntimeError(f"resolve {approval_id}: {status} {raw[:200]!r}")
                resolved[approval_id] = time.perf_counter()

        await asyncio.gather(*(resolver() for _ in range(concurrency)))
        return sent, resolved

    async def probe_until(self, task: asyncio.Task[Any]) -> list[float]:
        """Sequential /healthz latencies (ms) until `task` is done."""
        http = await self.connect(self.base)
        latencies = []
        while not task.done():
            started = time.perf_counter()
            await http.request("GET", "/healthz")
            latencies.append((time.perf_counter() - started) * 1000)
        return latencies

    async def probe(self, seconds: float) -> list[float]:
        """Sequential /healthz latencies (ms) over `seconds`."""
        http = await self.connect(self.base)
        latencies = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await http.request("GET", "/healthz")
            latencies.append((time.perf_counter() - started) * 1000)
        return latencies


async def gc_stall(bench: Bench, daemon: Daemon) -> tuple[float, float, float]:
    """(collect ms, healthz p50 ms before, worst healthz ms while it ran)."""
    baseline = await bench.probe(0.5)
    probing = asyncio.create_task(bench.probe(1.0))
    await asyncio.sleep(0.3)
    took, _ = await daemon.signal_and_read(signal.SIGUSR1, "collect")
    during = await probing
    return float(took), statistics.median(baseline), max(during)


def auto_pauses(daemon: Daemon) -> list[float]:
    """The automatic full collections the daemon has logged so far (ms each)."""
    return [float(line.split()[2]) for line in daemon.log().splitlines()
            if line.startswith("BENCH auto-gen2 ")]


async def run(daemons: list[Daemon], bases: list[str], waits: int, concurrency: int
              ) -> dict[str, Any]:
    daemon = daemons[0]  # the one whose collections and objects are watched
    # This process holds 10,000 client connections too: its own full collections would
    # stall it for hundreds of milliseconds and show up as the daemon's latency. It runs
    # for a minute, so it does without the collector.
    gc.disable()
    bench = Bench(bases, daemon.db, daemon.url)
    try:
        # Warm-up: every code path once, so lazily built state is in the baseline.
        warm = await bench.park(200, "warm", step=200)
        await bench.resolve_all(bench.pending_ids(), concurrency)
        await asyncio.gather(*warm)
        idle_collect = await gc_stall(bench, daemon)
        await daemon.signal_and_read(signal.SIGUSR1, "collect")
        objects_before, frozen = map(int, await daemon.signal_and_read(signal.SIGUSR2, "objects"))
        rss_before = sum(d.rss_kb() for d in daemons)

        started = time.perf_counter()
        tasks = await bench.park(waits, "agent")
        park_seconds = time.perf_counter() - started
        await asyncio.sleep(1.0)  # let every handler settle into its wait
        rss_parked = sum(d.rss_kb() for d in daemons)
        objects_parked = int((await daemon.signal_and_read(signal.SIGUSR2, "objects"))[0])
        parked_collect = await gc_stall(bench, daemon)

        pauses_before_resolving = len(auto_pauses(daemon))
        ids = bench.pending_ids()
        if len(ids) != waits:
            raise RuntimeError(f"{len(ids)} pending, expected {waits}")
        meter = CpuMeter(daemons, daemon.url)
        started, resolving_from = time.perf_counter(), time.time()
        resolving = asyncio.create_task(bench.resolve_all(ids, concurrency))
        probing = asyncio.create_task(bench.probe_until(resolving))
        sent, resolved = await resolving
        resolving_until = time.time()
        await asyncio.gather(*tasks)
        resolve_seconds = time.perf_counter() - started
        cpu = meter.used()
        healthz_resolving = await probing
    finally:
        bench.close()
    delays = [(bench.answered[i] - resolved[i]) * 1000 for i in ids]
    round_trips = [(bench.answered[i] - sent[i]) * 1000 for i in ids]
    auto_gen2 = auto_pauses(daemon)
    return {
        "waits": waits, "park_seconds": park_seconds, "resolve_seconds": resolve_seconds,
        "rss_before": rss_before, "rss_parked": rss_parked,
        "objects_per_wait": (objects_parked - objects_before) * len(daemons) / waits,
        "frozen": frozen,
        "allowed": sum(bench.resolutions[i] == "allow_once" for i in ids),
        "delays": delays, "round_trips": round_trips,
        "idle_collect": idle_collect, "parked_collect": parked_collect,
        "auto_gen2": auto_gen2, "auto_gen2_resolving": auto_gen2[pauses_before_resolving:],
        "healthz_resolving": healthz_resolving, "resolving": (resolving_from, resolving_until),
        "cpu": cpu,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--waits", type=int, default=10_000, help="parked waits (10000)")
    parser.add_argument("--concurrency", type=int, default=64, help="resolves in flight (64)")
    parser.add_argument("--no-freeze", action="store_true",
                        help="the daemon leaves collection to CPython (no freezing, no tick)")
    parser.add_argument("--log", help="keep the daemon's log (with its BENCH lines) here")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite",
                        help="the engine (postgresql: a fresh database on --pg-url's server)")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--instances", type=int, default=1, choices=(1, 2),
                        help="daemons on the one database, waits and decisions split "
                             "between them (2: postgresql only)")
    args = parser.parse_args(argv)
    if args.instances > 1 and args.store != "postgresql":
        parser.error("--instances 2 needs --store postgresql (a SQLite file has one daemon)")
    raise_open_files_limit()  # the daemon inherits it, and raises its own too
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.waits + 200:
        parser.error(f"the open files limit ({soft}) is too low for {args.waits} waits")

    with tempfile.TemporaryDirectory(prefix="clawguard-bench-") as tmpdir, \
            bench_database(args) as url:
        daemons = []
        for n in range(args.instances):
            (Path(tmpdir) / str(n)).mkdir()
            daemons.append(Daemon(Path(tmpdir) / str(n), freeze=not args.no_freeze, url=url))
        try:
            bases = [daemon.start() for daemon in daemons]
            result = asyncio.run(run(daemons, bases, args.waits, args.concurrency))
        except BaseException:
            for daemon in daemons:
                print("daemon log (tail):\n" + "\n".join(daemon.log().splitlines()[-30:]),
                      file=sys.stderr)
            raise
        finally:
            for daemon in daemons:
                daemon.stop()
            log_text = "\n".join(daemon.log() for daemon in daemons)
            daemon = daemons[0]
            if args.log:
                Path(args.log).write_text(log_text)

    waits = result["waits"]
    per_wait_kb = (result["rss_parked"] - result["rss_before"]) / waits
    delays = result["delays"]
    p50, p99 = pct(delays, 0.50), pct(delays, 0.99)
    idle_ms, idle_p50, idle_worst = result["idle_collect"]
    parked_ms, parked_p50, parked_worst = result["parked_collect"]
    auto = result["auto_gen2"]
    print(f"store: {args.store} x{args.instances}")
    print(f"parked waits:        {waits} in {result['park_seconds']:.1f} s; "
          f"all answered allow_once: {result['allowed'] == waits}")
    print(f"daemon VmRSS:        {result['rss_before'] / 1024:.1f} MB before, "
          f"{result['rss_parked'] / 1024:.1f} MB parked -> {per_wait_kb:.1f} KB per parked wait")
    print(f"gc-tracked objects:  +{result['objects_per_wait']:.0f} per parked wait; "
          f"{result['frozen']} frozen at start-up (gc.freeze {'off' if args.no_freeze else 'on'})")
    print(f"resolve -> waiter:   p50 {p50:.2f} ms  p99 {p99:.2f} ms  max {max(delays):.2f} ms "
          f"({waits} resolves in {result['resolve_seconds']:.1f} s, {args.concurrency} at a time)")
    per_resolve = {party: seconds * 1e6 / waits for party, seconds in result["cpu"].items()}
    print("CPU per resolve:     " + ", ".join(
        f"{party} {us:.0f} us" for party, us in per_resolve.items()
        if party != "postgresql" or args.store == "postgresql"))
    trips = result["round_trips"]
    print(f"resolve sent -> waiter answered: p50 {pct(trips, 0.5):.2f} ms  "
          f"p99 {pct(trips, 0.99):.2f} ms (includes the commit of the decision)")
    print(f"full gc.collect():   idle {idle_ms:.1f} ms (healthz worst {idle_worst:.1f} ms, "
          f"p50 {idle_p50:.2f} ms); with {waits} parked {parked_ms:.1f} ms "
          f"(healthz worst {parked_worst:.1f} ms, p50 {parked_p50:.2f} ms)")
    resolving = ", ".join(f"{ms:.0f} ms" for ms in result["auto_gen2_resolving"]) or "none"
    print(f"automatic full collections: {len(auto)} in all, "
          f"longest {max(auto, default=0.0):.1f} ms; while resolving: {resolving}")
    lags = [(float(line.split()[2]), float(line.split()[3])) for line in log_text.splitlines()
            if line.startswith("BENCH lag ")]
    since, until = result["resolving"]
    resolving_lags = [ms for ms, at in lags if since <= at <= until]
    print(f"daemon loop stalls over 50 ms: {len(lags)} in all, longest "
          f"{max((ms for ms, _ in lags), default=0.0):.0f} ms; while resolving "
          f"{len(resolving_lags)}, longest {max(resolving_lags, default=0.0):.0f} ms "
          "(any cause: bursts of work, the CPU taken by others)")
    healthz = result["healthz_resolving"]
    print(f"healthz while resolving: {len(healthz)} probes  p50 {pct(healthz, 0.5):.2f} ms  "
          f"worst {max(healthz):.2f} ms")
    trip_p99 = pct(trips, 0.99)
    passed = (per_wait_kb <= TARGET_KB_PER_WAIT and trip_p99 <= TARGET_P99_MS
              and max(healthz) <= TARGET_HEALTHZ_MS and result["allowed"] == waits)
    print(f"{'PASS' if passed else 'FAIL'}: target <= {TARGET_KB_PER_WAIT:g} KB per parked wait, "
          f"decision -> waiter p99 <= {TARGET_P99_MS:g} ms, healthz worst <= "
          f"{TARGET_HEALTHZ_MS:g} ms, every waiter answered with its decision")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
