"""What the agent runs per device, and the one place it tells the kinds of device apart.

    config.devices --Sources--> OpcUaSource | ModbusSource (each a `Source`)
        --run()--> emit(samples) --> Agent

A `Source` reads one device until it is cancelled, hands what it read to ``emit``
(synchronously, on the loop) and counts what it did in ``stats()``. The agent needs
nothing else of it, so only the functions here know the device kinds: which tags a device
has (`device_tags`), how the birth describes them (`birth_tags`), which source reads it
(`Sources`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from edge_agent.config import AgentConfig, ModbusDeviceConfig, OpcUaDeviceConfig
from edge_agent.contract.sample import Sample

if TYPE_CHECKING:
    from edge_agent.config import ModbusTagConfig, OpcUaNodeConfig
    from edge_agent.modbus_source import ModbusLink

Emit = Callable[[list[Sample]], None]


class Source(Protocol):
    """One device's reader: `OpcUaSource` (a session) or `ModbusSource` (a poll loop)."""

    @property
    def device(self) -> OpcUaDeviceConfig | ModbusDeviceConfig: ...

    async def run(self) -> None:
        """Read the device until cancelled; a device that fails is retried, never fatal."""
        ...

    def stats(self) -> dict[str, Any]:
        """The source's counters (the metrics topic's ``devices``); ``online`` in all."""
        ...


def device_tags(
    device: OpcUaDeviceConfig | ModbusDeviceConfig,
) -> list[OpcUaNodeConfig] | list[ModbusTagConfig]:
    """The device's configured tags: an OPC UA device's nodes, a Modbus device's tags."""
    return device.nodes if isinstance(device, OpcUaDeviceConfig) else device.tags


def birth_tags(device: OpcUaDeviceConfig | ModbusDeviceConfig) -> list[dict[str, Any]]:
    """The birth's description of the device's tags: role and unit; for Modbus also the
    register type and scaling, and where an unsigned counter wraps."""
    tags: list[dict[str, Any]] = []
    if isinstance(device, ModbusDeviceConfig):
        for t in device.tags:
            entry: dict[str, Any] = {"t": t.tag, "role": t.role.value, "unit": t.unit}
            entry |= {"type": t.type, "scale": t.scale, "offset": t.offset}
            if t.type in ("u16", "u32"):
                # an unsigned counter wraps here, in engineering units
                entry["wrap"] = (2 ** (16 * t.count)) * t.scale
            tags.append(entry)
    else:
        tags.extend({"t": n.tag, "role": n.role.value, "unit": n.unit} for n in device.nodes)
    return tags


class Sources:
    """Every device's source, built from the config, and the Modbus links they share (one
    connection and lock per TCP port or serial line), which `close` closes. ``plans``
    describes the Modbus devices' read plans, for the agent's log."""

    def __init__(self, config: AgentConfig, emit: Emit, *, application_uri: str) -> None:
        # Protocol stacks load only when a device needs them: asyncua alone is 25 MB of
        # RSS that a Modbus-only gateway does not pay.
        if any(isinstance(d, OpcUaDeviceConfig) for d in config.devices):
            from edge_agent.opcua_source import OpcUaSource  # noqa: PLC0415
        if any(isinstance(d, ModbusDeviceConfig) for d in config.devices):
            from edge_agent.modbus_source import ModbusLink, ModbusSource  # noqa: PLC0415
        self.sources: list[Source] = []
        self.plans: list[str] = []
        self._links: dict[str, ModbusLink] = {}
        for d in config.devices:
            if isinstance(d, OpcUaDeviceConfig):
                self.sources.append(OpcUaSource(d, emit, application_uri=application_uri))
            else:
                link = self._links.get(d.link)
                if link is None:
                    link = self._links[d.link] = ModbusLink(d)
                source = ModbusSource(d, link, emit)
                self.plans.append(source.describe())
                self.sources.append(source)

    def close(self) -> None:
        """Close the shared links; call it once the sources are cancelled."""
        for link in self._links.values():
            link.close()
