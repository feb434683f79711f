"""The API on a real HTTP server (uvicorn on 127.0.0.1, a free port) for the tests that
need one: schemathesis over HTTP, the browser tests."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from ingest_server.api.app import create_app
from tests.harness.netutil import free_port


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Serve `app` in a thread until the block ends; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the API server stopped while starting"
        assert time.monotonic() < deadline, "the API did not start in 30 s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@contextlib.contextmanager
def serving_api(dsn: str, signing_key: Path) -> Iterator[str]:
    with serving(create_app(dsn, signing_key=signing_key)) as url:
        yield url
