"""Modbus RTU over a serial line: two pseudo-terminals joined by socat, a pymodbus serial
server on one end, the agent's RTU link on the other."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge_agent.config import ModbusDeviceConfig
from edge_agent.contract.sample import Sample
from edge_agent.modbus_source import ModbusLink, ModbusSource

pytestmark = pytest.mark.slow
# 1873210.4 kWh as a u32 of 0.1 kWh, low word first (CDAB), then a u16 state code
ENERGY_RAW = 18732104
WORDS = [ENERGY_RAW & 0xFFFF, ENERGY_RAW >> 16, 2]


@contextlib.contextmanager
def serial_pair(folder: Path) -> Iterator[tuple[str, str]]:
    socat = shutil.which("socat")
    assert socat is not None, "socat is missing: `make test` installs it with apt-get"
    a, b = folder / "ttyA", folder / "ttyB"
    proc = subprocess.Popen(
        [socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not (a.exists() and b.exists()):
            assert time.monotonic() < deadline, "socat made no pseudo-terminals"
            time.sleep(0.05)
        yield str(a), str(b)
    finally:
        proc.terminate()
        proc.wait(timeout=5)


@contextlib.asynccontextmanager
async def rtu_server(port: str) -> AsyncIterator[None]:
    bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
    holding = [SimData(0, values=WORDS, datatype=DataType.REGISTERS)]
    invalid = [SimData(0, datatype=DataType.INVALID)]
    device = SimDevice(id=7, simdata=(bits, bits, holding, invalid))
    server = ModbusSerialServer(device, port=port, baudrate=19200)
    await server.serve_forever(background=True)
    try:
        yield
    finally:
        await server.shutdown()


async def test_rtu_reads_and_decodes_over_a_serial_line(tmp_path: Path) -> None:
    with serial_pair(tmp_path) as (server_end, agent_end):
        async with rtu_server(server_end):
            device = ModbusDeviceConfig.model_validate(
                {
                    "id": "em-rtu",
                    "protocol": "modbus",
                    "transport": "rtu",
                    "serial_port": agent_end,
                    "baudrate": 19200,
                    "unit": 7,
                    "timeout_s": 1,
                    "tags": [
                        {
                            "tag": "energy_kwh",
                            "role": "energy_kwh",
                            "address": 0,
                            "type": "u32",
                            "order": "CDAB",
                            "scale": 0.1,
                        },
                        {
                            "tag": "state",
                            "role": "machine_state",
                            "address": 2,
                            "state_map": {1: "IDLE", 2: "RUNNING"},
                        },
                    ],
                }
            )
            got: list[Sample] = []
            source = ModbusSource(device, ModbusLink(device), got.extend)
            try:
                for _ in range(20):
                    await source.poll()
                    if any(s.tag == "energy_kwh" and s.quality == "good" for s in got):
                        break
                    await asyncio.sleep(0.2)
            finally:
                source.link.close()
    values = {s.tag: s.value for s in got if s.quality == "good"}
    assert values == {"_status": "online", "energy_kwh": 1873210.4, "state": "RUNNING"}
    assert source.describe() == "em-rtu: 1 request covers 3 registers"
