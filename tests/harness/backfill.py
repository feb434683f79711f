"""A plant's past in the database: history -> edge-agent backfill -> Mosquitto -> server.

    load_history(db, broker, workdir, scenario, start, end[, contract=2])
        factory-sim history (samples + truth) --> Backfill (the agent's outbox, signing,
        delivery) --> the real broker --> the real consumer --> PostgreSQL

For tests that need days of stored plant data (KPIs, reports) and its truth: every
component is the real one, only time is compressed. The registry is the committed demo
one for the demo scenario, else generated from the scenario (simulators.agent_config).
With contract=2 the gateway signs and chains every batch with its own Ed25519 key (made
as `edge-agent keys init` makes it), which the server enrols before the backfill
(repo/gateways.enroll_public_key): the batches arrive in the ledger, deleted from the
outbox on the server's ack. Contract 1 (HMAC) stays the default.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from edge_agent.backfill import Backfill
from edge_agent.config import load_config
from edge_agent.contract.identity import FileSigner
from ingest_server.ingest.consumer import DAY_MS
from ingest_server.repo.gateways import enroll_public_key
from ingest_server.repo.registry import Registry, import_registry, load_registry
from simulators.agent_config import agent_config, registry
from simulators.faults import Fault
from simulators.history import write_history
from simulators.scenario import Scenario, default_scenario_path, load_scenario
from tests.harness.agent import write_key
from tests.harness.broker import Broker
from tests.ingest.test_consumer import running_consumer, wait_until

GATEWAY = "gw-01"
DEMO_REGISTRY = default_scenario_path().with_name("demo-registry.yaml")
STORE_TIMEOUT_S = 60.0  # after the broker acknowledged everything


def history_agent_config(
    scenario: Scenario,
    mqtt_url: str,
    workdir: Path,
    *,
    mqtt: dict[str, Any] | None = None,
    contract: int = 1,
) -> tuple[Path, bytes]:
    """An agent config in workdir for the scenario's plant, publishing to mqtt_url, its
    outbox beside it (a backfill never uses the devices' addresses), and what verifies
    the gateway: its new HMAC key (contract 1), or the public key of its new Ed25519 key
    file, gateway.ed25519 (contract 2), which the server enrols."""
    workdir.mkdir(parents=True, exist_ok=True)
    if contract == 2:
        key = FileSigner.create(workdir / "gateway.ed25519").public_key()
    else:
        key = write_key(workdir / "gateway.key")
    data = agent_config(
        scenario,
        mqtt_url=mqtt_url,
        outbox_path="outbox.db",
        hmac_key_file="gateway.key",
        gateway_id=GATEWAY,
        contract=contract,
        key_file="gateway.ed25519",
    )
    data["mqtt"] |= {"reconnect_min_s": 0.5, "reconnect_max_s": 2.0, **(mqtt or {})}
    data["outbox"]["durability"] = "process"
    path = workdir / "agent.yaml"
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path, key


def import_scenario_registry(db: str, scenario: Scenario, key: bytes) -> None:
    """The scenario's registry, with the gateway's key, into the database."""
    if scenario == load_scenario(default_scenario_path()):
        reg = load_registry(DEMO_REGISTRY)
    else:
        reg = Registry.model_validate(registry(scenario, gateway_id=GATEWAY))
    with psycopg.connect(db) as conn:
        import_registry(conn, reg, {GATEWAY: key})


def enroll_gateway(db: str, config: Path, public_key: bytes) -> None:
    """The config's gateway on contract 2 with `public_key`, as `ingest-server gateway
    enroll` puts it."""
    gw = load_config(config).gateway
    with psycopg.connect(db) as conn:
        enroll_public_key(
            conn, enterprise=gw.enterprise, site=gw.site, gateway=gw.id, public_key=public_key
        )


async def load_history(  # noqa: PLR0917 - positional, as the callers know it
    db: str,
    broker: Broker,
    workdir: Path,
    scenario: Scenario,
    start: float,
    end: float,
    interval_s: float = 60.0,
    faults: Sequence[Fault] = (),
    *,
    contract: int = 1,
) -> Path:
    """Write the scenario's history for [start, end] into workdir, backfill it through the
    real consumer into `db`, and return the truth file once every sample is stored.
    contract=2: the gateway's own key signs every batch (module docstring); its key file
    is workdir/agent/gateway.ed25519.

    The consumer accepts samples as old as the history (its --max-past). Raises
    AssertionError if a sample is dead-lettered or not stored in time."""
    history, truth = workdir / "history.jsonl.gz", workdir / "truth.jsonl"
    counts = await asyncio.to_thread(
        write_history,
        scenario,
        start=start,
        end=end,
        out=history,
        truth=truth,
        interval_s=interval_s,
        faults=faults,
    )
    url = f"mqtt://{broker.host}:{broker.port}"
    config, key = history_agent_config(scenario, url, workdir / "agent", contract=contract)
    if contract == 2:
        import_scenario_registry(db, scenario, secrets.token_hex(32).encode())  # unused
        enroll_gateway(db, config, key)
    else:
        import_scenario_registry(db, scenario, key)
    max_past_ms = max(400 * DAY_MS, round((time.time() - start) * 1000) + DAY_MS)
    with running_consumer(db, broker, max_past_ms=max_past_ms) as consumer:
        result = await Backfill(load_config(config), history).run()
        assert result.samples == counts["samples"], (result, counts)
        await asyncio.to_thread(
            wait_until,
            lambda: (
                consumer.counters.dead_letters > 0
                or consumer.counters.samples_new + consumer.counters.samples_repeated
                >= counts["samples"]
            ),
            STORE_TIMEOUT_S,
            f"the server to store {counts['samples']} backfilled samples",
        )
        assert consumer.counters.dead_letters == 0, "dead letters: see the dead_letters table"
    return truth
