"""Shared fixtures: real servers on free loopback ports, stopped when the test ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest_server.db.schema import migrate
from tests.harness.broker import Broker, start_broker
from tests.harness.pg import PgServer, pg_test_server


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = start_broker(Path(tmp_path_factory.mktemp("mosquitto")))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    with pg_test_server() as server:
        yield server


@pytest.fixture
def db(pg_server: PgServer) -> Iterator[str]:
    """A new, migrated database; its DSN."""
    with pg_server.database() as dsn:
        migrate(dsn)
        yield dsn


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker of the test's own: nothing from other tests, sessions that end with it."""
    b = start_broker(tmp_path / "mosquitto")
    try:
        yield b
    finally:
        b.stop()
