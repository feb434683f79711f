"""OPC 40501-1 (umati Machine Tools) to the canonical machine state.

The pair (MachineryItemState CurrentState, MachineTool OperationMode) identifies the
canonical state; OperationMode alone cannot tell a stopped machine from one in setup,
and MachineryItemState alone cannot tell a breakdown from planned maintenance:

| MachineryItemState | OperationMode          | canonical    |
|--------------------|------------------------|--------------|
| Executing          | any                    | RUNNING      |
| NotExecuting       | Setup (2)              | SETUP        |
| NotExecuting       | any other              | IDLE         |
| OutOfService       | Service (4)            | PLANNED_STOP |
| OutOfService       | any other              | DOWN         |
| NotAvailable       | any                    | OFF          |
"""

from __future__ import annotations

from edge_agent.sample import MachineState

OPERATION_MODE_SETUP = 2
OPERATION_MODE_SERVICE = 4


def umati_state(item_state: str, operation_mode: object) -> MachineState:
    if item_state == "Executing":
        return MachineState.RUNNING
    if item_state == "NotAvailable":
        return MachineState.OFF
    mode = int(operation_mode) if isinstance(operation_mode, int | float) else None
    if item_state == "NotExecuting":
        return MachineState.SETUP if mode == OPERATION_MODE_SETUP else MachineState.IDLE
    if item_state == "OutOfService":
        return MachineState.PLANNED_STOP if mode == OPERATION_MODE_SERVICE else MachineState.DOWN
    raise ValueError(
        f"unknown MachineryItemState {item_state!r}; expected NotAvailable, OutOfService, "
        "NotExecuting or Executing"
    )
