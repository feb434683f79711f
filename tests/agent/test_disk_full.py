"""A full disk stops the outbox, not the agent: samples wait in memory and are kept."""

from __future__ import annotations

from pathlib import Path

from edge_agent.agent import Agent, Sealer
from edge_agent.config import load_config
from edge_agent.contract.sample import Sample
from edge_agent.contract.wire import verify
from edge_agent.outbox import Outbox
from tests.harness.agent import write_key

CONFIG = Path(__file__).parents[1] / "golden" / "agent_configs" / "minimal.yaml"


class Sealed:
    """Stands in for the delivery, which only hears of sealed keys here."""

    def __init__(self) -> None:
        self.keys: list[tuple[int, int]] = []

    def sealed(self, key: tuple[int, int]) -> None:
        self.keys.append(key)


async def test_a_full_disk_keeps_samples_and_seq_until_it_has_room(tmp_path: Path) -> None:
    key = write_key(tmp_path / "k")
    config = load_config(CONFIG)
    config = config.model_copy(
        update={"mqtt": config.mqtt.model_copy(update={"hmac_key_file": tmp_path / "k"})}
    )
    agent = Agent(config)
    with Outbox(tmp_path / "o.db", max_bytes=1 << 30, max_age_s=1e9) as ob:
        sealer = Sealer(config, ob)
        agent.boot = ob.start_boot()
        pages = ob._db.execute("PRAGMA page_count").fetchone()[0]
        ob._db.execute(f"PRAGMA max_page_count={pages}")  # SQLite's own "disk full"
        agent.emit([Sample("em-main", "power", 1.0 + i, float(i)) for i in range(50)])
        delivery = Sealed()
        await agent._seal(ob, delivery, sealer)  # type: ignore[arg-type]
        assert delivery.keys == []
        assert agent.seq == 0
        assert len(agent._pending) == 50
        ob._db.execute(f"PRAGMA max_page_count={pages * 100}")  # room again
        await agent._seal(ob, delivery, sealer)  # type: ignore[arg-type]
        assert delivery.keys == [(1, 1)]
        (stored,) = ob.pending(10)
    batch = verify(stored.payload, key)
    assert batch["seq"] == 1
    assert [s["v"] for s in batch["samples"]] == [float(i) for i in range(50)]
