"""Forwarded client addresses are believed only from the proxies named with
`ingest-server api --trusted-proxy`: the real command over real HTTP, on the test's
database. Without it a client on 127.0.0.1 could send a new X-Forwarded-For with each
guess and never meet the per-address login limit (ingest_server/api/ratelimit.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.netutil import free_port

ADDRESS_LIMIT = 20  # failed logins from one address before it is locked


@pytest.fixture
def api(db: str, tmp_path: Path) -> Iterator[object]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*options: str) -> str:
        port = free_port()
        log = tmp_path / f"api-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ingest_server.cli.main", "api", "--dsn", db,
                 "--listen", f"127.0.0.1:{port}", "--signing-key", str(tmp_path / "k.pem"),
                 *options],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/openapi.json", timeout=2):
                    return url
            except OSError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the API did not answer in 60 s"
                time.sleep(0.1)

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)


def login(url: str, name: str, forwarded_for: str) -> int:
    request = urllib.request.Request(
        url + "/api/v1/login",
        data=json.dumps({"name": name, "password": "a wrong password"}).encode(),
        headers={"Content-Type": "application/json", "X-Forwarded-For": forwarded_for},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_forwarded_addresses_from_a_client_do_not_escape_the_address_limit(api: object) -> None:
    assert callable(api)
    url = api()
    # a new name each time (no name is locked), a new forwarded address each time
    codes = [login(url, f"guess-{i}", f"203.0.113.{i}") for i in range(ADDRESS_LIMIT + 1)]
    assert codes[:ADDRESS_LIMIT] == [401] * ADDRESS_LIMIT
    assert codes[ADDRESS_LIMIT] == 429, "127.0.0.1 is locked, whatever it forwards"


def test_a_trusted_proxy_forwards_the_client_address(api: object) -> None:
    assert callable(api)
    url = api("--trusted-proxy", "127.0.0.1")
    codes = [login(url, f"guess-{i}", "203.0.113.7") for i in range(ADDRESS_LIMIT + 1)]
    assert codes[:ADDRESS_LIMIT] == [401] * ADDRESS_LIMIT
    assert codes[ADDRESS_LIMIT] == 429, "the forwarded client is locked"
    assert login(url, "someone-else", "203.0.113.8") == 401, "not the proxy: other clients"


def test_a_trusted_proxy_must_be_an_address() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ingest_server.cli.main", "api", "--dsn", "postgresql://x/y",
         "--trusted-proxy", "nginx"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "'nginx' is not an IP address or network" in done.stderr
    assert "e.g. 127.0.0.1" in done.stderr
