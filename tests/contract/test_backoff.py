"""The reconnect and retry policy both sides use: capped exponential with full jitter."""

from __future__ import annotations

import random

import pytest

from edge_agent.contract.backoff import Backoff


def test_delays_double_up_to_the_cap_each_drawn_in_its_upper_half() -> None:
    b = Backoff(0.5, 4.0, rng=random.Random(7))
    bases = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for base in bases:
        d = b.next()
        assert base / 2 <= d <= base
    assert b.attempts == len(bases)


def test_reset_starts_again_from_the_minimum() -> None:
    b = Backoff(1.0, 30.0, rng=random.Random(1))
    for _ in range(6):
        b.next()
    b.reset()
    assert b.attempts == 0
    assert 0.5 <= b.next() <= 1.0


def test_jitter_spreads_gateways_that_failed_together() -> None:
    firsts = {round(Backoff(8.0, 60.0, rng=random.Random(seed)).next(), 3) for seed in range(50)}
    assert len(firsts) > 40  # not in lockstep
    assert min(firsts) >= 4.0
    assert max(firsts) <= 8.0


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_impossible_bounds_are_refused(lo: float, hi: float) -> None:
    with pytest.raises(ValueError, match="0 < min_s <= max_s"):
        Backoff(lo, hi)
