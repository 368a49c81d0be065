"""systemd's notify protocol, received on a real datagram socket from a real daemon."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from daemon import Daemon

ROOT = Path(__file__).resolve().parents[2]


def _receive(sock: socket.socket, wanted: str, limit: int = 50) -> list[str]:
    seen = []
    for _ in range(limit):
        seen.append(sock.recv(4096).decode())
        if seen[-1] == wanted:
            return seen
    raise AssertionError(f"{wanted} never came: {seen}")


def test_ready_watchdog_and_stopping_reach_the_notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(20)
        daemon = Daemon(tmp_path / "n.db")
        daemon.env |= {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"}
        with daemon:
            assert _receive(sock, "READY=1")[0] == "READY=1"  # nothing before ready
            assert _receive(sock, "WATCHDOG=1")
            assert _receive(sock, "WATCHDOG=1")  # it keeps pinging
            assert daemon.stop() == 0
            _receive(sock, "STOPPING=1")


def test_the_daemon_runs_without_systemd(tmp_path):
    daemon = Daemon(tmp_path / "plain.db")
    daemon.env.pop("NOTIFY_SOCKET", None)
    with daemon:
        assert daemon.stop() == 0


def test_the_unit_file_verifies():
    if shutil.which("systemd-analyze") is None:
        # CI must run it; a developer's machine without systemd sees why it did not.
        assert os.environ.get("CI") != "true", "systemd-analyze (Debian's systemd) is needed"
        pytest.skip("no systemd-analyze here (Debian's systemd package has it)")
    unit = ROOT / "systemd" / "clawguard.service"
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True)
    problems = [line for line in result.stderr.splitlines()
                if "clawguard.service" in line and "/opt/clawguard/bin/clawguard" not in line]
    assert not problems, result.stderr


def test_the_unit_reads_the_config_file_it_names():
    unit = (ROOT / "systemd" / "clawguard.service").read_text()
    [exec_start] = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    assert exec_start.endswith("serve --config /etc/clawguard/config.toml")
    assert "/etc/clawguard/config.toml" in unit.split("[Unit]")[0]  # the install notes say so
