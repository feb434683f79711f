"""umati machines (OPC 40501-1 Machine Tools, OPC 40001-1 Machinery) to the canonical state.

A umati machine says what it is doing in two variables, read as a pair:

- MachineryItemState CurrentState (OPC 40001-1): NotAvailable, OutOfService,
  NotExecuting or Executing: is the machine working, and can it work;
- its operation mode, either the MachineTool OperationMode (OPC 40501-1, Int32
  MachineOperationMode: Manual 0, Automatic 1, Setup 2, AutoWithManualIntervention 3,
  Service 4, Other 5) or the MachineryOperationMode CurrentState (OPC 40001-1, text:
  None, Maintenance, Setup, Processing): what the people at the machine intend.

Neither alone is enough: the item state cannot tell setup or planned maintenance from an
idle machine, the mode cannot tell a running machine from a stopped one. The default
mapping (docs/agent.md, "Machine state", gives the reasons against ISO 22400-2):

| MachineryItemState | Setup | Service, Maintenance | any other mode |
|--------------------|-------|----------------------|----------------|
| Executing          | SETUP | PLANNED_STOP         | RUNNING        |
| NotExecuting       | SETUP | PLANNED_STOP         | IDLE           |
| OutOfService       | DOWN  | DOWN                 | DOWN           |
| NotAvailable       | OFF   | OFF                  | OFF            |

A device may override it (``umati_states`` in its config) pair by pair,
``NotExecuting/Manual: SETUP``, or for every mode of an item state,
``OutOfService/*: DOWN``; a pair beats a ``*``, which beats the default. An item state
or mode outside the specifications is refused (ValueError, which the source publishes as
a bad-quality sample naming the value), never guessed.

Pure: the caller gives the values read and the device's overrides.
"""

from __future__ import annotations

from collections.abc import Mapping

from edge_agent.contract.sample import MachineState

ITEM_STATES = ("NotAvailable", "OutOfService", "NotExecuting", "Executing")
# OPC 40501-1 MachineOperationMode, by value
MACHINE_TOOL_MODES = (
    "Manual",
    "Automatic",
    "Setup",
    "AutoWithManualIntervention",
    "Service",
    "Other",
)
# OPC 40001-1 MachineryOperationModeStateMachineType states
MACHINERY_MODES = ("None", "Maintenance", "Setup", "Processing")
MODE_NAMES = tuple(dict.fromkeys(MACHINE_TOOL_MODES + MACHINERY_MODES))
SETUP_MODES = frozenset({"Setup"})
SERVICE_MODES = frozenset({"Service", "Maintenance"})
ANY_MODE = "*"

_ITEMS_TEXT = "NotAvailable, OutOfService, NotExecuting or Executing"
_MODES_TEXT = (
    f"an OPC 40501 MachineOperationMode 0-5 ({', '.join(MACHINE_TOOL_MODES)}) or an "
    f"OPC 40001 MachineryOperationMode ({', '.join(MACHINERY_MODES)})"
)


def mode_name(operation_mode: object) -> str:
    """The specification's name of an operation mode as read (a number or a text)."""
    if isinstance(operation_mode, int | float) and not isinstance(operation_mode, bool):
        if float(operation_mode).is_integer() and 0 <= operation_mode < len(MACHINE_TOOL_MODES):
            return MACHINE_TOOL_MODES[int(operation_mode)]
    elif isinstance(operation_mode, str) and operation_mode in MACHINERY_MODES:
        return operation_mode
    raise ValueError(f"unknown operation mode {operation_mode!r}; expected {_MODES_TEXT}")


def default_state(item_state: str, mode: str) -> MachineState:
    """The default mapping of a (MachineryItemState, mode name) pair."""
    if item_state == "NotAvailable":
        return MachineState.OFF
    if item_state == "OutOfService":
        # not functional (OPC 40001-1: error, blocked): a breakdown and its repair are
        # unplanned down time, even when the technician switches to Service mode
        return MachineState.DOWN
    if item_state not in ("NotExecuting", "Executing"):
        raise ValueError(f"unknown MachineryItemState {item_state!r}; expected {_ITEMS_TEXT}")
    if mode in SETUP_MODES:
        return MachineState.SETUP
    if mode in SERVICE_MODES:
        return MachineState.PLANNED_STOP
    return MachineState.RUNNING if item_state == "Executing" else MachineState.IDLE


def umati_state(
    item_state: str,
    operation_mode: object,
    overrides: Mapping[str, MachineState] | None = None,
) -> MachineState:
    """The canonical state of a umati machine; `overrides` is the device's umati_states."""
    if item_state not in ITEM_STATES:
        raise ValueError(f"unknown MachineryItemState {item_state!r}; expected {_ITEMS_TEXT}")
    mode = mode_name(operation_mode)
    if overrides:
        found = overrides.get(f"{item_state}/{mode}") or overrides.get(f"{item_state}/{ANY_MODE}")
        if found is not None:
            return found
    return default_state(item_state, mode)


def check_override_key(key: str) -> str:
    """A ``umati_states`` key, ``ItemState/Mode`` or ``ItemState/*``; ValueError naming the fix."""
    item, sep, mode = key.partition("/")
    if not sep:
        raise ValueError(
            f"{key!r} is not ItemState/Mode: write e.g. NotExecuting/Service: PLANNED_STOP "
            "or OutOfService/*: DOWN"
        )
    if item not in ITEM_STATES:
        raise ValueError(f"{key!r}: unknown MachineryItemState {item!r}; use {_ITEMS_TEXT}")
    if mode != ANY_MODE and mode not in MODE_NAMES:
        raise ValueError(
            f"{key!r}: unknown mode {mode!r}; use {', '.join(MODE_NAMES)} or * for every mode"
        )
    return key
