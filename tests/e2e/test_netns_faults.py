"""The link between a gateway and the server side cut for 60 s, across hosts made of
network namespaces (ip netns, a veth pair) by the test itself.

The "gateway" namespace runs the simulated plant (factory-sim) and the edge agent, both
as separate processes; the server side (Mosquitto, the ingestion consumer, PostgreSQL)
stays in the test's own namespace, reached over the veth. The link is cut for 60 s, then
restored. Afterwards every batch the agent made is stored exactly once (no gap in its
sequence numbers, none left in its outbox, every sample of every batch stored once), the
outage shows as the gateway going offline and back online, and the machines' state
timelines across it hold only what the machines did (no OFFLINE or NO_DATA).

Packet loss and delay (tc netem) need the sch_netem kernel module; where it is missing
that part is skipped, saying so. Needs root (namespaces); skipped with the reason
otherwise. Only the namespaces' private veth addresses are used.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from simulators.scenario import default_scenario_path, load_scenario
from tests.harness.backfill import import_scenario_registry
from tests.harness.broker import Broker, start_broker
from tests.harness.ingest import dump
from tests.harness.netutil import free_port
from tests.ingest.test_consumer import running_consumer, wait_until

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
CUT_S = 60.0


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


@contextlib.contextmanager
def gateway_namespace() -> Iterator[dict[str, str]]:
    """A namespace linked to this one by a veth pair: 10.R.R.1 here, 10.R.R.2 there."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    tag = secrets.token_hex(3)
    ns, here, there = f"fe-gw-{tag}", f"fe{tag}h", f"fe{tag}g"
    r = _ip("netns", "add", ns, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {r.stderr.strip()}")
    n = int(tag[:2], 16) % 200 + 20
    addr_here, addr_there = f"10.{n}.77.1", f"10.{n}.77.2"
    try:
        _ip("link", "add", here, "type", "veth", "peer", "name", there)
        _ip("link", "set", there, "netns", ns)
        _ip("addr", "add", f"{addr_here}/24", "dev", here)
        _ip("link", "set", here, "up")
        _ip("-n", ns, "addr", "add", f"{addr_there}/24", "dev", there)
        _ip("-n", ns, "link", "set", there, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        yield {"ns": ns, "here": here, "there": there, "addr_here": addr_here}
    finally:
        _ip("link", "del", here, check=False)
        _ip("netns", "del", ns, check=False)


def _start(ns: str, argv: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv], cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture
def plant_behind_a_link(db: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    scenario = load_scenario(default_scenario_path())
    with gateway_namespace() as net:
        port = free_port()
        broker: Broker = start_broker(tmp_path / "broker", extra_listener=(net["addr_here"], port))
        procs: list[subprocess.Popen[bytes]] = []
        try:
            from ingest_server.cli.main import main as ingest_server  # noqa: PLC0415
            from ingest_server.db.schema import migrate  # noqa: PLC0415

            migrate(db)
            import_scenario_registry(db, scenario, b"replaced below")
            # the gateway's key as an integrator issues it
            bundle = tmp_path / "bundle"
            ids = [scenario.enterprise.id, scenario.site.id, "gw-01"]
            add = ["gateway", "add", *ids, "--rotate", "--dsn", db, "--out", str(bundle)]
            assert ingest_server(add) == 0
            ready = tmp_path / "sim-ready.json"
            sim = [str(BIN / "factory-sim"), "run", "--scenario", str(default_scenario_path()),
                   "--ready-file", str(ready)]  # fmt: skip
            procs.append(_start(net["ns"], sim, tmp_path / "sim.log", tmp_path))
            wait_until(lambda: ready.exists() and ready.stat().st_size > 0, 60, "the simulators")
            subprocess.run(
                [str(BIN / "factory-sim"), "agent-config", "--ready-file", str(ready),
                 "--mqtt-url", f"mqtt://{net['addr_here']}:{port}", "--hmac-key-file",
                 str(bundle / "gateway.key"), "--outbox", str(tmp_path / "outbox.db"),
                 "--out", str(tmp_path / "agent.yaml")], check=True, capture_output=True,
            )  # fmt: skip
            cfg = yaml.safe_load((tmp_path / "agent.yaml").read_text())
            # notice a dead link within seconds (the broker sends the Will after 1.5 x)
            cfg["mqtt"] |= {"keepalive_s": 5, "reconnect_min_s": 0.5, "reconnect_max_s": 2.0}
            (tmp_path / "agent.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
            with running_consumer(db, broker) as consumer:
                procs.append(_start(net["ns"], [str(BIN / "edge-agent"), "run",
                                                str(tmp_path / "agent.yaml")],
                                    tmp_path / "agent.log", tmp_path))  # fmt: skip
                yield {"db": db, "net": net, "procs": procs, "consumer": consumer,
                       "outbox": tmp_path / "outbox.db", "logs": tmp_path}  # fmt: skip
        finally:
            for p in reversed(procs):
                _stop(p)
            broker.stop()


def _batches(db: str) -> tuple[int, int, int, int]:
    """(count, min seq, max seq, samples) of the gateway's batches of its last boot."""
    rows = dump(db, "SELECT count(*), min(seq), max(seq), coalesce(sum(samples), 0) "
                    "FROM batches WHERE boot = (SELECT max(boot) FROM batches)")  # fmt: skip
    c, lo, hi, n = rows[0]
    return int(c), int(lo or 0), int(hi or 0), int(n)


def test_a_60_s_link_cut_loses_nothing_and_shows_as_gateway_offline(
    plant_behind_a_link: dict[str, Any],
) -> None:
    env = plant_behind_a_link
    db, net = env["db"], env["net"]
    wait_until(lambda: _batches(db)[0] >= 10, 60, "the agent's first batches over the link")

    cut_at = time.time()
    _ip("link", "set", net["here"], "down")
    time.sleep(CUT_S)
    during = _batches(db)
    _ip("link", "set", net["here"], "up")
    up_at = time.time()
    # the agent reconnects and sends its backlog; new batches keep coming
    wait_until(lambda: _batches(db)[2] > during[2] + 60, 90, "the backlog after the cut")

    for p in env["procs"][::-1]:  # the agent first: it flushes its outbox on SIGTERM
        _stop(p)
    outbox = sqlite3.connect(env["outbox"])
    try:
        (left,) = outbox.execute("SELECT count(*) FROM batch").fetchone()
        (last,) = outbox.execute("SELECT max(seq) FROM batch").fetchone() or (None,)
    finally:
        outbox.close()
    wait_until(lambda: env["consumer"].drained(2.0), 30, "the consumer to store the rest")

    count, lo, hi, samples = _batches(db)
    assert left == 0, f"{left} batch(es) still in the outbox (last {last})"
    assert count == hi - lo + 1, f"sequence gaps: {count} batches for seq {lo}..{hi}"
    stored = int(dump(db, "SELECT count(*) FROM samples")[0][0])
    assert stored == samples, f"{stored} samples stored for {samples} in the batches"
    assert dump(db, "SELECT count(*) FROM dead_letters")[0][0] == 0
    # samples taken while the link was down were stored after it came back
    window = {"a": cut_at, "b": up_at}
    # (report by exception: how many depends on what the plant did; power changes at
    # every poll of a running machine's meter, so several series have some)
    in_cut, series = _one(db, "SELECT count(*), count(DISTINCT series_id) FROM samples "
                              "WHERE ts > to_timestamp(%(a)s + 10) "
                              "AND ts < to_timestamp(%(b)s - 5)", window)  # fmt: skip
    assert in_cut > 0, "nothing measured during the cut was stored"
    assert series >= 3, (in_cut, series)

    # the gateway went offline (the broker's Will) during the cut, and online after it
    statuses = dump(db, "SELECT extract(epoch FROM received_at), state FROM gateway_status "
                        "ORDER BY received_at")  # fmt: skip
    offline = [t for t, s in statuses if s == "offline" and cut_at < float(t) < up_at + 5]
    online = [t for t, s in statuses if s == "online" and float(t) > up_at]
    assert offline, statuses
    assert online, statuses
    # ... and the machines did not stop: their timelines across the cut hold only what
    # they did
    across = 'start < to_timestamp(%(b)s) AND coalesce("end", now()) > to_timestamp(%(a)s)'
    with psycopg.connect(db) as conn:
        bad = conn.execute(
            'SELECT device, state, start, "end" FROM state_intervals '
            f"WHERE state IN ('OFFLINE', 'NO_DATA', 'UNKNOWN') AND {across}",
            window,
        ).fetchall()
    assert bad == [], bad
    (machines,) = _one(db, f"SELECT count(DISTINCT device) FROM state_intervals WHERE {across}",
                       window)  # fmt: skip
    assert machines >= 10, machines


def _one(db: str, query: str, params: dict[str, Any]) -> tuple[Any, ...]:
    with psycopg.connect(db) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return tuple(row)


def _netem_missing() -> str | None:
    """Why tc netem cannot be used here, or None (probed on a namespace's loopback)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    ns = f"fe-probe-{secrets.token_hex(3)}"
    if _ip("netns", "add", ns, check=False).returncode != 0:
        return "cannot create a network namespace here"
    try:
        tc = ["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]
        r = subprocess.run(["ip", "netns", "exec", ns, *tc], capture_output=True, text=True,
                           check=False)  # fmt: skip
        return None if r.returncode == 0 else f"tc netem: {r.stderr.strip()} (no sch_netem module)"
    finally:
        _ip("netns", "del", ns, check=False)


def test_loss_and_delay(request: pytest.FixtureRequest) -> None:
    why = _netem_missing()
    if why is not None:
        pytest.skip(f"loss and delay cannot be made here: {why}")
    plant_behind_a_link = request.getfixturevalue("plant_behind_a_link")
    net = plant_behind_a_link["net"]
    tc = ["tc", "qdisc", "add", "dev", net["there"], "root", "netem", "delay", "200ms", "50ms",
          "loss", "5%"]  # fmt: skip
    subprocess.run(["ip", "netns", "exec", net["ns"], *tc], check=True)
    db = plant_behind_a_link["db"]
    wait_until(lambda: _batches(db)[0] >= 60, 120, "batches over a lossy, slow link")
    subprocess.run(["ip", "netns", "exec", net["ns"], "tc", "qdisc", "del", "dev",
                    net["there"], "root"], check=True)  # fmt: skip
    for p in plant_behind_a_link["procs"][::-1]:
        _stop(p)
    wait_until(lambda: plant_behind_a_link["consumer"].drained(2.0), 30, "the rest")
    count, lo, hi, samples = _batches(db)
    assert count == hi - lo + 1
    assert int(dump(db, "SELECT count(*) FROM samples")[0][0]) == samples
