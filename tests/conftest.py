"""Shared fixtures: a real SQLite file in tmp_path, the real app behind the aiohttp test client."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from clawguard.http import application
from clawguard.runtime import config


class FakeClock:
    """Epoch milliseconds that move only when a test says so."""

    def __init__(self, now: int = 1_800_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "clawguard.db"


@pytest.fixture
def cfg(db_path: Path) -> config.Config:
    """Keys are off for tests of everything else; tests/http/test_auth.py turns them on."""
    return config.Config(
        storage=config.StorageConfig(path=str(db_path)), auth=config.AuthConfig(mode="none")
    )


@pytest.fixture
def make_client(
    cfg: config.Config, clock: FakeClock
) -> Callable[..., Any]:
    """Start the real app on 127.0.0.1; `async with make_client() as client: ...`."""

    def make(settings: config.Config | None = None) -> TestClient[Any, Any]:
        app = application.create_app(settings or cfg, clock=clock)
        return TestClient(TestServer(app, host="127.0.0.1"))

    return make


@pytest.fixture
async def client(make_client: Callable[..., Any]) -> AsyncIterator[TestClient[Any, Any]]:
    async with make_client() as test_client:
        yield test_client


def dump(db_path: Path) -> list[str]:
    """Every row of every table: to show that a refused request changed nothing."""
    conn = sqlite3.connect(db_path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/system runs real processes: `-m "not slow"` is the fast loop."""
    system = Path(__file__).parent / "system"
    for item in items:
        if system in item.path.parents:
            item.add_marker(pytest.mark.slow)
