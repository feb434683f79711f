"""OPC 40501-1 (umati Machine Tools) vocabulary and the canonical-state mapping.

Pure tables, no I/O. The simulator writes a machine's canonical state as umati
values; the edge agent maps them back (`edge_agent.umati`, whose default mapping
`canonical_state` applies). The pair (MachineryItemState, OperationMode) identifies
the canonical state uniquely, and so does (MachineryItemState, MachineryOperationMode):

| canonical    | ItemState    | OperationMode | MachineryOpMode | ChannelState | program      |
|--------------|--------------|---------------|-----------------|--------------|--------------|
| RUNNING      | Executing    | Automatic     | Processing      | Active       | Running      |
| IDLE         | NotExecuting | Automatic     | Processing      | Reset        | Ended        |
| SETUP        | NotExecuting | Setup         | Setup           | Interrupted  | Initializing |
| DOWN         | OutOfService | Automatic     | Processing      | Interrupted  | Aborted      |
| PLANNED_STOP | NotExecuting | Service       | Maintenance     | Reset        | Ended        |
| OFF          | NotAvailable | Other         | None            | Reset        | Ended        |

PLANNED_STOP is a functional machine switched to Service for planned maintenance, as
real machine tools report it (OutOfService would be a breakdown: DOWN).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from edge_agent.contract.sample import MachineState
from edge_agent.umati import umati_state

NS_DI = "http://opcfoundation.org/UA/DI/"
NS_MACHINERY = "http://opcfoundation.org/UA/Machinery/"
NS_MACHINE_TOOL = "http://opcfoundation.org/UA/MachineTool/"


class MachineOperationMode(enum.IntEnum):
    """MachineTool namespace, MachineOperationMode enumeration."""

    Manual = 0
    Automatic = 1
    Setup = 2
    AutoWithManualIntervention = 3
    Service = 4
    Other = 5


class ChannelState(enum.IntEnum):
    Active = 0
    Interrupted = 1
    Reset = 2


class ChannelMode(enum.IntEnum):
    Automatic = 0
    MDA = 1
    Manual = 2
    Other = 3


@dataclass(frozen=True, slots=True)
class UmatiState:
    item_state: str
    operation_mode: MachineOperationMode
    channel_state: ChannelState
    program_state: str
    machinery_mode: str  # OPC 40001-1 MachineryOperationMode CurrentState


UMATI_OF: dict[MachineState, UmatiState] = {
    MachineState.RUNNING: UmatiState(
        "Executing", MachineOperationMode.Automatic, ChannelState.Active, "Running", "Processing"
    ),
    MachineState.IDLE: UmatiState(
        "NotExecuting", MachineOperationMode.Automatic, ChannelState.Reset, "Ended", "Processing"
    ),
    MachineState.SETUP: UmatiState(
        "NotExecuting",
        MachineOperationMode.Setup,
        ChannelState.Interrupted,
        "Initializing",
        "Setup",
    ),
    MachineState.DOWN: UmatiState(
        "OutOfService",
        MachineOperationMode.Automatic,
        ChannelState.Interrupted,
        "Aborted",
        "Processing",
    ),
    MachineState.PLANNED_STOP: UmatiState(
        "NotExecuting", MachineOperationMode.Service, ChannelState.Reset, "Ended", "Maintenance"
    ),
    MachineState.OFF: UmatiState(
        "NotAvailable", MachineOperationMode.Other, ChannelState.Reset, "Ended", "None"
    ),
}


def canonical_state(item_state: str, operation_mode: int | str) -> MachineState:
    """Map umati values back to the canonical state: the agent's default mapping."""
    return umati_state(item_state, operation_mode)
