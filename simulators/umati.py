"""OPC 40501-1 (umati Machine Tools) vocabulary and the canonical-state mapping.

Pure tables, no I/O. The simulator writes a machine's canonical state as umati
values; the edge agent maps them back with `canonical_state`. The pair
(MachineryItemState, OperationMode) identifies the canonical state uniquely:

| canonical    | MachineryItemState | OperationMode | ChannelState | ActiveProgram |
|--------------|--------------------|---------------|--------------|---------------|
| RUNNING      | Executing          | Automatic     | Active       | Running       |
| IDLE         | NotExecuting       | Automatic     | Reset        | Ended         |
| SETUP        | NotExecuting       | Setup         | Interrupted  | Initializing  |
| DOWN         | OutOfService       | Automatic     | Interrupted  | Aborted       |
| PLANNED_STOP | OutOfService       | Service       | Reset        | Ended         |
| OFF          | NotAvailable       | Other         | Reset        | Ended         |
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from edge_agent.sample import MachineState

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


UMATI_OF: dict[MachineState, UmatiState] = {
    MachineState.RUNNING: UmatiState(
        "Executing", MachineOperationMode.Automatic, ChannelState.Active, "Running"
    ),
    MachineState.IDLE: UmatiState(
        "NotExecuting", MachineOperationMode.Automatic, ChannelState.Reset, "Ended"
    ),
    MachineState.SETUP: UmatiState(
        "NotExecuting", MachineOperationMode.Setup, ChannelState.Interrupted, "Initializing"
    ),
    MachineState.DOWN: UmatiState(
        "OutOfService", MachineOperationMode.Automatic, ChannelState.Interrupted, "Aborted"
    ),
    MachineState.PLANNED_STOP: UmatiState(
        "OutOfService", MachineOperationMode.Service, ChannelState.Reset, "Ended"
    ),
    MachineState.OFF: UmatiState(
        "NotAvailable", MachineOperationMode.Other, ChannelState.Reset, "Ended"
    ),
}


def canonical_state(item_state: str, operation_mode: int) -> MachineState:
    """Map umati values back to the canonical state (the agent's side of the contract)."""
    if item_state == "Executing":
        return MachineState.RUNNING
    if item_state == "NotExecuting":
        if operation_mode == MachineOperationMode.Setup:
            return MachineState.SETUP
        return MachineState.IDLE
    if item_state == "OutOfService":
        if operation_mode == MachineOperationMode.Service:
            return MachineState.PLANNED_STOP
        return MachineState.DOWN
    if item_state == "NotAvailable":
        return MachineState.OFF
    raise ValueError(
        f"unknown MachineryItemState {item_state!r}; expected NotAvailable, OutOfService, "
        "NotExecuting or Executing"
    )
