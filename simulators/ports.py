"""Picking a free TCP port for a server whose scenario says port 0."""

from __future__ import annotations

import socket


def pick_free_port(host: str) -> int:
    """A port nothing listens on right now; bound and released, then handed to the server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
