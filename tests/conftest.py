"""Shared fixtures: real servers on free loopback ports, stopped when the test ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker import Broker, start_broker


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = start_broker(Path(tmp_path_factory.mktemp("mosquitto")))
    try:
        yield broker
    finally:
        broker.stop()
