"""The canonical-state contract with umati: the agent must be able to map back."""

from __future__ import annotations

import pytest

from simulators.scenario import MachineState
from simulators.umati import UMATI_OF, canonical_state


def test_the_state_mapping_is_a_bijection() -> None:
    pairs = {(u.item_state, int(u.operation_mode)) for u in UMATI_OF.values()}
    assert len(pairs) == len(MachineState) == len(UMATI_OF)
    for state, u in UMATI_OF.items():
        assert canonical_state(u.item_state, u.operation_mode) is state
    with pytest.raises(ValueError, match="unknown MachineryItemState"):
        canonical_state("Sleeping", 1)
