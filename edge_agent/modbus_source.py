"""Modbus collection: one connection and one lock per link, one poll loop per device.

    ModbusDeviceConfig --plan_device--> ReadRequests --BlockDecoder--> Samples --> emit
    ModbusSource.poll(): for each request: lock link -> read -> pause -> decode

Several devices often share a link: the unit ids behind an RS-485 to Ethernet gateway,
or the meters on one serial bus. A link has one client and one lock, so requests to a
bus never overlap, and an optional pause between requests lets slow serial devices
breathe. Each request's failure stays that request's: a timeout or exception becomes
bad-quality samples for its tags and a logged line (once, until it recovers), never a
dead loop. A device whose every request went unanswered (timeout, gateway exception
0x0A/0x0B, lost connection) is offline, and says so in a ``device_status`` sample.

A request spanning a gap that the device refuses (exception 2, illegal address) is split
into the contiguous runs of its tags, and the plan remembers the split.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from edge_agent.config import ModbusDeviceConfig
from edge_agent.contract.backoff import Backoff
from edge_agent.contract.sample import Quality, Sample, status_sample
from edge_agent.modbus_codec import BlockDecoder
from edge_agent.modbus_plan import ReadRequest, describe_plan, plan_device, split_request
from edge_agent.poll_schedule import PollSchedule

logger = logging.getLogger(__name__)

Emit = Callable[[list[Sample]], None]
_EXCEPTION_TEXT = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}
# The device (or the gateway in front of it) did not answer: it is not there.
_ABSENT = frozenset({10, 11})
_ILLEGAL_ADDRESS = 2
_NOT_CONNECTED = "not connected"


class ReadError(Exception):
    """One request failed; `absent` means the device did not answer at all."""

    def __init__(self, text: str, *, absent: bool, code: int | None = None) -> None:
        super().__init__(text)
        self.absent = absent
        self.code = code


class ModbusLink:
    """One client and one lock shared by the devices on a TCP port or a serial line."""

    def __init__(self, device: ModbusDeviceConfig) -> None:
        self.name = device.link
        self.lock = asyncio.Lock()
        self.delay_s = device.inter_request_delay_s
        self._backoff = Backoff(device.reconnect_min_s, device.reconnect_max_s)
        self._retry_at = 0.0
        self.client: AsyncModbusTcpClient | AsyncModbusSerialClient
        # pymodbus' own reconnect and retry are off: this link decides when to try again.
        if device.transport == "rtu":
            assert device.serial_port is not None
            self.client = AsyncModbusSerialClient(
                device.serial_port,
                baudrate=device.baudrate,
                parity=device.parity,
                stopbits=device.stopbits,
                timeout=device.timeout_s,
                retries=0,
                reconnect_delay=0,
            )
        else:
            assert device.host is not None
            self.client = AsyncModbusTcpClient(
                device.host,
                port=device.port,
                timeout=device.timeout_s,
                retries=0,
                reconnect_delay=0,
            )
        self.connects = 0
        self._down_logged = False

    async def ensure_connected(self) -> bool:
        """Connect if needed, at most as often as the backoff allows. Call under the lock."""
        if self.client.connected:
            return True
        now = time.monotonic()
        if now < self._retry_at:
            return False
        ok = False
        with contextlib.suppress(ModbusException, OSError):
            ok = await self.client.connect()
        if ok:
            self.connects += 1
            self._backoff.reset()
            self._down_logged = False
            logger.info("Modbus link %s connected", self.name)
            return True
        self._retry_at = now + self._backoff.next()
        if not self._down_logged:
            logger.warning("Modbus link %s: cannot connect; retrying with backoff", self.name)
            self._down_logged = True
        return False

    async def read(self, request: ReadRequest, unit: int) -> Sequence[int] | Sequence[bool]:
        """One request; raises ReadError. Call under the lock."""
        c = self.client
        try:
            if request.function == "holding":
                rr = await c.read_holding_registers(
                    request.address, count=request.count, device_id=unit
                )
            elif request.function == "input":
                rr = await c.read_input_registers(
                    request.address, count=request.count, device_id=unit
                )
            elif request.function == "coil":
                rr = await c.read_coils(request.address, count=request.count, device_id=unit)
            else:
                rr = await c.read_discrete_inputs(
                    request.address, count=request.count, device_id=unit
                )
        except ConnectionException as exc:
            c.close()
            raise ReadError(f"connection lost ({exc})", absent=True) from None
        except ModbusIOException:
            raise ReadError("timeout", absent=True) from None
        except (ModbusException, OSError) as exc:
            c.close()
            raise ReadError(f"{type(exc).__name__}: {exc}", absent=True) from None
        finally:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0))
            text = f"exception 0x{code:02X} {_EXCEPTION_TEXT.get(code, 'unknown')}"
            raise ReadError(text, absent=code in _ABSENT, code=code)
        data: Sequence[int] | Sequence[bool] = (
            rr.bits if request.function in ("coil", "discrete") else rr.registers
        )
        return data

    def close(self) -> None:
        self.client.close()


class ModbusSource:
    """Polls one device (one unit id) over its link."""

    def __init__(self, device: ModbusDeviceConfig, link: ModbusLink, emit: Emit) -> None:
        self.device = device
        self.link = link
        self.emit = emit
        self.requests = plan_device(device)
        self._decoders = [BlockDecoder(r) for r in self.requests]
        self.online: bool | None = None
        self.polls = 0
        self.skipped_polls = 0  # ticks a poll longer than the interval made run() skip
        self.values_read = 0
        self.read_errors = 0
        self._failing: dict[int, str] = {}  # request index -> last error logged

    def describe(self) -> str:
        return describe_plan(self.device.id, self.requests)

    async def run(self) -> None:
        """Poll forever on a fixed schedule (`PollSchedule`): a late poll skips the ticks
        it missed and counts them, never makes them up."""
        loop = asyncio.get_running_loop()
        schedule = PollSchedule(self.device.poll_interval_s, loop.time(), name=self.device.id)
        while True:
            await self.poll()
            self.skipped_polls += schedule.finished(loop.time())
            await asyncio.sleep(max(0.0, schedule.due - loop.time()))

    async def poll(self) -> None:
        """Read every request once and emit what was read (also used by tests)."""
        self.polls += 1
        answered = False
        out: list[Sample] = []
        dev = self.device.id
        i = 0
        while i < len(self.requests):
            req = self.requests[i]
            async with self.link.lock:
                connected = await self.link.ensure_connected()
                try:
                    if not connected:
                        raise ReadError(_NOT_CONNECTED, absent=True)
                    data = await self.link.read(req, self.device.unit)
                except ReadError as exc:
                    if exc.code == _ILLEGAL_ADDRESS and self._split(i):
                        continue  # read the same place again as smaller requests
                    answered = answered or not exc.absent
                    self._failed(i, req, str(exc), out)
                    i += 1
                    continue
            now = time.time()
            answered = True
            if i in self._failing:
                logger.info("%s: %s recovered", dev, _where(req))
                del self._failing[i]
            out.extend(
                Sample(dev, tag, now, value, quality, None, status)
                for tag, value, quality, status in self._decoders[i].decode(data)
            )
            self.values_read += len(req.tags)
            i += 1
        self._set_online(answered, out)
        if out:
            self.emit(out)

    def _split(self, i: int) -> bool:
        req = self.requests[i]
        parts = split_request(req)
        if len(parts) <= 1:
            return False
        logger.warning(
            "%s: the device refuses %s (illegal address): reading it as %d requests",
            self.device.id,
            _where(req),
            len(parts),
        )
        self.requests[i : i + 1] = parts
        self._decoders[i : i + 1] = [BlockDecoder(p) for p in parts]
        self._failing = {}
        return True

    def _failed(self, i: int, req: ReadRequest, text: str, out: list[Sample]) -> None:
        self.read_errors += 1
        # a link that cannot connect says so once for all its devices
        if self._failing.get(i) != text and text != _NOT_CONNECTED:
            logger.warning("%s: %s failed: %s", self.device.id, _where(req), text)
            self._failing[i] = text
        now = time.time()
        out.extend(
            Sample(self.device.id, t.tag, now, None, Quality.BAD, status=text) for t in req.tags
        )

    def _set_online(self, online: bool, out: list[Sample]) -> None:
        if online == self.online:
            return
        self.online = online
        logger.info("%s is %s", self.device.id, "online" if online else "offline")
        out.insert(0, status_sample(self.device.id, online, time.time()))

    def stats(self) -> dict[str, Any]:
        return {
            "online": self.online,
            "polls": self.polls,
            "skipped_polls": self.skipped_polls,
            "values_read": self.values_read,
            "read_errors": self.read_errors,
        }


def _where(req: ReadRequest) -> str:
    return f"{req.function} {req.address}-{req.address + req.count - 1}"
