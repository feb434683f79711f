"""The agent's configuration: one YAML file, validated before anything connects.

    load_config(path) -> AgentConfig        raises ConfigError listing every problem

Errors name the file, the path inside it (``devices[2].tags[0].order``) and the fix, so an
integrator can repair a file on a gateway without reading this code. The layout of a
Modbus value (how many registers it takes, which word orders make sense) is settled here,
at validation time, so the read planner and the codec never see an impossible tag.
Secrets (MQTT password, HMAC key, the gateway's own key) are read from files
(edge_agent.contract.secrets, edge_agent.contract.identity), never written inline.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from edge_agent.contract import topics
from edge_agent.contract.sample import DEVICE_STATUS_TAG, MachineState, Role
from edge_agent.contract.secrets import ConfigError
from edge_agent.contract.yaml12 import YamlFileError, read_yaml_file, validation_problems
from edge_agent.umati import check_override_key

CONFIG_VERSION = 1

Id = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
# MQTT topic levels must not hold wildcards or separators
TopicId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]

ModbusFunction = Literal["holding", "input", "coil", "discrete"]
ModbusType = Literal["u16", "i16", "u32", "i32", "f32", "f64", "bit"]
WordOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]
REGISTER_COUNT: dict[str, int] = {
    "u16": 1,
    "i16": 1,
    "u32": 2,
    "i32": 2,
    "f32": 2,
    "f64": 4,
    "bit": 1,
}
# Modbus application protocol v1.1b3, 6.1-6.4: the most one request may ask for.
MAX_REGISTERS_PER_REQUEST = 125
MAX_BITS_PER_REQUEST = 2000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewayConfig(_Strict):
    enterprise: TopicId
    site: TopicId
    id: TopicId = Field(description="gateway id, unique in the site; the MQTT topic level")
    contract: Literal[1, 2] = Field(
        default=1,
        description="1: HMAC-signed JSON, deleted on the broker's PUBACK (the server holds the "
        "key too, so it could forge this gateway's data); 2: batches signed with key_file, "
        "chained, compact, deleted on the server's ack (recommended)",
    )
    key_file: Path | None = Field(
        default=None,
        description="the gateway's own Ed25519 private key (`edge-agent keys init`); "
        "required by contract 2, which signs everything with it",
    )

    @model_validator(mode="after")
    def _key(self) -> GatewayConfig:
        if self.contract == 2 and self.key_file is None:
            raise ValueError(
                "contract 2 needs key_file, the gateway's own Ed25519 key: make it with "
                "`edge-agent keys init --config CONFIG` (it writes the file and prints the "
                "public key to enrol on the server), then set gateway.key_file to its path"
            )
        return self


class TlsConfig(_Strict):
    ca_file: Path | None = Field(default=None, description="CA bundle; None: system CAs")
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both cert_file and key_file")
        return self


class MqttConfig(_Strict):
    url: str = Field(description="mqtt://host:port, or mqtts://host:port for TLS")
    client_id: str | None = Field(
        default=None,
        description="default: the username when there is one (a hardened broker binds the "
        "client id to the login, docs/deploy.md), else fe-<gateway id>",
    )
    username: str | None = None
    password_file: Path | None = None
    tls: TlsConfig | None = None
    hmac_key_file: Path | None = Field(
        default=None,
        description="the gateway's HMAC-SHA256 key (signs each payload); contract 1 only",
    )
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    batch_max_samples: int = Field(default=2000, ge=1, le=100_000)
    batch_interval_s: float = Field(default=1.0, gt=0, le=300)
    max_inflight: int = Field(default=20, ge=1, le=1000)
    backlog_batches_per_s: float = Field(
        default=20.0, gt=0, description="drain rate of the backlog after an outage"
    )
    reconnect_min_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=60.0, gt=0)
    # contract 2 only: the payload's size and compression, and the server's ack
    compress: Literal["zlib", "none"] = Field(
        default="zlib", description="zlib: the body is compressed when that makes it smaller"
    )
    batch_max_bytes: int = Field(
        default=256 * 1024,
        ge=16 * 1024,  # one sample of the longest text fits, whatever the header
        le=64 * 1024 * 1024,
        description="a sealed batch over this is cut into several, each under it",
    )
    ack_timeout_s: float = Field(
        default=30.0, gt=0, le=86400, description="re-send a batch the server has not acked"
    )
    ack_backoff_max_s: float = Field(
        default=300.0, gt=0, description="the longest wait between re-sends of one batch"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(
                f"{v!r} is not an MQTT URL; write mqtt://host:1883 or mqtts://host:8883"
            )
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError(f"{v!r} has an invalid port") from None
        return v

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts" or self.tls is not None

    @model_validator(mode="after")
    def _backoff(self) -> MqttConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be at least reconnect_min_s")
        if self.ack_backoff_max_s < self.ack_timeout_s:
            raise ValueError("ack_backoff_max_s must be at least ack_timeout_s")
        return self


class OutboxConfig(_Strict):
    path: Path = Field(description="SQLite file; put it on persistent storage")
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024)
    max_age_s: float = Field(default=30 * 86400, gt=0)
    durability: Literal["power", "process"] = Field(
        default="power",
        description="power: fsync each batch (survives power loss); process: survives kill -9",
    )
    when_full: Literal["drop_oldest"] = Field(
        default="drop_oldest", description="what to do when a bound is reached (counted, logged)"
    )


class _Tag(_Strict):
    tag: Id = Field(description="tag id, unique within the device")
    role: Role = Role.GENERIC
    unit: str | None = Field(default=None, max_length=32)
    deadband: float = Field(default=0.0, ge=0, description="absolute; 0 reports every change")
    heartbeat_s: float | None = Field(
        default=None, gt=0, description="re-send an unchanged value this often (default: agent's)"
    )
    state_map: dict[str, MachineState] = Field(
        default={}, description="device code -> canonical state (role machine_state)"
    )

    @field_validator("state_map", mode="before")
    @classmethod
    def _keys_as_text(cls, v: Any) -> Any:
        # YAML gives int keys for register codes; the map compares the value's text.
        if isinstance(v, dict):
            return {str(k): s for k, s in v.items()}
        return v

    @model_validator(mode="after")
    def _roles(self) -> _Tag:
        if self.role is Role.DEVICE_STATUS:
            raise ValueError("role device_status is written by the agent itself; choose another")
        if self.tag == DEVICE_STATUS_TAG:
            raise ValueError(f"tag id {DEVICE_STATUS_TAG!r} is reserved for the device status")
        if self.state_map and self.role is not Role.MACHINE_STATE:
            raise ValueError("state_map belongs to a tag with role machine_state")
        return self


class ModbusTagConfig(_Tag):
    function: ModbusFunction = "holding"
    address: int = Field(ge=0, le=65535, description="0-based protocol address")
    type: ModbusType = "u16"
    order: WordOrder = Field(default="ABCD", description="A = most significant byte")
    scale: float = Field(default=1.0, description="value = raw x scale + offset")
    offset: float = 0.0

    @property
    def count(self) -> int:
        return REGISTER_COUNT[self.type]

    @property
    def is_bit(self) -> bool:
        return self.function in ("coil", "discrete")

    @model_validator(mode="after")
    def _layout(self) -> ModbusTagConfig:
        if self.is_bit != (self.type == "bit"):
            raise ValueError(
                f"type {self.type!r} does not fit function {self.function!r}: coils and "
                "discrete inputs are type bit, holding and input registers never are"
            )
        if self.count == 1 and self.order not in ("ABCD", "BADC"):
            raise ValueError(
                f"a one-register {self.type} has no word order: use ABCD, or BADC to swap its bytes"
            )
        if self.address + self.count > 65536:
            raise ValueError(
                f"a {self.type} at address {self.address} runs past the last address 65535"
            )
        if self.scale == 0:
            raise ValueError("scale 0 would turn every value into the offset; use 1 for none")
        return self


class OpcUaNodeConfig(_Tag):
    node: str = Field(
        description="NodeId; prefer nsu=<namespace uri>;s=... (survives namespace reordering)"
    )
    umati_operation_mode: str | None = Field(
        default=None,
        description="with role machine_state: the OperationMode node read beside a "
        "MachineryItemState CurrentState node, mapped by OPC 40501 to the canonical state",
    )

    @field_validator("node", "umati_operation_mode")
    @classmethod
    def _node_id(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^(ns=\d+;|nsu=[^;]+;)?[isgb]=.+$", v):
            raise ValueError(
                f"{v!r} is not a NodeId; write ns=2;s=Name, nsu=urn:...;s=Name or i=2258"
            )
        return v

    @model_validator(mode="after")
    def _umati(self) -> OpcUaNodeConfig:
        if self.umati_operation_mode is not None:
            if self.role is not Role.MACHINE_STATE:
                raise ValueError("umati_operation_mode belongs to a tag with role machine_state")
            if self.state_map:
                raise ValueError("use either umati_operation_mode or state_map, not both")
        return self


class OpcUaSecurityConfig(_Strict):
    policy: Literal["None", "Basic256Sha256"] = "None"
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: Path | None = Field(default=None, description="the agent's certificate (DER/PEM)")
    private_key: Path | None = None
    server_certificate: Path | None = Field(
        default=None, description="pin: only a server presenting this certificate is trusted"
    )

    @model_validator(mode="after")
    def _consistent(self) -> OpcUaSecurityConfig:
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError(
                "policy None goes with mode None; Basic256Sha256 needs Sign or SignAndEncrypt"
            )
        if self.policy != "None" and (self.certificate is None or self.private_key is None):
            raise ValueError(
                "a secure policy needs certificate and private_key for the agent: make a "
                "pair (docs/agent.md shows how) and add the certificate to the server's trust list"
            )
        return self


class _Device(_Strict):
    id: Id
    metadata: dict[str, str | int | float | bool] = Field(
        default={}, description="vendor, model, serial, nc: true/false ... (sent in birth)"
    )
    heartbeat_s: float | None = Field(default=None, gt=0)


class OpcUaDeviceConfig(_Device):
    protocol: Literal["opcua"]
    endpoint: str
    security: OpcUaSecurityConfig = OpcUaSecurityConfig()
    username: str | None = None
    password_file: Path | None = None
    mode: Literal["subscription", "polling"] = "subscription"
    publishing_interval_ms: int = Field(default=500, ge=10, le=3_600_000)
    sampling_interval_ms: int = Field(default=250, ge=0, le=3_600_000)
    poll_interval_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=5.0, gt=0)
    reconnect_min_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    umati_states: dict[str, MachineState] = Field(
        default={},
        description="overrides of the default umati mapping: ItemState/Mode (or ItemState/*) "
        "-> canonical state, for the nodes with umati_operation_mode",
    )
    nodes: list[OpcUaNodeConfig] = Field(min_length=1)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not re.match(r"^opc\.tcp://[^/:]+(:\d+)?(/.*)?$", v):
            raise ValueError(f"{v!r} is not an OPC UA endpoint; write opc.tcp://host:4840/")
        return v

    @field_validator("umati_states")
    @classmethod
    def _umati_keys(cls, v: dict[str, MachineState]) -> dict[str, MachineState]:
        problems = []
        for key in v:
            try:
                check_override_key(key)
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("\n".join(problems))
        return v

    @model_validator(mode="after")
    def _check(self) -> OpcUaDeviceConfig:
        _unique_tags(self.nodes)
        unmapped = [
            i
            for i, t in enumerate(self.nodes)
            if t.role is Role.MACHINE_STATE and t.umati_operation_mode is None and not t.state_map
        ]
        _refuse_unmapped_states(
            self.id,
            [(f"nodes[{i}]", self.nodes[i].tag) for i in unmapped],
            "needs a mapping to the canonical states: umati_operation_mode: <NodeId of its "
            "OperationMode> for a umati machine (OPC 40501 / OPC 40001), else state_map: "
            "{<device value>: RUNNING, ...}",
        )
        if self.umati_states and all(t.umati_operation_mode is None for t in self.nodes):
            raise ValueError(
                f"umati_states applies to nodes with umati_operation_mode, and device "
                f"{self.id!r} has none: give its machine_state node umati_operation_mode, or "
                "remove umati_states"
            )
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file go together (omit both for anonymous)")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be at least reconnect_min_s")
        return self


class ModbusDeviceConfig(_Device):
    protocol: Literal["modbus"]
    transport: Literal["tcp", "rtu"] = "tcp"
    host: str | None = None
    port: int = Field(default=502, ge=1, le=65535)
    serial_port: str | None = None
    baudrate: int = Field(default=9600, ge=300, le=921600)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    unit: int = Field(ge=0, le=255)
    max_registers_per_request: int = Field(default=MAX_REGISTERS_PER_REQUEST, ge=1, le=125)
    max_bits_per_request: int = Field(default=MAX_BITS_PER_REQUEST, ge=1, le=2000)
    max_gap_registers: int = Field(
        default=10, ge=0, description="unused registers a request may span to save a request"
    )
    inter_request_delay_s: float = Field(default=0.0, ge=0, le=10)
    timeout_s: float = Field(default=1.0, gt=0, le=60)
    poll_interval_s: float = Field(default=1.0, gt=0)
    reconnect_min_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    tags: list[ModbusTagConfig] = Field(min_length=1)

    @property
    def link(self) -> str:
        """Devices on one link share a connection and a lock (an RS-485 bus, a gateway port)."""
        if self.transport == "rtu":
            return f"rtu:{self.serial_port}"
        return f"tcp:{self.host}:{self.port}"

    @model_validator(mode="after")
    def _check(self) -> ModbusDeviceConfig:
        if self.transport == "tcp" and not self.host:
            raise ValueError("a Modbus TCP device needs host (and port, default 502)")
        if self.transport == "rtu" and not self.serial_port:
            raise ValueError("a Modbus RTU device needs serial_port, e.g. /dev/ttyUSB0")
        _refuse_unmapped_states(
            self.id,
            [
                (f"tags[{i}]", t.tag)
                for i, t in enumerate(self.tags)
                if t.role is Role.MACHINE_STATE and not t.state_map
            ],
            "needs state_map: {<register code>: RUNNING, ...} to map its codes to the "
            "canonical states",
        )
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be at least reconnect_min_s")
        _unique_tags(self.tags)
        for t in self.tags:
            if not t.is_bit and t.count > self.max_registers_per_request:
                raise ValueError(
                    f"tag {t.tag!r} ({t.type}) takes {t.count} registers but "
                    f"max_registers_per_request is {self.max_registers_per_request}: raise it "
                    f"to at least {t.count}"
                )
        seen: dict[tuple[str, int], str] = {}
        for t in self.tags:
            table = "bits:" + t.function if t.is_bit else "regs:" + t.function
            for a in range(t.address, t.address + t.count):
                other = seen.get((table, a))
                if other is not None:
                    raise ValueError(
                        f"tags {other!r} and {t.tag!r} both use {t.function} address {a}; "
                        "each address belongs to one tag"
                    )
                seen[(table, a)] = t.tag
        return self


DeviceConfig = Annotated[OpcUaDeviceConfig | ModbusDeviceConfig, Field(discriminator="protocol")]


def _refuse_unmapped_states(device: str, tags: list[tuple[str, str]], fix: str) -> None:
    """A machine_state tag without a mapping would publish the device's own codes, which
    no KPI can read: refuse it at check time, naming the device, the tag and the fix."""
    if tags:
        raise ValueError(
            "\n".join(
                f"device {device!r}, tag {tag!r} ({where}): role machine_state {fix} "
                '(docs/agent.md, "Machine state")'
                for where, tag in tags
            )
        )


def _unique_tags(tags: list[ModbusTagConfig] | list[OpcUaNodeConfig]) -> None:
    ids = [t.tag for t in tags]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"tag ids {dup} are used more than once in this device; make them unique")


class AgentConfig(_Strict):
    version: Literal[1] = Field(description="config format version")
    gateway: GatewayConfig
    mqtt: MqttConfig
    outbox: OutboxConfig
    heartbeat_s: float = Field(
        default=300.0, gt=0, description="unchanged values are re-sent this often (coverage)"
    )
    metrics_interval_s: float = Field(default=60.0, gt=0)
    devices: list[DeviceConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_devices(self) -> AgentConfig:
        ids = [d.id for d in self.devices]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"devices: ids {dup} are used more than once; ids must be unique")
        if self.gateway.contract == 1 and self.mqtt.hmac_key_file is None:
            raise ValueError(
                "mqtt.hmac_key_file: required with contract 1 (the default), which signs "
                "with it: give the key file `ingest-server gateway add` wrote, or move the "
                "gateway to contract 2 (gateway.contract: 2 and gateway.key_file; "
                'docs/agent.md, "Contract 2")'
            )
        return self

    @property
    def hmac_key_file(self) -> Path:
        """Contract 1's key file (the validator made sure there is one)."""
        assert self.mqtt.hmac_key_file is not None
        return self.mqtt.hmac_key_file

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or self.mqtt.username or f"fe-{self.gateway.id}"

    @property
    def topic_prefix(self) -> str:
        g = self.gateway
        return topics.prefix(g.enterprise, g.site, g.id)

    def resolve(self, base: Path) -> AgentConfig:
        """Relative file paths are relative to the config file, not the working directory."""
        resolved: AgentConfig = _resolve_paths(self, base)
        return resolved


def _resolve_paths(model: Any, base: Path) -> Any:
    if isinstance(model, BaseModel):
        changes = {}
        for name in type(model).model_fields:
            value = getattr(model, name)
            new = _resolve_paths(value, base)
            if new is not value:
                changes[name] = new
        return model.model_copy(update=changes) if changes else model
    if isinstance(model, Path):
        return model if model.is_absolute() else base / model
    if isinstance(model, list):
        items = [_resolve_paths(v, base) for v in model]
        return items if any(a is not b for a, b in zip(items, model, strict=True)) else model
    return model


# pydantic's union errors name the union member ("OpcUaDeviceConfig"); users think in
# protocols, so drop those steps from the path.
_MEMBER_STEPS = frozenset({"opcua", "modbus", "OpcUaDeviceConfig", "ModbusDeviceConfig"})


def _explain(err: ErrorDetails, loc: tuple[int | str, ...]) -> str | None:
    kind = err["type"]
    if kind == "union_tag_invalid":
        return "protocol must be 'opcua' or 'modbus'"
    if kind == "union_tag_not_found":
        return "each device needs protocol: opcua or protocol: modbus"
    if kind == "string_pattern_mismatch":
        return (
            f"{err['input']!r} is not a valid id: use lowercase letters, digits, '-' "
            "and '_' (at most 63 characters), e.g. gw-01"
        )
    if kind == "too_short":
        return "needs at least one entry"
    if loc == ("version",):
        return f"this agent reads config version {CONFIG_VERSION}; got {err['input']!r}"
    return None


def parse_config(data: Any, source: str = "<config>") -> AgentConfig:
    """Validate already-parsed YAML/JSON data."""
    if not isinstance(data, dict):
        raise ConfigError(source, ["the file must hold a mapping (key: value) at the top level"])
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        problems = validation_problems(
            exc, docs="docs/agent.md", skip_steps=_MEMBER_STEPS, explain=_explain
        )
        raise ConfigError(source, problems) from None


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate an agent config file; relative paths resolve beside it."""
    p = Path(path)
    try:
        data = read_yaml_file(p)
    except YamlFileError as exc:
        raise ConfigError(str(p), [exc.problem]) from None
    return parse_config(data, str(p)).resolve(p.parent)
