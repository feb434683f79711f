"""Secrets read from files, never written inline: HMAC keys, MQTT and OPC UA passwords.

    read_secret(path, what) -> bytes        raises ConfigError naming the file and the fix

The gateway signs with its key file's text, stripped, and the server verifies with the same
bytes, so both read key files here.
"""

from __future__ import annotations

from pathlib import Path

from edge_agent.contract.yaml12 import InvalidFileError


class ConfigError(InvalidFileError):
    """An agent config that cannot be used; `problems` lists each as 'path: message'."""

    kind = "agent config"


def read_secret(path: Path, what: str) -> bytes:
    """A secret from a file; refuses files that others can read (the key would leak)."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the {what}: {exc.strerror}"]) from None
    if mode & 0o077:
        raise ConfigError(
            str(path),
            [f"the {what} is readable by group or others (mode {mode & 0o777:o}); chmod 600 it"],
        )
    secret = data.strip()
    if not secret:
        raise ConfigError(str(path), [f"the {what} file is empty"])
    return secret
