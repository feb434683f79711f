"""OPC UA endpoints for CNC machines, laid out as OPC 40501-1 (umati Machine Tools).

    plant views --update(now)--> changed values only --> asyncua Server --> clients

One endpoint serves several machines under Objects/Machinery:Machines. The official
nodesets cannot be bundled, so nodes use base types; browse names and their
namespaces follow the specification, so clients browsing by path find them (layout
in docs/simulators.md). NodeIds are strings in the endpoint's own namespace, stable
across restarts. Values carry the sim time of their change as SourceTimestamp; a
machine that is offline reads BadNoCommunication, as an aggregating server reports a
lost device (the value itself goes out null: Part 4, 7.7.1, enforced by asyncua).

Options: Basic256Sha256 SignAndEncrypt with a generated certificate, and low
operation limits (MaxNodesPerRead, MaxMonitoredItemsPerCall) that are advertised and
enforced with BadTooManyOperations, to test clients that must split their requests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import tempfile
from pathlib import Path
from typing import Any, Protocol

from asyncua import Server, ua
from asyncua.common.callback import CallbackType, ServerItemCallback
from asyncua.common.node import Node
from asyncua.common.utils import ServiceError
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.ua.uaerrors import UaStatusCodeError
from cryptography.x509.oid import ExtendedKeyUsageOID

from simulators.ports import pick_free_port
from simulators.scenario import Equipment, OpcUaServer, Scenario, SecurityMode
from simulators.umati import NS_DI, NS_MACHINE_TOOL, NS_MACHINERY, UMATI_OF, ChannelMode
from simulators.views import MachineView

logger = logging.getLogger(__name__)

V = ua.VariantType
# value key -> (browse path below the machine, (namespace, name) per step, variant type)
_MT, _MACH, _VEND = "mt", "machinery", "vendor"
VARIABLES: dict[str, tuple[tuple[tuple[str, str], ...], ua.VariantType]] = {
    "operation_mode": (
        ((_MT, "Monitoring"), (_MT, "MachineTool"), (_MT, "OperationMode")),
        V.Int32,
    ),
    "state": (
        (
            (_MT, "Monitoring"),
            (_MT, "MachineTool"),
            (_MACH, "MachineryItemState"),
            ("0", "CurrentState"),
        ),
        V.LocalizedText,
    ),
    # OPC 40001-1's operation mode, beside the MachineTool one: a client may read either
    "machinery_operation_mode": (
        (
            (_MT, "Monitoring"),
            (_MT, "MachineTool"),
            (_MACH, "MachineryOperationMode"),
            ("0", "CurrentState"),
        ),
        V.LocalizedText,
    ),
    "channel_state": (((_MT, "Monitoring"), (_VEND, "Channel1"), (_MT, "ChannelState")), V.Int32),
    "channel_mode": (((_MT, "Monitoring"), (_VEND, "Channel1"), (_MT, "ChannelMode")), V.Int32),
    "feed_override": (((_MT, "Monitoring"), (_VEND, "Channel1"), (_MT, "FeedOverride")), V.Double),
    "is_rotating": (((_MT, "Monitoring"), (_VEND, "Spindle1"), (_MT, "IsRotating")), V.Boolean),
    "spindle_override": (((_MT, "Monitoring"), (_VEND, "Spindle1"), (_MT, "Override")), V.Double),
    "actual_speed": (((_MT, "Monitoring"), (_VEND, "Spindle1"), (_VEND, "ActualSpeed")), V.Double),
    "program": (((_MT, "Production"), (_MT, "ActiveProgram"), (_MT, "Name")), V.String),
    "program_state": (
        ((_MT, "Production"), (_MT, "ActiveProgram"), (_MT, "State"), ("0", "CurrentState")),
        V.LocalizedText,
    ),
    "runs_completed": (
        ((_MT, "Production"), (_MT, "ProductionPlan"), (_VEND, "Job1"), (_MT, "RunsCompleted")),
        V.UInt32,
    ),
    "parts_completed": (
        ((_MT, "Production"), (_MT, "ProductionPlan"), (_VEND, "Job1"), (_MT, "PartsCompleted")),
        V.UInt32,
    ),
    "parts_good": (
        ((_MT, "Production"), (_MT, "ProductionPlan"), (_VEND, "Job1"), (_MT, "PartsGood")),
        V.UInt32,
    ),
    "parts_lifetime": (
        ((_MT, "Production"), (_MT, "Statistics"), (_MT, "PartsProducedInLifetime")),
        V.UInt32,
    ),
}
# values that change when the state changes carry the state's start as SourceTimestamp
STATE_KEYS = frozenset(
    {
        "operation_mode",
        "state",
        "machinery_operation_mode",
        "channel_state",
        "is_rotating",
        "actual_speed",
        "program",
        "program_state",
        "feed_override",
    }
)
_UINT32 = 2**32


class MachineSource(Protocol):
    def machine(self, equipment_id: str) -> MachineView: ...


def values_of(view: MachineView) -> dict[str, Any]:
    """A machine view as the umati values this endpoint exposes."""
    u = UMATI_OF[view.state]
    return {
        "operation_mode": int(u.operation_mode),
        "state": ua.LocalizedText(u.item_state),
        "machinery_operation_mode": ua.LocalizedText(u.machinery_mode),
        "channel_state": int(u.channel_state),
        "channel_mode": int(ChannelMode.Automatic),
        "feed_override": float(view.feed_override_pct),
        "is_rotating": view.spindle_rpm > 0,
        "spindle_override": 100.0,
        "actual_speed": float(view.spindle_rpm),
        "program": view.program,
        "program_state": ua.LocalizedText(u.program_state),
        "runs_completed": view.parts_completed % _UINT32,
        "parts_completed": view.parts_completed % _UINT32,
        "parts_good": view.parts_good % _UINT32,
        "parts_lifetime": view.parts_completed % _UINT32,
    }


def _utc(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.UTC)


class OpcUaMachineServer:
    def __init__(
        self,
        config: OpcUaServer,
        scenario: Scenario,
        source: MachineSource,
        *,
        host: str = "127.0.0.1",
        cert_dir: Path | None = None,
        security: list[SecurityMode] | None = None,
        trusted_clients: Path | None = None,
    ) -> None:
        self.config = config
        # with sign_encrypt: only clients whose certificate is in this folder get a
        # session (None: any client certificate, as before)
        self.trusted_clients = trusted_clients
        self.scenario = scenario
        self.source = source
        self.host = host
        self.port = config.port
        self.security: list[SecurityMode] = security or list(config.security)
        self.cert_dir = cert_dir or Path(tempfile.gettempdir()) / f"factory-sim-{config.id}"
        eq = scenario.equipment_by_id()
        self.machines: list[Equipment] = [eq[m] for m in config.machines]
        self.application_uri = f"urn:factory-evidence:sim:{config.id}"
        self._server: Server | None = None
        self._ns: dict[str, int] = {}
        self._last: dict[tuple[str, str], tuple[Any, bool]] = {}
        self._now: float | None = None

    @property
    def url(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/"

    @property
    def certificate_path(self) -> Path:
        return self.cert_dir / "server_cert.der"

    @property
    def private_key_path(self) -> Path:
        return self.cert_dir / "server_key.pem"

    def node_id(self, machine: str, key: str) -> ua.NodeId:
        path = ".".join(name for _, name in VARIABLES[key][0])
        return ua.NodeId(f"{machine}.{path}", self._ns[_VEND])

    def node_ids(self) -> dict[str, dict[str, str]]:
        """machine id -> value key -> NodeId string (for docs, tests and agent configs)."""
        return {
            m.id: {k: self.node_id(m.id, k).to_string() for k in VARIABLES} for m in self.machines
        }

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        if not self.port:
            self.port = pick_free_port(self.host)
        server = Server()
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name(f"factory-evidence simulator {self.config.id}")
        await server.set_application_uri(self.application_uri)
        await self._security(server)
        self._ns = {
            _MT: await server.register_namespace(NS_MACHINE_TOOL),
            _MACH: await server.register_namespace(NS_MACHINERY),
            "di": await server.register_namespace(NS_DI),
            _VEND: await server.register_namespace(self.application_uri),
            "0": 0,
        }
        await self._limits(server)
        await self._build(server)
        await server.start()
        self._server = server
        self._last.clear()
        logger.info("OPC UA %s listening on %s", self.config.id, self.url)

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop()

    async def restart(self, down_s: float) -> None:
        """Go away for down_s seconds and come back as a new server: sessions are lost."""
        await self.stop()
        await asyncio.sleep(down_s)
        await self.start()
        if self._now is not None:
            await self.update(self._now)

    async def _security(self, server: Server) -> None:
        policies = []
        if "none" in self.security:
            policies.append(ua.SecurityPolicyType.NoSecurity)
        if "sign_encrypt" in self.security:
            policies.append(ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt)
            self.cert_dir.mkdir(parents=True, exist_ok=True)
            await setup_self_signed_certificate(
                self.private_key_path,
                self.certificate_path,
                self.application_uri,
                self.host,
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
                {
                    "countryName": "CN",
                    "organizationName": "factory-evidence simulator",
                    "commonName": self.config.id,
                },
            )
            await server.load_certificate(str(self.certificate_path))
            await server.load_private_key(str(self.private_key_path))
            if self.trusted_clients is not None:
                server.set_certificate_validator(await self._client_validator(self.trusted_clients))
        server.set_security_policy(policies)

    @staticmethod
    async def _client_validator(folder: Path) -> Any:
        """Admit a client certificate only if it is in `folder` (DER or PEM files): time
        range, application URI and trust checked; an empty folder admits nobody."""

        def has_certificates() -> bool:
            return any(p.suffix.lower() in (".der", ".pem") for p in folder.glob("*.*"))

        if not await asyncio.to_thread(has_certificates):

            async def refuse(_cert: Any, _app: Any) -> None:
                raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

            return refuse
        store = TrustStore([folder], [])
        await store.load()
        opts = CertificateValidatorOptions
        return CertificateValidator(
            opts.TIME_RANGE | opts.URI | opts.TRUSTED | opts.PEER_CLIENT, store
        )

    async def _limits(self, server: Server) -> None:
        caps = ua.ObjectIds
        limits = {
            caps.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead: (
                self.config.max_nodes_per_read
            ),
            caps.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall: (
                self.config.max_monitored_items_per_call
            ),
        }
        for node, limit in limits.items():
            if limit:
                await server.write_attribute_value(
                    ua.NodeId(node), ua.DataValue(ua.Variant(limit, V.UInt32))
                )
        if self.config.max_nodes_per_read:
            server.subscribe_server_callback(CallbackType.PreRead, self._check_read)
        if self.config.max_monitored_items_per_call:
            # asyncua has no pre-create hook: wrap the service of the server we own
            service = server.iserver.subscription_service
            create = service.create_monitored_items
            limit = self.config.max_monitored_items_per_call

            async def limited(params: ua.CreateMonitoredItemsParameters) -> Any:
                if len(params.ItemsToCreate) > limit:
                    raise UaStatusCodeError(ua.StatusCodes.BadTooManyOperations)
                return await create(params)

            service.create_monitored_items = limited  # type: ignore[method-assign]

    async def _check_read(self, event: ServerItemCallback, _dispatcher: object) -> None:
        nodes = event.request_params.NodesToRead
        if event.is_external and len(nodes) > self.config.max_nodes_per_read:
            raise UaStatusCodeError(ua.StatusCodes.BadTooManyOperations)

    # --- address space --------------------------------------------------------------

    def _qn(self, ns: str, name: str) -> ua.QualifiedName:
        return ua.QualifiedName(name, self._ns[ns])

    async def _build(self, server: Server) -> None:
        vend = self._ns[_VEND]
        machines = await server.nodes.objects.add_folder(
            ua.NodeId("Machines", vend), self._qn(_MACH, "Machines")
        )
        for eq in self.machines:
            root = await machines.add_object(ua.NodeId(eq.id, vend), self._qn(_VEND, eq.id))
            await root.write_attribute(
                ua.AttributeIds.DisplayName,
                ua.DataValue(ua.Variant(ua.LocalizedText(eq.name_en or eq.name), V.LocalizedText)),
            )
            await self._identification(root, eq)
            objects: dict[str, Node] = {}
            for key, (path, vtype) in VARIABLES.items():
                parent, prefix = root, eq.id
                for ns, name in path[:-1]:
                    prefix = f"{prefix}.{name}"
                    if prefix not in objects:
                        objects[prefix] = await parent.add_object(
                            ua.NodeId(prefix, vend), self._qn(ns, name)
                        )
                    parent = objects[prefix]
                ns, name = path[-1]
                initial = ua.LocalizedText("") if vtype is V.LocalizedText else _zero(vtype)
                await parent.add_variable(
                    self.node_id(eq.id, key), self._qn(ns, name), initial, vtype
                )
            job = objects[f"{eq.id}.Production.ProductionPlan.Job1"]
            await job.add_property(
                ua.NodeId(f"{eq.id}.Production.ProductionPlan.Job1.Identifier", vend),
                self._qn(_MT, "Identifier"),
                f"PO-{eq.id}",
                V.String,
            )
            for name in ("Equipment", "Notification"):
                await root.add_object(ua.NodeId(f"{eq.id}.{name}", vend), self._qn(_MT, name))

    async def _identification(self, root: Node, eq: Equipment) -> None:
        vend = self._ns[_VEND]
        ident = await root.add_object(
            ua.NodeId(f"{eq.id}.Identification", vend), self._qn("di", "Identification")
        )
        props: list[tuple[str, Any, ua.VariantType]] = [
            ("Manufacturer", ua.LocalizedText(eq.vendor), V.LocalizedText),
            ("Model", ua.LocalizedText(eq.model), V.LocalizedText),
            ("SerialNumber", eq.serial, V.String),
            (
                "ProductInstanceUri",
                f"urn:factory-evidence:{self.scenario.enterprise.id}:{eq.id}",
                V.String,
            ),
        ]
        if eq.year is not None:
            props.append(("YearOfConstruction", eq.year, V.UInt16))
        for name, value, vtype in props:
            await ident.add_property(
                ua.NodeId(f"{eq.id}.Identification.{name}", vend),
                self._qn("di", name),
                value,
                vtype,
            )

    # --- values ---------------------------------------------------------------------

    async def update(self, now: float) -> None:
        """Write every value that changed since the last update (now: sim time)."""
        self._now = now
        server = self._server
        if server is None:
            return
        for eq in self.machines:
            view = self.source.machine(eq.id)
            for key, fresh in values_of(view).items():
                last = self._last.get((eq.id, key))
                if view.online:
                    if last == (fresh, True):
                        continue
                    value = fresh
                else:
                    if last is not None and not last[1]:
                        continue  # already reported lost
                    # A lost device sends nothing new. asyncua nulls a bad value on the wire
                    # (Part 4, 7.7.1), so only status and time go out; keep the last good one.
                    value = fresh if last is None else last[0]
                # Span-derived values change only when a span begins, so that is their time.
                changed = view.online and (last is None or last[0] != value)
                stamp = view.state_since if changed and key in STATE_KEYS else now
                status = ua.StatusCodes.Good if view.online else ua.StatusCodes.BadNoCommunication
                await server.write_attribute_value(
                    self.node_id(eq.id, key),
                    ua.DataValue(
                        ua.Variant(value, VARIABLES[key][1]),
                        StatusCode=ua.StatusCode(status),
                        SourceTimestamp=_utc(stamp),
                        ServerTimestamp=dt.datetime.now(dt.UTC),
                    ),
                )
                self._last[(eq.id, key)] = (value, view.online)


def _zero(vtype: ua.VariantType) -> Any:
    return {V.Boolean: False, V.Double: 0.0, V.String: ""}.get(vtype, 0)
