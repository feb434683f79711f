"""What the protocol servers see of the plant at one instant.

The plant model (`simulators.plant.Plant`) owns the truth; the OPC UA and Modbus
servers only read these frozen views and encode them. Times are sim-time epoch
seconds (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.contract.sample import MachineState
from simulators.scenario import Carrier


@dataclass(frozen=True, slots=True)
class MachineView:
    equipment_id: str
    state: MachineState
    state_since: float
    """Sim time at which the current state began."""
    parts_completed: int
    """Part counter as the machine shows it: the scenario's initial value plus parts made."""
    parts_good: int
    power_kw: float
    program: str
    """Active NC program; "" outside shifts, when no program is active."""
    spindle_rpm: float
    """0 unless RUNNING."""
    feed_override_pct: float
    online: bool
    """False while an 'offline' fault cuts the device from the network."""


@dataclass(frozen=True, slots=True)
class MeterView:
    meter_id: str
    carrier: Carrier
    reading: float
    """Counter as the meter shows it (kWh or m3): initial + consumed, with freeze/reset faults
    applied. Register encoding (scale, width, rollover) is the Modbus server's business."""
    rate: float
    """kW for electricity, m3/h for water and gas."""
    online: bool
