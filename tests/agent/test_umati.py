"""The canonical-state contract with umati: the simulator's table, and the agent's mapping
(the default of docs/agent.md, "Machine state", and a device's overrides)."""

from __future__ import annotations

import re

import pytest

from edge_agent.contract.sample import MachineState as AgentState
from edge_agent.umati import check_override_key, umati_state
from simulators.scenario import MachineState
from simulators.umati import UMATI_OF, canonical_state


def test_the_state_mapping_is_a_bijection() -> None:
    pairs = {(u.item_state, int(u.operation_mode)) for u in UMATI_OF.values()}
    machinery = {(u.item_state, u.machinery_mode) for u in UMATI_OF.values()}
    assert len(pairs) == len(machinery) == len(MachineState) == len(UMATI_OF)
    for state, u in UMATI_OF.items():
        # either mode vocabulary (OPC 40501 OperationMode, OPC 40001 MachineryOperationMode)
        assert canonical_state(u.item_state, u.operation_mode) is state
        assert canonical_state(u.item_state, u.machinery_mode) is state
    with pytest.raises(ValueError, match="unknown MachineryItemState"):
        canonical_state("Sleeping", 1)


# --- the agent's mapping: OPC 40001-1 item state x OPC 40501-1 / 40001-1 operation mode ---

ITEMS = ("NotAvailable", "OutOfService", "NotExecuting", "Executing")
# OPC 40501-1 MachineOperationMode (Int32) and OPC 40001-1 MachineryOperationMode (text)
MODES: dict[str, object] = {
    "Manual": 0,
    "Automatic": 1,
    "Setup": 2,
    "AutoWithManualIntervention": 3,
    "Service": 4,
    "Other": 5,
    "None": "None",
    "Maintenance": "Maintenance",
    "Setup (Machinery)": "Setup",
    "Processing": "Processing",
}


def expected_default(item: str, mode: str) -> str:
    """docs/agent.md, "Machine state", written out case by case."""
    if item == "NotAvailable":
        return "OFF"
    if item == "OutOfService":
        return "DOWN"  # not functional: a breakdown and its repair, whatever the mode
    if mode.startswith("Setup"):
        return "SETUP"
    if mode in ("Service", "Maintenance"):
        return "PLANNED_STOP"
    return "RUNNING" if item == "Executing" else "IDLE"


def test_planned_maintenance_is_a_planned_stop_not_idle() -> None:
    # the machine where it was found: NotExecuting, OperationMode Service,
    # MachineryOperationMode Maintenance; counted IDLE, availability was 4 points off
    assert umati_state("NotExecuting", 4) is AgentState.PLANNED_STOP
    assert umati_state("NotExecuting", 4.0) is AgentState.PLANNED_STOP
    assert umati_state("NotExecuting", "Maintenance") is AgentState.PLANNED_STOP


@pytest.mark.parametrize("item", ITEMS)
@pytest.mark.parametrize("mode", list(MODES))
def test_every_item_state_and_mode_maps_as_documented(item: str, mode: str) -> None:
    assert umati_state(item, MODES[mode]).value == expected_default(item, mode)


def test_unplanned_repair_is_down_even_in_service_mode() -> None:
    assert umati_state("OutOfService", 4) is AgentState.DOWN
    assert umati_state("OutOfService", "Maintenance") is AgentState.DOWN
    assert umati_state("OutOfService", 1) is AgentState.DOWN


def test_a_device_overrides_single_pairs_or_every_mode_of_an_item_state() -> None:
    overrides = {
        "OutOfService/Service": AgentState.PLANNED_STOP,
        "OutOfService/Maintenance": AgentState.PLANNED_STOP,
        "NotAvailable/*": AgentState.DOWN,
        "NotAvailable/Other": AgentState.OFF,
    }
    assert umati_state("OutOfService", 4, overrides) is AgentState.PLANNED_STOP
    assert umati_state("OutOfService", "Maintenance", overrides) is AgentState.PLANNED_STOP
    assert umati_state("OutOfService", 1, overrides) is AgentState.DOWN  # not overridden
    assert umati_state("NotAvailable", 0, overrides) is AgentState.DOWN  # the wildcard
    assert umati_state("NotAvailable", 5, overrides) is AgentState.OFF  # the pair wins
    assert umati_state("NotExecuting", 4, overrides) is AgentState.PLANNED_STOP  # default


@pytest.mark.parametrize("mode", [9, -1, 2.5, "Wartung", "service"])
def test_an_unknown_mode_is_refused_not_guessed(mode: object) -> None:
    with pytest.raises(ValueError, match="unknown operation mode") as info:
        umati_state("NotExecuting", mode)
    assert "Service" in str(info.value)
    assert "Maintenance" in str(info.value)


@pytest.mark.parametrize(
    ("key", "fix"),
    [
        ("NotExecuting-Service", "ItemState/Mode"),
        ("Running/Service", "NotAvailable, OutOfService, NotExecuting or Executing"),
        ("NotExecuting/Servcie", "Manual, Automatic, Setup"),
    ],
)
def test_override_keys_are_checked(key: str, fix: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fix)):
        check_override_key(key)
    assert check_override_key("NotExecuting/Service") == "NotExecuting/Service"
    assert check_override_key("OutOfService/*") == "OutOfService/*"
