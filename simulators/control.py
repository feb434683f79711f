"""A small HTTP control API so tests in other processes can steer a running simulator.

    GET  /status                      -> {"scenario", "now", "speed", "endpoints", "machines"}
    POST /faults  {"kind": "offline", "target": "cnc-03", "seconds": 30}
                                      -> 200 {"ok": true}  | 400 {"error": "..."}

Bound to 127.0.0.1 by default. HTTP/1.1 with Content-Length and one request per
connection: enough for curl and urllib, and no web framework in the sim extra.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from simulators.faults import KINDS, Fault, FaultError
from simulators.runtime import FactorySim

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024


class ControlServer:
    def __init__(self, sim: FactorySim, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("control API on %s", self.url)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, body = await asyncio.wait_for(self._respond(reader), timeout=10)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        payload = json.dumps(body, ensure_ascii=False).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 413: "Too Large"}[status]
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        try:
            await writer.drain()
        finally:
            writer.close()

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
        request_line = (await reader.readline()).decode("latin-1").split()
        headers: dict[str, str] = {}
        while (line := (await reader.readline()).decode("latin-1").strip()) != "":
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if len(request_line) < 2:
            return 400, {"error": "malformed request line"}
        method, path = request_line[0], request_line[1]
        length = int(headers.get("content-length", "0") or 0)
        if length > MAX_BODY:
            return 413, {"error": f"body over {MAX_BODY} bytes"}
        body = await reader.readexactly(length) if length else b""
        if method == "GET" and path == "/status":
            return 200, self.sim.status()
        if method == "POST" and path == "/faults":
            return await self._fault(body)
        return 404, {"error": f"no {method} {path}; use GET /status or POST /faults"}

    async def _fault(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise FaultError("send a JSON object")
            kind = next((k for k in KINDS if k == data.get("kind")), None)
            if kind is None:
                raise FaultError(f"unknown fault kind {data.get('kind')!r}")
            fault = Fault(
                kind=kind,
                target=str(data.get("target", "")),
                seconds=float(data.get("seconds", 0)),
            )
            await self.sim.inject(fault)
        except (FaultError, ValueError, TypeError) as exc:
            hint = f'expected {{"kind": one of {list(KINDS)}, "target": id, "seconds": n}}'
            return 400, {"error": f"{exc}; {hint}"}
        return 200, {"ok": True}
