"""The agent's umati mapping inverts the simulator's for every canonical state."""

from __future__ import annotations

import pytest

from edge_agent.sample import MachineState
from edge_agent.umati import umati_state
from simulators.umati import UMATI_OF


@pytest.mark.parametrize("state", list(UMATI_OF))
def test_round_trip(state) -> None:  # type: ignore[no-untyped-def]
    u = UMATI_OF[state]
    assert umati_state(u.item_state, int(u.operation_mode)) == MachineState(state.value)
    # OPC UA Int32 arrives as a float after normalisation
    assert umati_state(u.item_state, float(u.operation_mode)) == MachineState(state.value)


def test_unknown_item_state_names_the_expected_ones() -> None:
    with pytest.raises(ValueError, match="expected NotAvailable, OutOfService"):
        umati_state("Running", 1)
