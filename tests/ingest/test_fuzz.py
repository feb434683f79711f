"""Random and mutated MQTT payloads into the running consumer, over a real Mosquitto into a
real PostgreSQL (hypothesis, derandomized: the same messages in every run; set
FE_FUZZ_EXAMPLES and FE_FUZZ_RANDOM=1 to search wider by hand).

Each message is either accepted (a batch stored, whole or partly; a birth or a status
recorded) or dead-lettered with a reason; the consumer never stops, and a good batch
sent after each is still stored."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.contract.sample import Sample
from edge_agent.contract.wire import sign
from tests.harness.broker import Broker
from tests.harness.ingest import CNC_BIRTH, GW, KEY, GatewayPublisher, batch, dump, prepare
from tests.ingest.test_consumer import running_consumer, wait_until

EXAMPLES = int(os.environ.get("FE_FUZZ_EXAMPLES", "80"))
RANDOM = os.environ.get("FE_FUZZ_RANDOM") == "1"
NOW = time.time()
# about 0.3 s a message (published, acknowledged, committed): room for wider sweeps
pytestmark = [pytest.mark.slow, pytest.mark.timeout(60 + EXAMPLES)]
GOOD = batch(1, [Sample("cnc-01", "state", NOW - 60, "RUNNING")])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    """A valid message with bytes flipped, cut or inserted (the signature then fails, or
    the framing does)."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[i] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[i:]
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


samples = st.builds(
    lambda dev, tag, dt_s, v: {"d": dev, "t": tag, "ts": int((NOW + dt_s) * 1000), "v": v},
    st.sampled_from(["cnc-01", "em-1", "nope", ""]),
    st.sampled_from(["state", "energy_kwh", "power_kw", "x" * 80]),
    st.floats(-400 * 86400, 400 * 86400, allow_nan=False),
    st.one_of(st.floats(), st.text(max_size=30),
              st.integers(), st.none(), st.booleans()),
)  # fmt: skip
signed_batches = st.builds(
    # signed as the agent would, but json.dumps lets NaN and Infinity through as tokens
    lambda seq, boot, smp, extra: sign(json.dumps(
        {"v": 1, "gw": GW, "boot": boot, "seq": seq, "sent": int(NOW * 1000), "samples": smp,
         **extra}, separators=(",", ":")).encode(), KEY),
    st.integers(-2, 2**40), st.integers(-2, 5), st.lists(samples, max_size=6),
    st.dictionaries(st.sampled_from(["v", "gw", "x", "boot"]), json_values, max_size=2),
)  # fmt: skip
messages = st.tuples(
    st.sampled_from(["data", "birth", "status"]),
    st.one_of(
        st.binary(max_size=512),
        mutated(GOOD),
        mutated(CNC_BIRTH),
        # signed with the gateway's key, so the schema, not the signature, must refuse it
        st.dictionaries(st.text(max_size=8), json_values, min_size=1, max_size=5).map(
            lambda v: sign(json.dumps(v).encode(), KEY)
        ),
        signed_batches,
    ),
)


def test_random_and_mutated_payloads_are_stored_or_dead_lettered(db: str, broker: Broker) -> None:
    prepare(db)
    sent = {"n": 0}
    with running_consumer(db, broker) as consumer:
        pub = GatewayPublisher(broker)
        try:
            pub.publish("birth", CNC_BIRTH)
            sent["n"] += 1

            @given(message=messages)
            @settings(max_examples=EXAMPLES, derandomize=not RANDOM, deadline=None,
                      database=None, suppress_health_check=list(HealthCheck))  # fmt: skip
            def one(message: tuple[str, bytes]) -> None:
                kind, payload = message
                before = _accounted(consumer)
                pub.publish(kind, payload)
                sent["n"] += 1
                wait_until(lambda: consumer.counters.messages >= sent["n"], 10, "the message")
                # counted when written: stored, recorded or dead-lettered, each with a commit
                what = f"the {kind} message {payload[:60]!r} to be stored or dead-lettered"
                wait_until(lambda: _accounted(consumer) > before, 10, what)
                alive = consumer._validator.is_alive() and consumer._writer.is_alive()
                assert alive, consumer.counters.last_error

            one()
            # still working: a good batch after all that is stored
            last = 2**41
            pub.publish("data", batch(last, [Sample("cnc-01", "state", NOW, "IDLE")]))
            query = f"SELECT count(*) FROM batches WHERE seq = {last}"
            wait_until(lambda: dump(db, query)[0][0] == 1, 10, "the good batch")
        finally:
            pub.close()
    reasons = dump(db, "SELECT reason FROM dead_letters")
    assert reasons, "some of the fuzzed messages must have been refused"
    assert all(r and r.strip() for (r,) in reasons)
    assert consumer.counters.db_errors == 0, consumer.counters.last_error


def _accounted(consumer: Any) -> int:
    c = consumer.counters
    return c.dead_letters + c.batches_new + c.batches_repeated + c.births + c.statuses
