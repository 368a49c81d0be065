"""A real clawguard daemon in a subprocess, for tests of crashes, restarts and signals."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

from clawguard.core import principals
from clawguard.store import sqlite

ROLES = ("admin", "operator", "executor", "leader")
_LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")


class Daemon:
    """`python -m clawguard serve` on a given database; start() waits until it listens."""

    def __init__(self, db_path: Path, *args: str, **settings: str) -> None:
        self.db_path = db_path
        self.args = list(args)  # after `serve`, e.g. "--create"
        self.env = {
            **os.environ,
            "CLAWGUARD_SERVER_HOST": "127.0.0.1",
            "CLAWGUARD_SERVER_PORT": "0",
            "CLAWGUARD_STORAGE_PATH": str(db_path),
            "CLAWGUARD_AUTH_MODE": "none",
            **{f"CLAWGUARD_{key.upper()}": value for key, value in settings.items()},
        }
        self.env.pop("CLAWGUARD_CONFIG", None)
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.log: list[str] = []

    def start(self, timeout: float = 20.0) -> Daemon:
        self.log = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "clawguard", "serve", *self.args],
            env=self.env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )
        found = threading.Event()

        def read_log() -> None:
            assert self.process is not None and self.process.stderr is not None
            for line in self.process.stderr:
                self.log.append(line)
                match = _LISTENING.search(line)
                if match and not found.is_set():
                    self.url = match[1]
                    found.set()

        self._reader = threading.Thread(target=read_log, daemon=True)
        self._reader.start()
        if not found.wait(timeout):
            self.kill()
            raise RuntimeError("daemon did not start:\n" + "".join(self.log))
        return self

    def kill(self) -> None:
        """SIGKILL: no drain, no cleanup, the way a crash or an OOM kill ends it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self._reap()

    def _reap(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            self._reader.join(10)
            if self.process.stderr is not None:
                self.process.stderr.close()

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        self._reap()
        return self.process.returncode

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def call(url: str, method: str, path: str, body: dict | None = None,
         timeout: float = 30) -> tuple[int, dict]:
    """One request on a fresh connection: (status, JSON body)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def role_keys(db: Path) -> dict[str, str]:
    """One API key of each role made in the database at `db` (before a daemon starts on it),
    named `<role>-key`; the keys by role."""
    admin = sqlite.KeyAdmin(str(db))
    keys = {}
    try:
        for role in ROLES:
            keys[role] = principals.new_key()
            admin.create(
                principals.Principal(key_id=principals.new_key_id(), name=f"{role}-key",
                                     role=role),
                principals.hash_key(keys[role]),
            )
    finally:
        admin.close()
    return keys
