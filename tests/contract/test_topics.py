"""The contract's topics, built by the agent and parsed by the server from one module."""

from __future__ import annotations

import pytest

from edge_agent.contract import topics
from edge_agent.contract.topics import Origin


def test_a_gateway_prefix_parses_back_to_its_origin() -> None:
    prefix = topics.prefix("hf-precision", "plant_1", "gw-01")
    assert prefix == "fe/v1/hf-precision/plant_1/gw-01"  # as docs/mqtt.md writes it
    for kind in topics.STORED_KINDS:
        origin = topics.parse_stored(topics.topic(prefix, kind))
        assert origin == Origin("hf-precision", "plant_1", "gw-01", kind)


@pytest.mark.parametrize(
    "name",
    [
        "fe/v1/e/s/g/metrics",  # live only, never stored
        "fe/v2/e/s/g/data",
        "fe/v1/e/s/data",
        "fe/v1/e/s/g/x/data",
        "fe/v1/E/s/g/data",  # ids are lower case
        "fe/v1/-e/s/g/data",
        "fe/v1/e/s/g/data/",
    ],
)
def test_what_is_not_a_stored_topic_is_refused(name: str) -> None:
    assert topics.parse_stored(name) is None


def test_the_filters_match_every_gateway() -> None:
    assert topics.every_gateway("data") == "fe/v1/+/+/+/data"
    assert topics.STORED_PATTERN == "fe/v1/ENTERPRISE/SITE/GATEWAY/(data|birth|status)"
