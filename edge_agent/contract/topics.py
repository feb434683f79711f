"""MQTT topics of the contract, built and parsed in one place (docs/mqtt.md).

    fe/v1/{enterprise}/{site}/{gateway}/{kind}      kind: data, birth, status, metrics
    fe/v1/{enterprise}/{site}/{gateway}/ack         the server's acknowledgements (v2)

The agent publishes under its gateway's prefix; the server subscribes to the kinds it
stores with a `+` for each level and parses the topic back into its origin, and answers
on the gateway's `ack` topic what it has stored (contract/ack.py); the broker's ACL
(ingest-server gateway broker-files) lets a gateway write only below its own prefix and
read only its own `ack` topic.
Enterprise, site and gateway ids are lower-case `[a-z0-9][a-z0-9_-]*` (the agent's config
and the server's registry hold no other), so a topic level never holds `/ + #`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROOT = "fe/v1"
STORED_KINDS = ("data", "birth", "status")  # the server stores these; metrics are live only
ACK_KIND = "ack"  # written by the server only, read by the gateway it names
_LEVEL = r"([a-z0-9][a-z0-9_-]*)"
_STORED = re.compile(rf"^{ROOT}/{_LEVEL}/{_LEVEL}/{_LEVEL}/({'|'.join(STORED_KINDS)})$")


@dataclass(frozen=True, slots=True)
class Origin:
    """Who published a message and what kind it is, as its topic says."""

    enterprise: str
    site: str
    gateway: str
    kind: str


def prefix(enterprise: str, site: str, gateway: str) -> str:
    """The topic prefix a gateway publishes under (and the broker lets it write to)."""
    return f"{ROOT}/{enterprise}/{site}/{gateway}"


def topic(gateway_prefix: str, kind: str) -> str:
    return f"{gateway_prefix}/{kind}"


def ack_topic(gateway_prefix: str) -> str:
    """Where the server acknowledges a gateway's stored batches (contract/ack.py)."""
    return f"{gateway_prefix}/{ACK_KIND}"


def every_gateway(kind: str) -> str:
    """The filter for one kind from every gateway: `fe/v1/+/+/+/data`."""
    return f"{ROOT}/+/+/+/{kind}"


def parse_stored(name: str) -> Origin | None:
    """The origin of a topic the server stores, or None when it is not one."""
    m = _STORED.match(name)
    return None if m is None else Origin(*m.groups())


STORED_PATTERN = f"{ROOT}/ENTERPRISE/SITE/GATEWAY/({'|'.join(STORED_KINDS)})"
