"""Report by exception: send a value when it changes, and now and then when it does not.

    source reads --> ExceptionFilter.offer() --> changed (beyond the deadband)? --> batch
                     ExceptionFilter.heartbeats(now) --> unchanged too long? --> batch

A subscription tells only changes and a poll repeats the same value every second; both
would leave a verifier unable to tell "unchanged" from "not measured". So every tag's
last value is re-sent at least every ``heartbeat_s`` while its device is online: the
server can count received against expected samples (coverage) without a flood of
identical values. A change of quality or of a string value is always sent; a number is
sent when it moved more than the tag's deadband from the last value sent. Device status
samples always pass. Pure: the caller supplies the time.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.contract.sample import DEVICE_STATUS_TAG, Quality, Sample


@dataclass(slots=True)
class _Last:
    value: float | str | None
    quality: Quality
    sent_at: float  # gateway time of the last send
    heartbeat_s: float
    deadband: float
    status: str | None
    seen: bool = True  # False while configured but never read


class ExceptionFilter:
    def __init__(self) -> None:
        self._last: dict[tuple[str, str], _Last] = {}
        self._offline: set[str] = set()
        self.suppressed = 0  # values read but not sent (unchanged within the deadband)

    def configure(self, device: str, tag: str, *, deadband: float, heartbeat_s: float) -> None:
        """Register a tag before its first value (unknown tags pass with defaults)."""
        self._last[(device, tag)] = _Last(
            None, Quality.BAD, float("-inf"), heartbeat_s, deadband, None, seen=False
        )

    def offer(self, sample: Sample, now: float) -> bool:
        """True when the sample must be sent; records it as sent."""
        last = self._last.get((sample.device, sample.tag))
        if last is None:  # a device status, or a tag nobody configured
            if sample.tag == DEVICE_STATUS_TAG:
                if sample.value == "offline":
                    self._offline.add(sample.device)
                else:
                    self._offline.discard(sample.device)
                return True
            self._last[(sample.device, sample.tag)] = _Last(
                sample.value, sample.quality, now, float("inf"), 0.0, sample.status
            )
            return True
        v = sample.value
        if (
            last.seen
            and sample.quality is last.quality
            and now - last.sent_at < last.heartbeat_s
            and sample.status == last.status
        ):
            lv = last.value
            if v == lv:
                self.suppressed += 1
                return False
            if (
                last.deadband > 0.0
                and isinstance(v, float | int)
                and isinstance(lv, float | int)
                and abs(v - lv) <= last.deadband
            ):
                self.suppressed += 1
                return False
        last.value = v
        last.quality = sample.quality
        last.status = sample.status
        last.sent_at = now
        last.seen = True
        return True

    def heartbeats(self, now: float) -> list[Sample]:
        """Re-send unchanged values that are due, for devices that are online."""
        due: list[Sample] = []
        for (device, tag), last in self._last.items():
            if not last.seen or device in self._offline:
                continue
            if now - last.sent_at >= last.heartbeat_s:
                due.append(
                    Sample(
                        device, tag, now, last.value, last.quality, gw_ts=now, status=last.status
                    )
                )
                last.sent_at = now
        return due
