"""Report by exception: deadband, quality changes, heartbeats, offline devices."""

from __future__ import annotations

from edge_agent.contract.sample import DEVICE_STATUS_TAG, Quality, Sample
from edge_agent.report import ExceptionFilter


def s(v: float | str | None, q: Quality = Quality.GOOD, tag: str = "p") -> Sample:
    return Sample("d", tag, 0.0, v, q)


def make(deadband: float = 0.0, heartbeat_s: float = 60.0) -> ExceptionFilter:
    f = ExceptionFilter()
    f.configure("d", "p", deadband=deadband, heartbeat_s=heartbeat_s)
    return f


def test_unchanged_values_are_suppressed_and_counted() -> None:
    f = make()
    assert [f.offer(s(v), now=t) for t, v in enumerate([1.0, 1.0, 1.0, 2.0, 2.0])] == [
        True,
        False,
        False,
        True,
        False,
    ]
    assert f.suppressed == 3


def test_deadband_is_measured_from_the_last_value_sent() -> None:
    f = make(deadband=0.5)
    sent = [v for t, v in enumerate([10.0, 10.3, 10.6, 10.2, 11.2]) if f.offer(s(v), now=t)]
    # 10.3 and 10.6 are within 0.5 of 10.0... 10.6 is not (0.6): sent; 10.2 within 0.5 of 10.6
    assert sent == [10.0, 10.6, 11.2]


def test_quality_change_and_strings_always_pass() -> None:
    f = make(deadband=100.0)
    assert f.offer(s(1.0), now=0)
    assert f.offer(s(None, Quality.BAD), now=1)
    assert not f.offer(s(None, Quality.BAD), now=2)
    assert f.offer(s(1.0), now=3)
    g = ExceptionFilter()
    assert g.offer(s("O1001", tag="prog"), now=0)
    assert g.offer(s("O1002", tag="prog"), now=1)
    assert not g.offer(s("O1002", tag="prog"), now=2)


def test_heartbeat_resends_unchanged_values_while_online() -> None:
    f = make(heartbeat_s=10.0)
    assert f.heartbeats(now=100.0) == []  # never read: nothing to repeat
    f.offer(s(5.0), now=0.0)
    assert f.heartbeats(now=9.0) == []
    beats = f.heartbeats(now=10.0)
    assert [(b.tag, b.value, b.ts) for b in beats] == [("p", 5.0, 10.0)]
    assert f.heartbeats(now=15.0) == []
    # a polled value that is due is sent by offer() too
    assert f.offer(s(5.0), now=20.5)
    f.offer(Sample("d", DEVICE_STATUS_TAG, 21.0, "offline"), now=21.0)
    assert f.heartbeats(now=100.0) == []  # an offline device's last value is not news
    f.offer(Sample("d", DEVICE_STATUS_TAG, 101.0, "online"), now=101.0)
    assert len(f.heartbeats(now=101.0)) == 1


def test_device_status_always_passes() -> None:
    f = ExceptionFilter()
    status = Sample("d", DEVICE_STATUS_TAG, 0.0, "online")
    assert f.offer(status, now=0)
    assert f.offer(status, now=1)
